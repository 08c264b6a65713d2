//! Which BPF programs and links exist on the host, and which of them some process still holds,
//! read through the `bpf` syscall and `/proc/*/fdinfo`, so no tool (bpftool is optional in
//! scripts/install-deps.sh) is needed. A program or link that no process holds a descriptor to
//! is an orphan: pinned, attached the legacy way (which outlives its loader), or about to be
//! freed. dnslens must never leave one behind, however it ends.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use super::wait_until;

const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;

/// Program and link ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ids {
    pub progs: BTreeSet<u32>,
    pub links: BTreeSet<u32>,
}

impl Ids {
    pub fn is_empty(&self) -> bool {
        self.progs.is_empty() && self.links.is_empty()
    }

    /// The ids in `self` that are not in `other`.
    pub fn minus(&self, other: &Ids) -> Ids {
        Ids {
            progs: self.progs.difference(&other.progs).copied().collect(),
            links: self.links.difference(&other.links).copied().collect(),
        }
    }
}

/// Every id the kernel has for `cmd` (`BPF_*_GET_NEXT_ID`).
fn all_ids(cmd: libc::c_long) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    let mut start = 0u32;
    loop {
        // union bpf_attr for *_GET_NEXT_ID: start_id, next_id, open_flags.
        let mut attr = [start, 0u32, 0u32];
        // SAFETY: the attr buffer is valid for its 12 bytes during the call; the kernel writes
        // only next_id inside it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr) as libc::c_uint,
            )
        };
        if rc != 0 {
            return ids;
        }
        ids.insert(attr[1]);
        start = attr[1];
    }
}

/// Every program and link on the host.
pub fn existing() -> Ids {
    Ids {
        progs: all_ids(BPF_PROG_GET_NEXT_ID),
        links: all_ids(BPF_LINK_GET_NEXT_ID),
    }
}

/// The programs and links that process `pid` holds descriptors to (a link's program counts).
pub fn held_by(pid: u32) -> Ids {
    let mut ids = Ids::default();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for entry in dir.flatten() {
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            let id = |prefix: &str| line.strip_prefix(prefix)?.trim().parse::<u32>().ok();
            if let Some(id) = id("prog_id:") {
                ids.progs.insert(id);
            }
            if let Some(id) = id("link_id:") {
                ids.links.insert(id);
            }
        }
    }
    ids
}

/// The programs and links some process on the host holds.
pub fn held() -> Ids {
    let mut ids = Ids::default();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let of = held_by(pid);
        ids.progs.extend(of.progs);
        ids.links.extend(of.links);
    }
    ids
}

/// Programs and links that exist but that no process holds.
pub fn orphans() -> Ids {
    // Existing first: an object loaded in between is held by its loader when `held` looks.
    let existing = existing();
    existing.minus(&held())
}

/// The orphans that were not orphans in `before`, once the kernel has had up to `timeout` to
/// free what exited processes released (freeing is deferred): empty unless something leaked.
pub fn new_orphans(before: &Ids, timeout: Duration) -> Ids {
    let mut new = Ids::default();
    wait_until(timeout, || {
        new = orphans().minus(before);
        new.is_empty()
    });
    new
}

/// Which of `ids` still exist after up to `timeout`.
pub fn still_existing(ids: &Ids, timeout: Duration) -> Ids {
    let mut left = Ids::default();
    wait_until(timeout, || {
        let now = existing();
        left = Ids {
            progs: ids.progs.intersection(&now.progs).copied().collect(),
            links: ids.links.intersection(&now.links).copied().collect(),
        };
        left.is_empty()
    });
    left
}
