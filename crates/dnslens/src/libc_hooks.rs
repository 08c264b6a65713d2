//! Hooks the glibc of each resolving process while lookups are shown (`trace --lookups`,
//! `count --lookups`, `top`; issue 16). A worker thread is offered pids (those in /proc at the
//! start, then each process first seen in a DNS or libc event) and opens each one's libc
//! ([`LibcFile::of_process`]): the files are the workload's and may block, so never on the
//! capture thread. The run loop attaches what it finds ([`Probe::attach_libc`], once per
//! file). A process that resolved before its libc was hooked is wire-only (`dns`) until then.

use std::os::unix::fs::MetadataExt;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use dnslens_lens::bounded::Lru;
use dnslens_lens::lookup::Lookups;
use dnslens_probe::{Hooked, LibcFile, Probe, MAX_LIBCS};

/// Processes (pid, start) remembered as offered, and places remembered as hooked.
const SEEN: usize = 4096;
/// Pids waiting for the worker; more are dropped and counted.
const QUEUE: usize = 256;
/// Processes offered from /proc at the start.
const SCAN: usize = 4096;

/// The capture thread's side: offers pids, attaches what the worker found.
pub struct LibcHooking {
    pids: SyncSender<u32>,
    found: Receiver<LibcFile>,
    seen: Lru<(u32, u64), ()>,
    /// Pids not offered because the worker's queue was full.
    dropped: u64,
    said_limit: bool,
    refused: bool,
}

impl LibcHooking {
    /// Starts the worker, which first offers itself the processes in /proc.
    pub fn start() -> std::io::Result<LibcHooking> {
        let (pids, queue) = mpsc::sync_channel(QUEUE);
        let (send, found) = mpsc::sync_channel(MAX_LIBCS);
        std::thread::Builder::new()
            .name("dnslens-libc".into())
            .spawn(move || find(queue, send))?;
        Ok(LibcHooking {
            pids,
            found,
            seen: Lru::new(SEEN),
            dropped: 0,
            said_limit: false,
            refused: false,
        })
    }

    /// A process seen resolving: its libc is looked for, unless it was already.
    pub fn process(&mut self, pid: u32, start_ns: u64) {
        if self.refused || self.seen.get(&(pid, start_ns)).is_some() {
            return;
        }
        self.seen.insert((pid, start_ns), ());
        if let Err(TrySendError::Full(_)) = self.pids.try_send(pid) {
            self.dropped += 1;
        }
    }

    /// Attaches the libc files found since the last call; after the first, `lookups` holds
    /// wire lookups for the calls. A refusal and the limit are said once.
    pub fn attach(&mut self, probe: &mut Probe, lookups: &mut Lookups) {
        while let Ok(file) = self.found.try_recv() {
            if self.refused {
                continue;
            }
            match probe.attach_libc(&file) {
                Ok(Hooked::Now) => lookups.hold_for_libc(),
                Ok(Hooked::Already) => {}
                Ok(Hooked::OverLimit) if !self.said_limit => {
                    self.said_limit = true;
                    say!(
                        "dnslens: libc {} not hooked: {MAX_LIBCS} libc files are; its \
                         processes' lookups are wire-only (dns)",
                        file.path
                    );
                }
                Ok(Hooked::OverLimit) => {}
                Err(why) => {
                    self.refused = true;
                    say!(
                        "dnslens: libc resolver calls not traced, lookups are wire-only \
                         (dns): {why}"
                    );
                }
            }
        }
    }

    /// What was not hooked, for the end's counters; `None` when nothing was missed.
    pub fn report(&self, probe: &Probe) -> Option<String> {
        let over = probe.libc_hooks().over_limit;
        (self.dropped > 0 || over > 0).then(|| {
            format!(
                "libc: {} processes not looked at (queue of {QUEUE} full), {over} libc files \
                 over the {MAX_LIBCS} hooked",
                self.dropped
            )
        })
    }
}

/// The worker: opens the libc of each pid offered, and sends each one found once per place
/// (mount namespace and root directory: the same path there is the same file).
fn find(queue: Receiver<u32>, found: SyncSender<LibcFile>) {
    let mut places: Lru<(u64, u64, u64), ()> = Lru::new(SEEN);
    let scan = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .take(SCAN);
    for pid in scan.chain(queue) {
        let place = (|| {
            let ns = std::fs::metadata(format!("/proc/{pid}/ns/mnt")).ok()?;
            let root = std::fs::metadata(format!("/proc/{pid}/root")).ok()?;
            Some((ns.ino(), root.dev(), root.ino()))
        })();
        let Some(place) = place.filter(|p| places.get(p).is_none()) else {
            continue;
        };
        // An error is a process gone or a file that is not a libc to hook: nothing to do.
        if let Ok(Some(file)) = LibcFile::of_process(pid) {
            places.insert(place, ());
            if found.send(file).is_err() {
                return;
            }
        }
    }
}
