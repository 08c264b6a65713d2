//! Enrichment: fills in what the kernel sends only as ids, the executable path and the cgroup
//! path, from caches over /proc and the cgroup mounts.

use dnslens_probe::ExecEvent;

use crate::cgroup::{CgroupResolver, CgroupStats};
use crate::model::DnsEvent;
use crate::process::{ProcessCache, ProcessStats};

pub struct Enricher {
    processes: ProcessCache,
    cgroups: CgroupResolver,
}

impl Enricher {
    pub fn new(processes: ProcessCache, cgroups: CgroupResolver) -> Self {
        Enricher { processes, cgroups }
    }

    /// Sets `process.exe` and `cgroup`. The event's own stamp is the clock for rate limits.
    pub fn enrich(&mut self, event: &mut DnsEvent) {
        let ids = event.ids;
        event.process.exe = self
            .processes
            .lookup_or_parent(
                event.process.pid,
                ids.process_start_ns,
                event.process.ppid,
                &event.process.name,
            )
            .map(str::to_owned);
        event.cgroup = self
            .cgroups
            .resolve(ids.cgroup_id, ids.cgroup_v1_id, event.mono_ns);
    }

    /// Remembers the executable of a process at exec: see [`ProcessCache::record_exec`].
    pub fn record_exec(&mut self, exec: ExecEvent) {
        self.processes
            .record_exec(exec.tgid, exec.process_start_ns, exec.filename);
    }

    pub fn process_stats(&self) -> ProcessStats {
        self.processes.stats()
    }

    pub fn cgroup_stats(&self) -> CgroupStats {
        self.cgroups.stats()
    }
}
