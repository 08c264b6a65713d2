//! Checks and fixes the host before load, so failures name their cause instead of an errno.

use std::{fs, path::Path};

use crate::ProbeError;

const TRACEFS: &str = "/sys/kernel/tracing";

pub(crate) fn check_btf() -> Result<(), ProbeError> {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        Ok(())
    } else {
        Err(ProbeError::NoBtf)
    }
}

/// Syscall tracepoint ids are read from tracefs; mount it where the kernel left it unmounted.
pub(crate) fn ensure_tracefs() -> Result<(), ProbeError> {
    let has_events = |dir: &str| Path::new(dir).join("events/syscalls").is_dir();
    if has_events(TRACEFS) || has_events("/sys/kernel/debug/tracing") {
        return Ok(());
    }
    let target = std::ffi::CString::new(TRACEFS).expect("no NUL");
    let fstype = std::ffi::CString::new("tracefs").expect("no NUL");
    // SAFETY: all pointers are valid NUL-terminated strings or null (no mount data).
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() == std::io::ErrorKind::PermissionDenied {
            // A container without CAP_SYS_ADMIN: socket capture needs no tracefs, so this is
            // fatal only where a syscall tracepoint is wanted.
            return Err(ProbeError::NoTracefs(format!(
                "{error}: mounting it needs CAP_SYS_ADMIN; in a container, mount the host's {TRACEFS}"
            )));
        }
        return Err(ProbeError::NoTracefs(error.to_string()));
    }
    if has_events(TRACEFS) {
        Ok(())
    } else {
        Err(ProbeError::NoTracefs(format!(
            "mounted at {TRACEFS} but it has no events/syscalls: the kernel needs CONFIG_FTRACE_SYSCALLS"
        )))
    }
}

/// Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on unified hosts,
/// /sys/fs/cgroup/unified on hybrid ones.
pub(crate) fn cgroup2_root() -> Option<std::path::PathBuf> {
    parse_cgroup2_root(&fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// mountinfo: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`.
fn parse_cgroup2_root(mountinfo: &str) -> Option<std::path::PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mountpoint = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| mountpoint.into())
    })
}

/// Index of the memory controller in `css_set.subsys` when it is mounted as a v1 hierarchy,
/// else `u32::MAX` (the kernel side then reports no v1 cgroup).
pub(crate) fn memory_subsys_id() -> u32 {
    fs::read_to_string("/proc/cgroups")
        .map(|text| parse_memory_subsys_id(&text))
        .unwrap_or(u32::MAX)
}

/// `/proc/cgroups` lists controllers in subsystem-id order; hierarchy 0 means v2 or unmounted.
fn parse_memory_subsys_id(proc_cgroups: &str) -> u32 {
    proc_cgroups
        .lines()
        .filter(|line| !line.starts_with('#'))
        .enumerate()
        .find_map(|(index, line)| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let hierarchy: u32 = fields.next()?.parse().ok()?;
            (name == "memory" && hierarchy != 0).then_some(index as u32)
        })
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_root_is_found_on_hybrid_and_unified_hosts() {
        let hybrid = "35 25 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                      36 25 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_root(hybrid),
            Some("/sys/fs/cgroup/unified".into())
        );
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(parse_cgroup2_root(unified), Some("/sys/fs/cgroup".into()));
        assert_eq!(
            parse_cgroup2_root("35 25 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw"),
            None
        );
    }

    #[test]
    fn memory_subsys_id_follows_proc_cgroups_order() {
        let hybrid = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                      cpuset\t3\t1\t1\ncpu\t1\t1\t1\ncpuacct\t2\t1\t1\nblkio\t7\t1\t1\nmemory\t4\t1\t1\n";
        assert_eq!(parse_memory_subsys_id(hybrid), 4);
        let unified =
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t0\t1\t1\nmemory\t0\t1\t1\n";
        assert_eq!(parse_memory_subsys_id(unified), u32::MAX);
        assert_eq!(parse_memory_subsys_id(""), u32::MAX);
    }
}
