//! The capabilities given up once the capture is attached. Loading and attaching take CAP_BPF,
//! CAP_PERFMON, CAP_NET_ADMIN (cgroup socket programs) or CAP_SYS_ADMIN; reading the ring
//! buffer that was mapped takes none. Kept, because the run still uses them:
//!
//! - CAP_SYS_PTRACE: /proc/PID/exe, /proc/PID/root and /proc/PID/ns of other users' processes;
//! - CAP_DAC_READ_SEARCH: `open_by_handle_at` for cgroup ids, and files under /proc/PID/root in
//!   directories a workload closed to others;
//! - CAP_DAC_OVERRIDE, only when the run writes files after attaching at paths the user chose
//!   (a baseline being learned, the agent's output and its rotations);
//! - CAP_BPF, only where `bpf()` on a map already open still asks for it: kernels before 6.5
//!   with `kernel.unprivileged_bpf_disabled` set. Found by reading the kernel's counters without
//!   it, not by the version;
//! - CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN, only where glibc is hooked (`trace --lookups`,
//!   `count --lookups`, `top`): it attaches uprobes to
//!   each libc the resolving processes map while it runs (they come and go;
//!   `libc_hooks.rs`). Loading the program takes the first two; Linux 6.18's uprobe PMU
//!   refuses `perf_event_open` (EACCES) without CAP_SYS_ADMIN, whatever else is held (bpftrace
//!   under `setpriv --bounding-set=-all,+bpf,+perfmon` is refused the same). The tracefs way
//!   round it (`uprobe_events`) leaves global probes behind a crash, so it is not taken.
//!
//! Every other capability leaves the effective, permitted, inheritable and ambient sets, and the
//! bounding set when CAP_SETPCAP allows; then no_new_privs, so an exec gains nothing back.
//! Capabilities belong to a thread: this must run before any other thread is started, and the
//! threads started after inherit what is left.

use std::fmt;

use anyhow::Context;
use caps::{CapSet, Capability, CapsHashSet};

/// What was kept after the drop.
#[derive(Debug)]
pub struct Kept {
    caps: CapsHashSet,
    bpf_for_maps: bool,
}

impl Kept {
    /// CAP_BPF had to be kept to read maps (see the module's documentation).
    pub fn bpf_for_maps(&self) -> bool {
        self.bpf_for_maps
    }
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<String> = self.caps.iter().map(|c| c.to_string()).collect();
        names.sort();
        match names.is_empty() {
            true => f.write_str("none"),
            false => f.write_str(&names.join(", ").to_ascii_lowercase()),
        }
    }
}

/// Drops what the run no longer needs. `writes_files`: it writes files after attaching.
/// `attaches_uprobes`: it attaches libc uprobes after this. `reads_bpf`: whether a `bpf()`
/// call on an open map works, asked with CAP_BPF lowered.
pub fn drop_after_attach(
    writes_files: bool,
    attaches_uprobes: bool,
    reads_bpf: impl FnOnce() -> bool,
) -> anyhow::Result<Kept> {
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count());
    if threads > 1 {
        anyhow::bail!(
            "{threads} threads run already and would keep every capability: a bug, please \
             report it"
        );
    }
    let permitted = caps::read(None, CapSet::Permitted).context("reading the capabilities")?;
    let mut keep: CapsHashSet = [Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH]
        .into_iter()
        .chain(writes_files.then_some(Capability::CAP_DAC_OVERRIDE))
        .chain(
            attaches_uprobes
                .then_some([
                    Capability::CAP_BPF,
                    Capability::CAP_PERFMON,
                    Capability::CAP_SYS_ADMIN,
                ])
                .into_iter()
                .flatten(),
        )
        .filter(|c| permitted.contains(c))
        .collect();
    caps::set(None, CapSet::Effective, &keep).context("lowering the effective set")?;
    let bpf_without = reads_bpf();
    // Back up from the permitted set: dropping from the bounding set takes CAP_SETPCAP.
    caps::set(None, CapSet::Effective, &permitted).context("raising the effective set")?;
    let bpf_for_maps = !bpf_without
        && permitted.contains(&Capability::CAP_BPF)
        && keep.insert(Capability::CAP_BPF);
    if permitted.contains(&Capability::CAP_SETPCAP) {
        for c in caps::read(None, CapSet::Bounding).context("reading the bounding set")? {
            if !keep.contains(&c) {
                caps::drop(None, CapSet::Bounding, c)
                    .with_context(|| format!("dropping {c} from the bounding set"))?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient).context("clearing the ambient set")?;
    caps::clear(None, CapSet::Inheritable).context("clearing the inheritable set")?;
    caps::set(None, CapSet::Effective, &keep).context("setting the effective set")?;
    caps::set(None, CapSet::Permitted, &keep).context("setting the permitted set")?;
    // SAFETY: prctl with integer arguments only; it touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setting no_new_privs");
    }
    Ok(Kept {
        caps: keep,
        bpf_for_maps,
    })
}
