//! Output files rotated by size: when the next unit (a JSON line, a pcapng block) would take
//! `PATH` past the limit, `PATH` becomes `PATH.1`, `PATH.1` becomes `PATH.2` and so on, the
//! oldest beyond `keep` is dropped, and a new `PATH` is started. [`Numbered`] does the renaming
//! for every format; [`LogFile`] rotates only between lines, so every file holds whole lines (a
//! line longer than the limit gets a file of its own).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// When to rotate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes a file may hold.
    pub size: u64,
    /// Rotated files kept, `PATH.1` (newest) to `PATH.keep`; 0 keeps none.
    pub keep: u32,
}

/// `PATH` and the bytes in it; [`Numbered::rotate`] moves it to `PATH.1` and starts anew.
pub struct Numbered {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
}

impl Numbered {
    /// Opens `path` for appending, or emptied first with `truncate`.
    pub fn open(path: &Path, truncate: bool) -> io::Result<Numbered> {
        let file = open_append(path)?;
        if truncate {
            file.set_len(0).map_err(|e| named(path, e))?;
        }
        let size = file.metadata().map_err(|e| named(path, e))?.len();
        Ok(Numbered {
            path: path.to_path_buf(),
            file,
            size,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes all of `bytes`; the error names the file.
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| named(&self.path, e))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    pub fn rotate(&mut self, keep: u32) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if keep == 0 {
            fs::remove_file(&self.path).map_err(|e| named(&self.path, e))?;
        } else {
            for n in (1..keep).rev() {
                match fs::rename(numbered(n), numbered(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(named(&numbered(n), e))
                    }
                    _ => {}
                }
            }
            // Renaming over PATH.keep drops the oldest.
            fs::rename(&self.path, numbered(1)).map_err(|e| named(&self.path, e))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Cuts the file to its first `len` bytes (a torn tail after a failed write).
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len).map_err(|e| named(&self.path, e))?;
        self.size = len;
        Ok(())
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

pub struct LogFile {
    file: Numbered,
    rotation: Option<Rotation>,
    /// The last byte written ended a line: a rotation may happen here.
    at_line_start: bool,
}

impl LogFile {
    /// Opens `path` for appending (a restarted agent goes on with the same file).
    pub fn open(path: &Path, rotation: Option<Rotation>) -> io::Result<LogFile> {
        let mut file = Numbered::open(path, false)?;
        let size = file.size;
        let at_line_start = size == 0 || ends_with_newline(&mut file.file, size);
        Ok(LogFile {
            file,
            rotation,
            at_line_start,
        })
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let chunk = match self.rotation {
                None => rest.len(),
                Some(Rotation { size: limit, keep }) => {
                    let first_line = rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(rest.len(), |i| i + 1);
                    let size = self.file.size;
                    if self.at_line_start && size > 0 && size + first_line as u64 > limit {
                        self.file.rotate(keep)?;
                    }
                    // Whole lines that fit; at least the first, so a long one still goes out.
                    let room = limit.saturating_sub(self.file.size) as usize;
                    if rest.len() <= room {
                        rest.len()
                    } else {
                        rest[..room]
                            .iter()
                            .rposition(|&b| b == b'\n')
                            .map_or(first_line, |i| (i + 1).max(first_line))
                    }
                }
            };
            self.file.write_all(&rest[..chunk])?;
            self.at_line_start = rest[chunk - 1] == b'\n';
            rest = &rest[chunk..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Every DNS name of the node goes in here, written as root: a new file is readable by its
/// owner and group only, and a symlink at `path` (planted in a folder others can write) is
/// refused rather than followed.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| named(path, e))
}

fn ends_with_newline(file: &mut File, size: u64) -> bool {
    let mut last = [0u8];
    file.seek(SeekFrom::Start(size - 1)).is_ok()
        && file.read_exact(&mut last).is_ok()
        && last[0] == b'\n'
}

/// The error with the file it is about, for the line that ends the agent.
fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::test_dir::Dir;

    fn line(n: usize) -> String {
        format!("{{\"n\":{n:03}}}\n") // 10 bytes
    }

    #[test]
    fn rotates_between_lines_and_keeps_n_files() {
        let dir = Dir::new("rotate-keep");
        let path = dir.0.join("events.jsonl");
        let rotation = Rotation { size: 35, keep: 2 };
        let mut out = LogFile::open(&path, Some(rotation)).unwrap();
        // Written in batches as the JSON sink writes: several lines per write.
        let all: Vec<String> = (0..14).map(line).collect();
        for batch in all.chunks(4) {
            out.write_all(batch.concat().as_bytes()).unwrap();
        }
        out.flush().unwrap();
        let files = dir.files();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]);
        for (name, text) in &files {
            assert!(text.len() <= 35, "{name}: {} bytes", text.len());
            assert!(
                text.ends_with('\n') && text.lines().all(|l| l.len() == 9),
                "{name}: {text:?}"
            );
        }
        // 3 lines a file: the newest file has the last lines, the oldest kept the ones before.
        assert_eq!(files[0].1, all[12..].concat());
        assert_eq!(files[1].1, all[9..12].concat());
        assert_eq!(files[2].1, all[6..9].concat());
    }

    #[test]
    fn a_line_longer_than_the_limit_gets_a_file_of_its_own() {
        let dir = Dir::new("rotate-long");
        let path = dir.0.join("out");
        let mut out = LogFile::open(&path, Some(Rotation { size: 15, keep: 3 })).unwrap();
        let long = format!("{}\n", "x".repeat(40));
        out.write_all(format!("{}{long}{}", line(1), line(2)).as_bytes())
            .unwrap();
        let files = dir.files();
        assert_eq!(
            files,
            [
                ("out".to_string(), line(2)),
                ("out.1".to_string(), long.clone()),
                ("out.2".to_string(), line(1)),
            ]
        );
    }

    #[test]
    fn a_line_split_across_writes_is_never_split_across_files() {
        let dir = Dir::new("rotate-split");
        let path = dir.0.join("out");
        let mut out = LogFile::open(&path, Some(Rotation { size: 18, keep: 1 })).unwrap();
        out.write_all(line(1).as_bytes()).unwrap();
        // Half a line fits; its other half takes the file past the limit, and stays with it.
        out.write_all(b"{\"n\":").unwrap();
        out.write_all(b"002}\n").unwrap();
        out.write_all(line(3).as_bytes()).unwrap();
        let files = dir.files();
        assert_eq!(
            files,
            [
                ("out".to_string(), line(3)),
                ("out.1".to_string(), format!("{}{}", line(1), line(2))),
            ]
        );
    }

    #[test]
    fn keep_zero_drops_the_old_file_and_a_restart_appends() {
        let dir = Dir::new("zero");
        let path = dir.0.join("out");
        fs::write(&path, line(0)).unwrap();
        let mut out = LogFile::open(&path, Some(Rotation { size: 25, keep: 0 })).unwrap();
        out.write_all(line(1).as_bytes()).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), line(0) + &line(1));
        out.write_all(line(2).as_bytes()).unwrap();
        assert_eq!(dir.files(), [("out".to_string(), line(2))]);

        let plain = dir.0.join("plain");
        let mut out = LogFile::open(&plain, None).unwrap();
        for n in 0..100 {
            out.write_all(line(n).as_bytes()).unwrap();
        }
        assert_eq!(fs::read_to_string(&plain).unwrap().len(), 1000);
    }

    #[test]
    fn new_files_are_private_and_symlinks_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = Dir::new("private");
        let path = dir.0.join("events.jsonl");
        let mut log = LogFile::open(&path, None).unwrap();
        log.write_all(line(1).as_bytes()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "not world-readable: {mode:o}");
        let victim = dir.0.join("victim");
        fs::write(&victim, "precious").unwrap();
        let planted = dir.0.join("planted.jsonl");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let e = LogFile::open(&planted, None)
            .err()
            .expect("a symlink is refused");
        assert!(
            e.to_string().starts_with(&planted.display().to_string()),
            "{e}"
        );
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn errors_name_the_file() {
        let e = LogFile::open(Path::new("/nonexistent-dir/x/events.jsonl"), None)
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("/nonexistent-dir/x/events.jsonl: "),
            "{e}"
        );
    }
}
