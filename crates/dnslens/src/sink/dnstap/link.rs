//! Where the dnstap thread writes: a Frame Streams receiver on a Unix or TCP socket
//! (bidirectional: READY/ACCEPT/START, STOP/FINISH at the end) or a file (START, frames, STOP),
//! rotated by size between frames, each file a whole stream.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use dnslens_dnstap::fstrm::{self, Control};

use crate::sink::rotate::{Numbered, Rotation};
use crate::units::DnstapAddress;

/// How long a write or the receiver's answer may take before the link counts as lost: a
/// receiver that stopped reading must not hold frames forever.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An open stream: frames go in through [`Link::send`].
pub(super) enum Link {
    Socket(BufWriter<Stream>),
    File(FrameFile),
}

impl Link {
    /// Connects (and shakes hands) or opens the file; `reopen`: after a failed write, when the
    /// file's whole frames are kept and its stream goes on.
    pub fn open(
        address: &DnstapAddress,
        rotation: Option<Rotation>,
        reopen: bool,
    ) -> anyhow::Result<Link> {
        let stream = match address {
            DnstapAddress::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Stream::Unix(s)
            }
            DnstapAddress::Tcp(host_port) => {
                let s = TcpStream::connect(host_port.as_str())?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            DnstapAddress::File(path) => {
                return Ok(Link::File(FrameFile::open(path, rotation, reopen)?));
            }
        };
        let mut stream = stream;
        fstrm::handshake(&mut stream)?;
        Ok(Link::Socket(BufWriter::with_capacity(64 << 10, stream)))
    }

    /// One data frame; buffered until [`Link::flush`].
    pub fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 4);
        fstrm::data(payload, &mut frame);
        match self {
            Link::Socket(s) => s.write_all(&frame),
            Link::File(f) => f.write_frame(&frame),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Socket(s) => s.flush(),
            Link::File(f) => f.flush(),
        }
    }

    /// Ends the stream: STOP, and on a socket the receiver's FINISH.
    pub fn close(self) -> anyhow::Result<()> {
        match self {
            Link::Socket(s) => {
                let mut stream = s.into_inner().map_err(|e| e.into_error())?;
                fstrm::stop(&mut stream)?;
            }
            Link::File(mut f) => f.stop()?,
        }
        Ok(())
    }
}

/// A Frame Streams file: START first, STOP last; rotated between frames.
pub(super) struct FrameFile {
    file: Numbered,
    /// Frames not yet written: written at [`FrameFile::flush`] or once they fill [`BUFFER`].
    out: Vec<u8>,
    rotation: Option<Rotation>,
}

/// Bytes gathered before a write.
const BUFFER: usize = 64 << 10;

impl FrameFile {
    /// A file is one stream, which readers stop at the first STOP of: at start an old file is
    /// rotated away (or replaced, without rotation). On `reopen` after a failed write the file
    /// is ours: cut after its last whole frame, its stream goes on there, so nothing written
    /// before the error is lost.
    fn open(path: &Path, rotation: Option<Rotation>, reopen: bool) -> io::Result<FrameFile> {
        let mut file = Numbered::open(path, rotation.is_none() && !reopen)?;
        let mut out = Vec::with_capacity(BUFFER);
        if reopen {
            file.truncate(whole_frames(file.file(), file.size())?)?;
        } else if let Some(r) = rotation.filter(|_| file.size() > 0) {
            file.rotate(r.keep)?;
        }
        if file.size() == 0 {
            out.extend_from_slice(&fstrm::control(Control::Start, true));
        }
        Ok(FrameFile {
            file,
            out,
            rotation,
        })
    }

    fn size(&self) -> u64 {
        self.file.size() + self.out.len() as u64
    }

    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        if let Some(r) = self.rotation {
            let start = fstrm::control(Control::Start, true).len() as u64;
            if self.size() > start && self.size() + frame.len() as u64 > r.size {
                self.stop()?;
                self.file.rotate(r.keep)?;
                self.out
                    .extend_from_slice(&fstrm::control(Control::Start, true));
            }
        }
        self.out.extend_from_slice(frame);
        if self.out.len() >= BUFFER {
            self.file.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.write_all(&self.out)?;
        self.out.clear();
        self.file.flush()
    }

    fn stop(&mut self) -> io::Result<()> {
        self.out
            .extend_from_slice(&fstrm::control(Control::Stop, false));
        self.flush()
    }
}

/// Where a stream in `file` (`size` bytes) may go on: after its last whole data frame, before a
/// STOP or a torn frame; 0 when it does not start as a dnstap stream.
fn whole_frames(file: &File, size: u64) -> io::Result<u64> {
    let word = |at: u64| -> io::Result<Option<u64>> {
        let mut b = [0u8; 4];
        if at + 4 > size {
            return Ok(None);
        }
        file.read_exact_at(&mut b, at)?;
        Ok(Some(u64::from(u32::from_be_bytes(b))))
    };
    let mut prefix = [0u8; 12];
    if size < 12 {
        return Ok(0);
    }
    file.read_exact_at(&mut prefix, 0)?;
    let mut end = match word(4)? {
        Some(start) if fstrm::starts_stream(&prefix) && 8 + start <= size => 8 + start,
        _ => return Ok(0),
    };
    while let Some(len) = word(end)? {
        // 0 opens a control frame: after START only STOP is written, which ends the stream.
        if len == 0 || end + 4 + len > size {
            break;
        }
        end += 4 + len;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnslens_dnstap::Reader;

    fn frames(path: &Path) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(path).unwrap();
        let mut reader = Reader::new(&bytes[..]);
        std::iter::from_fn(|| reader.next_frame().unwrap()).collect()
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        fstrm::data(payload, &mut out);
        out
    }

    /// A `file:` output without rotation emptied its file when it reopened after a write error.
    #[test]
    fn reopening_after_a_write_error_keeps_the_file_and_goes_on_with_its_stream() {
        let dir = std::env::temp_dir().join(format!("dnslens-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.fstrm");
        for rotation in [
            None,
            Some(Rotation {
                size: 1 << 20,
                keep: 2,
            }),
        ] {
            let _ = std::fs::remove_file(&path);
            let mut f = FrameFile::open(&path, rotation, false).unwrap();
            for p in [b"one", b"two"] {
                f.write_frame(&frame(p)).unwrap();
            }
            f.flush().unwrap();
            // The failed write left half a frame behind.
            f.file.write_all(&frame(b"torn")[..5]).unwrap();
            drop(f);
            let mut f = FrameFile::open(&path, rotation, true).unwrap();
            f.write_frame(&frame(b"three")).unwrap();
            f.stop().unwrap();
            assert_eq!(
                frames(&path),
                [&b"one"[..], b"two", b"three"],
                "{rotation:?}"
            );
            assert!(!dir.join("t.fstrm.1").exists(), "{rotation:?}");
            // Reopened again after the STOP: the stream goes on before it, in one file.
            let mut f = FrameFile::open(&path, rotation, true).unwrap();
            f.write_frame(&frame(b"four")).unwrap();
            f.stop().unwrap();
            assert_eq!(frames(&path).len(), 4, "{rotation:?}");
            // At start an old file is replaced (or rotated away) as before.
            let mut f = FrameFile::open(&path, rotation, false).unwrap();
            f.stop().unwrap();
            assert!(frames(&path).is_empty(), "{rotation:?}");
            let _ = std::fs::remove_file(dir.join("t.fstrm.1"));
        }
        // Not a stream of ours: started anew.
        std::fs::write(&path, b"garbage, not frames").unwrap();
        let mut f = FrameFile::open(&path, None, true).unwrap();
        f.write_frame(&frame(b"new")).unwrap();
        f.stop().unwrap();
        assert_eq!(frames(&path), [&b"new"[..]]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
