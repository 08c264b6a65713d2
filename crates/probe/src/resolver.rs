//! The resolver-API layer: uprobes on glibc's `getaddrinfo`, `gethostbyname_r` and
//! `gethostbyname2_r` (which `gethostbyname` and `gethostbyname2` call), in the libc each
//! resolving process maps, once per libc file (device, inode).
//!
//! The file is the workload's: [`LibcFile::of_process`] opens it under `/proc/PID/root` with
//! `openat2(RESOLVE_IN_ROOT)`, so no symlink leads out of the process's root, refuses what is not
//! a regular file or is over [`MAX_LIBC_BYTES`], and reads its symbols itself from that bounded
//! copy (aya's resolver would map the whole file by path and follow its debug link). The uprobe
//! is then attached through `/proc/self/fd/N`: the very file opened, by offset. Opening and
//! parsing may block on a workload's filesystem, so callers run it off the capture thread;
//! attaching does not.

use std::{
    collections::HashSet,
    ffi::CString,
    fs::File,
    io::Read,
    os::fd::{AsRawFd, FromRawFd},
    os::unix::fs::MetadataExt,
};

use aya::{
    programs::{
        uprobe::{UProbeAttachLocation, UProbeScope},
        ProgramError, UProbe,
    },
    Ebpf,
};
use object::{Object, ObjectSection, ObjectSymbol};

/// Bytes of a libc file read for its symbols; glibc's is about 2 MB.
pub const MAX_LIBC_BYTES: u64 = 16 << 20;
/// Bytes of /proc/PID/maps read when looking for the libc.
const MAX_MAPS_BYTES: u64 = 4 << 20;
/// Distinct libc files hooked at most; more are counted, not hooked.
pub const MAX_LIBCS: usize = 64;

const RETURN_PROGRAM: &str = "libc_resolver_return";
/// (symbol, its entry program).
const FUNCTIONS: [(&str, &str); 3] = [
    ("getaddrinfo", "getaddrinfo_enter"),
    ("gethostbyname_r", "gethostbyname_r_enter"),
    ("gethostbyname2_r", "gethostbyname2_r_enter"),
];

/// A libc a process maps, opened and read for the resolver functions' file offsets.
#[derive(Debug)]
pub struct LibcFile {
    file: File,
    /// (device, inode) of the file: hooks are per file, so one per key.
    pub key: (u64, u64),
    /// The path in the process's root, for messages.
    pub path: String,
    /// (symbol, file offset) of each resolver function the file defines.
    offsets: Vec<(&'static str, u64)>,
}

/// Why a process's libc could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum LibcError {
    /// /proc/PID/maps or the file could not be read (the process may have exited).
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The file is not one to hook: not regular, too large, not ELF, no resolver symbol.
    #[error("{path}: {why}")]
    Unusable { path: String, why: String },
}

impl LibcFile {
    /// The glibc process `pid` maps, or `None` when it maps none (static binaries, Go, musl).
    pub fn of_process(pid: u32) -> Result<Option<LibcFile>, LibcError> {
        let maps_path = format!("/proc/{pid}/maps");
        let io = |path: &str| {
            let path = path.to_string();
            move |source| LibcError::Io { path, source }
        };
        let mut maps = String::new();
        File::open(&maps_path)
            .and_then(|f| f.take(MAX_MAPS_BYTES).read_to_string(&mut maps))
            .map_err(io(&maps_path))?;
        let Some(path) = maps.lines().find_map(glibc_path) else {
            return Ok(None);
        };
        let root = format!("/proc/{pid}/root");
        let root_dir = File::open(&root).map_err(io(&root))?;
        let file = open_in_root(&root_dir, path).map_err(io(path))?;
        let meta = file.metadata().map_err(io(path))?;
        let unusable = |why: String| LibcError::Unusable {
            path: path.to_string(),
            why,
        };
        if !meta.is_file() {
            return Err(unusable("not a regular file".into()));
        }
        if meta.len() > MAX_LIBC_BYTES {
            return Err(unusable(format!(
                "{} bytes, over the {MAX_LIBC_BYTES} read for symbols",
                meta.len()
            )));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        (&file)
            .take(MAX_LIBC_BYTES)
            .read_to_end(&mut bytes)
            .map_err(io(path))?;
        let offsets = resolver_offsets(&bytes).map_err(unusable)?;
        Ok(Some(LibcFile {
            file,
            key: (meta.dev(), meta.ino()),
            path: path.to_string(),
            offsets,
        }))
    }
}

/// The mapped path of glibc in a maps line: a file named `libc.so.6` or `libc-2.*.so`.
fn glibc_path(line: &str) -> Option<&str> {
    // "start-end perms offset dev inode path": the path may hold spaces.
    let path = line.splitn(6, ' ').nth(5)?.trim_start();
    let name = path.rsplit('/').next()?;
    (path.starts_with('/')
        && (name == "libc.so.6" || (name.starts_with("libc-2.") && name.ends_with(".so"))))
    .then_some(path)
}

/// Opens `path` as seen from `root`: `..` and symlinks stay inside it (Linux 5.6+).
fn open_in_root(root: &File, path: &str) -> std::io::Result<File> {
    let c_path = CString::new(path).map_err(std::io::Error::other)?;
    // SAFETY: open_how is plain data; zeroed is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid fd, NUL-terminated path, and how's size as the kernel expects.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c_path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// File offsets of the resolver functions an ELF file defines.
fn resolver_offsets(bytes: &[u8]) -> Result<Vec<(&'static str, u64)>, String> {
    let obj = object::File::parse(bytes).map_err(|e| format!("not an ELF file: {e}"))?;
    let mut offsets = Vec::new();
    for (name, _) in FUNCTIONS {
        let symbol = obj
            .dynamic_symbols()
            .find(|s| s.is_definition() && s.name() == Ok(name));
        let Some(symbol) = symbol else { continue };
        let Some(index) = symbol.section_index() else {
            continue;
        };
        let section = obj.section_by_index(index).map_err(|e| e.to_string())?;
        if let Some((file_offset, _)) = section.file_range() {
            offsets.push((name, symbol.address() - section.address() + file_offset));
        }
    }
    if !offsets.iter().any(|(n, _)| *n == "getaddrinfo") {
        return Err("no getaddrinfo symbol".into());
    }
    Ok(offsets)
}

/// The libc files hooked so far.
#[derive(Debug, Default)]
pub struct LibcHooks {
    hooked: HashSet<(u64, u64)>,
    /// Distinct libc files not hooked because [`MAX_LIBCS`] were.
    pub over_limit: u64,
    /// Why uprobes cannot be used here, once known: nothing more is tried.
    pub refused: Option<String>,
}

/// What [`LibcHooks::attach`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Hooked {
    /// Newly hooked.
    Now,
    /// Hooked before.
    Already,
    /// Not hooked: [`MAX_LIBCS`] are.
    OverLimit,
}

impl LibcHooks {
    /// Whether the libc with `key` is hooked: a caller that knows the file's key skips opening.
    pub fn contains(&self, key: (u64, u64)) -> bool {
        self.hooked.contains(&key)
    }

    /// Attaches the resolver hooks to `libc`. An error means uprobes are refused here (it is
    /// kept in `refused` and returned again for every later call).
    pub fn attach(&mut self, ebpf: &mut Ebpf, libc: &LibcFile) -> Result<Hooked, String> {
        if let Some(why) = &self.refused {
            return Err(why.clone());
        }
        if self.hooked.contains(&libc.key) {
            return Ok(Hooked::Already);
        }
        if self.hooked.len() >= MAX_LIBCS {
            self.over_limit += 1;
            return Ok(Hooked::OverLimit);
        }
        // The kernel resolves this to the file opened, whatever its path in the process.
        let target = format!("/proc/self/fd/{}", libc.file.as_raw_fd());
        let mut attach = |program: &str, offset: u64| -> Result<(), String> {
            let uprobe: &mut UProbe = ebpf
                .program_mut(program)
                .ok_or_else(|| format!("program {program} missing from the object"))?
                .try_into()
                .map_err(|e: ProgramError| e.to_string())?;
            if uprobe.fd().is_err() {
                uprobe.load().map_err(|e| crate::verifier_detail(&e))?;
            }
            uprobe
                .attach(
                    UProbeAttachLocation::AbsoluteOffset(offset),
                    &target,
                    UProbeScope::AllProcesses,
                )
                .map(drop)
                .map_err(|e| crate::error_chain(&e))
        };
        for &(symbol, offset) in &libc.offsets {
            let entry = FUNCTIONS.iter().find(|(s, _)| *s == symbol).map(|f| f.1);
            let result = entry
                .ok_or_else(|| format!("no program for {symbol}"))
                .and_then(|program| attach(program, offset))
                .and_then(|()| attach(RETURN_PROGRAM, offset));
            if let Err(e) = result {
                let why = format!("uprobe on {symbol} in {}: {e}", libc.path);
                self.refused = Some(why.clone());
                return Err(why);
            }
        }
        self.hooked.insert(libc.key);
        Ok(Hooked::Now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_is_found_in_maps_lines() {
        let line = "7f00-7f10 r-xp 00028000 fd:01 1234                       /usr/lib/x86_64-linux-gnu/libc.so.6";
        assert_eq!(
            glibc_path(line),
            Some("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        let old = "7f00-7f10 r-xp 0 08:01 99 /lib/libc-2.31.so";
        assert_eq!(glibc_path(old), Some("/lib/libc-2.31.so"));
        for other in [
            "7f00-7f10 r-xp 0 08:01 99 /lib/ld-musl-x86_64.so.1",
            "7f00-7f10 r-xp 0 08:01 99 /tmp/libc.so.6.evil",
            "7f00-7f10 rw-p 0 00:00 0 [heap]",
            "7f00-7f10 rw-p 0 00:00 0",
        ] {
            assert_eq!(glibc_path(other), None, "{other}");
        }
    }

    #[test]
    fn resolver_offsets_come_from_the_dynamic_symbols() {
        let bytes = std::fs::read("/proc/self/exe").unwrap();
        // A Rust test binary links glibc dynamically but defines no getaddrinfo.
        assert_eq!(
            resolver_offsets(&bytes).unwrap_err(),
            "no getaddrinfo symbol"
        );
        assert!(resolver_offsets(b"\x7fELF not really").is_err());
    }

    #[test]
    fn this_process_libc_is_opened_within_its_root() {
        let Some(libc) = LibcFile::of_process(std::process::id()).unwrap() else {
            return; // not a glibc host
        };
        let names: Vec<&str> = libc.offsets.iter().map(|(n, _)| *n).collect();
        assert!(names.contains(&"getaddrinfo"), "{names:?}");
        assert!(libc
            .offsets
            .iter()
            .all(|&(_, o)| o > 0 && o < MAX_LIBC_BYTES));
    }
}
