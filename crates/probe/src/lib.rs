//! Loads and attaches the dnslens BPF object and reads its ring buffer (needs root).
//!
//! Order, as in libbpf-bootstrap: preflight (BTF, tracefs) -> set config -> load -> attach ->
//! poll. Dropping [`Probe`] drops the links, which detaches every hook.

mod preflight;
mod resolver;
mod ring;

use std::{
    os::fd::{AsFd, AsRawFd},
    time::Duration,
};

use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, CgroupAttachMode, CgroupSockAddr, ProgramError, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
pub use dnslens_abi::*;
pub use resolver::{Hooked, LibcError, LibcFile, LibcHooks, MAX_LIBCS, MAX_LIBC_BYTES};
use ring::{Epoll, RingPositions};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dnslens.bpf.o"));

const EXIT_BTF_PROGRAM: &str = "sys_exit_btf";
const EXIT_TRACEPOINT_PROGRAM: &str = "sys_exit_tracepoint";
const EXEC_PROGRAM: &str = "sched_process_exec";
const SOURCE_PROGRAM: &str = "net_dev_queue";
const CONNECT_PROGRAM: &str = "inet_sock_set_state";
const MMSG_END_PROGRAM: &str = "mmsg_call_end";

/// A turn of [`Probe::poll_gathered`] that read fewer records than this makes the next one wait
/// [`GATHER`] first.
const SMALL_BATCH: usize = 256;
/// How long records may gather in the ring buffer after a small turn: output is this much
/// later at worst; at 200,000 messages a second the ring buffer holds 2,000 more records (under
/// 1 MiB). 10 ms rather than 2 ms cut dnslens's CPU per message at 10k queries/s by about 12%
/// (docs/performance.md): fewer turns for the same messages.
const GATHER: Duration = Duration::from_millis(10);

/// What to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Ports that count as DNS, local or remote (at most [`MAX_PORTS`]).
    pub ports: Vec<u16>,
    /// Ring-buffer size in bytes: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Which kernel hooks capture the messages.
    pub capture: CaptureMode,
    /// Whether a DNS server's side of UDP exchanges (queries it receives, responses it sends)
    /// goes to userspace in full. When false, one message per server process per
    /// [`dnslens_abi::RESOLVER_RENEWAL_NS`] does and the rest are counted as
    /// [`KernelCounter::ServerSide`]: for outputs that show only the client side.
    pub server_side_events: bool,
}

/// Which kernel hooks capture the messages. All see the same messages; they differ in what the
/// rest of the host pays and in what kernel they need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum CaptureMode {
    /// The first of the modes below, in order, that this kernel allows.
    #[default]
    Auto,
    /// Socket-layer tracepoints `sock_send_length`/`sock_recv_length` (Linux 6.3+): pipes and
    /// files pay nothing.
    Sockets,
    /// The BTF raw tracepoint `sys_exit` (Linux 5.15+): every syscall runs the hook.
    SyscallExit,
    /// The per-syscall `syscalls/sys_exit_*` tracepoints (Linux 5.15+), where BTF raw
    /// tracepoints are refused.
    SyscallTracepoints,
}

impl std::fmt::Display for CaptureMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CaptureMode::Auto => "auto",
            CaptureMode::Sockets => "socket tracepoints",
            CaptureMode::SyscallExit => "syscall-exit raw tracepoint",
            CaptureMode::SyscallTracepoints => "syscall tracepoints",
        })
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            ports: vec![53],
            ring_buffer_bytes: 16 << 20,
            capture: CaptureMode::Auto,
            server_side_events: true,
        }
    }
}

/// Why the probe could not start or read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The configuration cannot be loaded as given.
    #[error("invalid probe configuration: {0}")]
    Config(String),
    /// Loading BPF needs privileges this process lacks.
    #[error(
        "loading BPF needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; before Linux 5.11 also CAP_SYS_RESOURCE): run dnslens with sudo"
    )]
    NotPrivileged,
    /// The kernel does not describe its own types, so CO-RE cannot relocate.
    #[error("kernel has no BTF (/sys/kernel/btf/vmlinux missing): need a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf,
    /// Syscall tracepoints are looked up in tracefs.
    #[error("tracefs is not mounted and could not be mounted ({0}): run `mount -t tracefs tracefs /sys/kernel/tracing`")]
    NoTracefs(String),
    /// The kernel rejected the object or a program; `detail` keeps the verifier log's tail.
    #[error("loading the BPF object failed: {detail}")]
    Load {
        /// What failed, with the last lines of the verifier log when there is one.
        detail: String,
    },
    /// Not one hook could be attached.
    #[error("no syscall hook could be attached: {0}")]
    Attach(String),
    /// Reading the ring buffer or the counters failed.
    #[error("reading from the kernel failed: {0}")]
    Read(String),
}

/// One hook and whether it is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookStatus {
    /// Tracepoint name, e.g. `syscalls/sys_enter_sendto`.
    pub name: String,
    pub attached: bool,
    /// Why it is not attached.
    pub error: Option<String>,
}

/// Kernel-side statistics of one loaded program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub run_count: u64,
    pub run_time: Duration,
}

/// The loaded, attached BPF object. Dropping it detaches everything.
pub struct Probe {
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    // Read as words: aya's map types need its `Pod`, which the pure abi crate does not know.
    sources: HashMap<MapData, [u64; 2], [u64; Source::WORDS]>,
    hooks: Vec<HookStatus>,
    mode: CaptureMode,
    epoll: Epoll,
    positions: RingPositions,
    /// Records the last [`Probe::poll_gathered`] read.
    last_turn: usize,
    libc: LibcHooks,
    // Owns programs and links; kept last so it drops after the maps taken from it.
    ebpf: Ebpf,
}

impl Probe {
    /// Checks the kernel, loads the object with `config` and attaches every hook it can.
    pub fn load(config: &ProbeConfig) -> Result<Probe, ProbeError> {
        let (ports, port_count) = ports_array(&config.ports)?;
        let ring_bytes = config.ring_buffer_bytes;
        if !ring_bytes.is_power_of_two() || ring_bytes < 4096 {
            return Err(ProbeError::Config(format!(
                "ring-buffer size {ring_bytes} must be a power of two of at least 4096 bytes"
            )));
        }
        preflight::check_btf()?;
        // Only the per-syscall tracepoints and the exec hook need tracefs: its absence is fatal
        // only when nothing else can capture.
        let tracefs = preflight::ensure_tracefs();
        let memory_subsys = preflight::memory_subsys_id();

        let mut ebpf = EbpfLoader::new()
            .override_global("dns_ports", &ports, true)
            .override_global("dns_port_count", &port_count, true)
            .override_global("memory_subsys_id", &memory_subsys, true)
            .override_global("ring_size", &(ring_bytes as u64), true)
            .override_global(
                "server_side_events",
                &u8::from(config.server_side_events),
                true,
            )
            .map_max_entries("events", ring_bytes)
            // task_cgroups (task storage) has no aya type; only the kernel side uses it.
            .allow_unsupported_maps()
            .load(OBJECT)
            .map_err(load_error)?;

        let btf = Btf::from_sys_fs().map_err(|e| ProbeError::Load {
            detail: error_chain(&e),
        })?;
        let (mode, mut hooks) = match attach_capture(&mut ebpf, &btf, config.capture) {
            Ok(attached) => attached,
            Err(e) => return Err(tracefs.err().unwrap_or(e)),
        };
        // Optional: without it, wildcard-bound UDP sockets show the wildcard as their address.
        hooks.push(attach_btf(&mut ebpf, &btf, SOURCE_PROGRAM, SOURCE_PROGRAM));
        // Optional: without it, no connect records (the connect detectors see nothing).
        hooks.push(attach_btf(
            &mut ebpf,
            &btf,
            CONNECT_PROGRAM,
            CONNECT_PROGRAM,
        ));
        // Optional: without it, exe paths come from /proc alone.
        hooks.push(match &tracefs {
            Ok(()) => attach_tracepoint(&mut ebpf, EXEC_PROGRAM, "sched", EXEC_PROGRAM),
            Err(e) => hook_status(format!("sched/{EXEC_PROGRAM}"), Err(e.to_string())),
        });

        // Optional, socket mode: without it a sendmmsg or recvmmsg that waits more than 10 ms
        // between two of its messages can show the first message twice.
        if mode == CaptureMode::Sockets {
            for syscall in ["sys_exit_sendmmsg", "sys_exit_recvmmsg"] {
                hooks.push(match &tracefs {
                    Ok(()) => attach_tracepoint(&mut ebpf, MMSG_END_PROGRAM, "syscalls", syscall),
                    Err(e) => hook_status(format!("syscalls/{syscall}"), Err(e.to_string())),
                });
            }
            // One call that ends at once (no such descriptor) tells the hook's program that
            // calls are seen to end, before any workload's call relies on it.
            // SAFETY: vlen 0 with a null vector; the kernel checks the fd first.
            unsafe { libc::sendmmsg(-1, std::ptr::null_mut(), 0, 0) };
        }

        let ring = take_map(&mut ebpf, "events").and_then(|m| {
            RingBuf::try_from(m).map_err(|e| ProbeError::Load {
                detail: e.to_string(),
            })
        })?;
        let counters = take_map(&mut ebpf, "counters").and_then(|m| {
            PerCpuArray::try_from(m).map_err(|e| ProbeError::Load {
                detail: e.to_string(),
            })
        })?;
        let sources = take_map(&mut ebpf, "sources").and_then(|m| {
            HashMap::try_from(m).map_err(|e| ProbeError::Load {
                detail: e.to_string(),
            })
        })?;
        let epoll = Epoll::new(ring.as_fd().as_raw_fd())?;
        let positions = RingPositions::map(ring.as_fd().as_raw_fd(), ring_bytes)?;
        Ok(Probe {
            ring,
            counters,
            sources,
            hooks,
            mode,
            epoll,
            positions,
            last_turn: 0,
            libc: LibcHooks::default(),
            ebpf,
        })
    }

    /// Run counts and run time of each loaded program; the time is counted only while
    /// `kernel.bpf_stats_enabled` is 1 (see `aya::sys::enable_stats`).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some(ProgramStats {
                    name: name.to_string(),
                    run_count: info.run_count(),
                    run_time: info.run_time(),
                })
            })
            .collect()
    }

    /// How messages are captured: never `Auto` (that is resolved at load).
    pub fn mode(&self) -> CaptureMode {
        self.mode
    }

    /// Hooks the resolver functions of `libc` (see [`LibcFile`]): its calls come as libc
    /// records. An error says why uprobes cannot be used here; it is returned again for every
    /// later call, without trying.
    pub fn attach_libc(&mut self, libc: &LibcFile) -> Result<Hooked, String> {
        self.libc.attach(&mut self.ebpf, libc)
    }

    /// The libc files hooked, and what was not hooked.
    pub fn libc_hooks(&self) -> &LibcHooks {
        &self.libc
    }

    /// Every hook, attached or not.
    pub fn hooks(&self) -> &[HookStatus] {
        &self.hooks
    }

    /// Waits up to `timeout` for records and calls `on_record` with each; returns how many.
    /// Reading stops after about `timeout` too, even while records keep coming, so that under
    /// sustained load the caller still gets to its stop flag, timeouts and loss checks.
    pub fn poll(
        &mut self,
        timeout: Duration,
        mut on_record: impl FnMut(&[u8]),
    ) -> Result<usize, ProbeError> {
        let mut seen = self.drain(&mut on_record, timeout);
        if seen == 0 {
            self.epoll.wait(timeout)?;
            seen = self.drain(&mut on_record, timeout);
        }
        Ok(seen)
    }

    /// [`Probe::poll`] for a reader that runs until stopped: after a turn that read only a few
    /// records it first lets records gather. The kernel wakes the reader for each record it finds
    /// caught up, so at a few thousand messages a second every turn (wake-up, expiry, write) was
    /// paid per message; letting records gather makes turns rare and batches large. It waits
    /// before the read, not after, so a stop still reads what came meanwhile.
    pub fn poll_gathered(
        &mut self,
        timeout: Duration,
        on_record: impl FnMut(&[u8]),
    ) -> Result<usize, ProbeError> {
        if (1..SMALL_BATCH).contains(&self.last_turn) {
            std::thread::sleep(GATHER);
        }
        self.last_turn = self.poll(timeout, on_record)?;
        Ok(self.last_turn)
    }

    fn drain(&mut self, on_record: &mut impl FnMut(&[u8]), budget: Duration) -> usize {
        // The clock is read once per this many records.
        const CHECK_EVERY: usize = 1024;
        let start = std::time::Instant::now();
        let mut seen = 0;
        while let Some(record) = self.ring.next() {
            on_record(&record);
            seen += 1;
            if seen % CHECK_EVERY == 0 && start.elapsed() >= budget {
                break;
            }
        }
        seen
    }

    /// Bytes written to the ring buffer and not read yet (record headers included), and the
    /// ring buffer's size: how close the kernel is to dropping events.
    pub fn ring_use(&self) -> (u64, u64) {
        (self.positions.used(), self.positions.size)
    }

    /// Every cgroup the kernel charges for its share of the ring buffer, with what it lost
    /// since it was first tracked. Entries the kernel evicts or replaces while this reads are
    /// skipped.
    pub fn sources(&self) -> Vec<(SourceKey, Source)> {
        self.sources
            .iter()
            .filter_map(Result::ok)
            .map(|(key, value)| (SourceKey::from_words(key), Source::from_words(value)))
            .collect()
    }

    /// The kernel side's counters, summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, ProbeError> {
        let mut sums = KernelCounters::default();
        for &counter in KernelCounter::ALL {
            let per_cpu = self
                .counters
                .get(&(counter as u32), 0)
                .map_err(|e| ProbeError::Read(e.to_string()))?;
            sums.set(counter, per_cpu.iter().sum());
        }
        Ok(sums)
    }
}

fn ports_array(ports: &[u16]) -> Result<([u16; MAX_PORTS], u32), ProbeError> {
    let mut unique: Vec<u16> = Vec::with_capacity(ports.len());
    for &port in ports {
        if port == 0 {
            return Err(ProbeError::Config("port 0 is not a DNS port".into()));
        }
        if !unique.contains(&port) {
            unique.push(port);
        }
    }
    if unique.is_empty() || unique.len() > MAX_PORTS {
        return Err(ProbeError::Config(format!(
            "between 1 and {MAX_PORTS} distinct DNS ports are supported, got {}",
            unique.len()
        )));
    }
    let mut array = [0u16; MAX_PORTS];
    array[..unique.len()].copy_from_slice(&unique);
    Ok((array, unique.len() as u32))
}

fn load_error(error: aya::EbpfError) -> ProbeError {
    use aya::{programs::ProgramError, EbpfError};
    let permission = |e: &std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
    match &error {
        EbpfError::MapError(aya::maps::MapError::CreateError { io_error, .. })
            if permission(io_error) =>
        {
            ProbeError::NotPrivileged
        }
        EbpfError::ProgramError(ProgramError::LoadError { io_error, .. })
            if permission(io_error) =>
        {
            ProbeError::NotPrivileged
        }
        _ => ProbeError::Load {
            detail: error_chain(&error),
        },
    }
}

/// Attaches the hooks of `wanted`, or under `Auto` of the first mode that attaches whole; the
/// hooks of modes tried and given up stay in the list with the reason.
fn attach_capture(
    ebpf: &mut Ebpf,
    btf: &Btf,
    wanted: CaptureMode,
) -> Result<(CaptureMode, Vec<HookStatus>), ProbeError> {
    let order = match wanted {
        CaptureMode::Auto => vec![
            CaptureMode::Sockets,
            CaptureMode::SyscallExit,
            CaptureMode::SyscallTracepoints,
        ],
        mode => vec![mode],
    };
    let mut hooks = Vec::new();
    for mode in order {
        let attempt: Vec<HookStatus> = match mode {
            CaptureMode::Sockets => {
                let mut hooks: Vec<HookStatus> = ["sock_send_length", "sock_recv_length"]
                    .iter()
                    .map(|tracepoint| attach_btf(ebpf, btf, tracepoint, tracepoint))
                    .collect();
                hooks.extend(
                    ["recvmsg4", "recvmsg6"]
                        .iter()
                        .map(|name| attach_recvmsg(ebpf, name)),
                );
                hooks
            }
            CaptureMode::SyscallExit => vec![attach_btf(ebpf, btf, EXIT_BTF_PROGRAM, "sys_exit")],
            _ => Syscall::MESSAGES
                .iter()
                .map(|syscall| {
                    let tracepoint = format!("sys_exit_{}", syscall.name());
                    attach_tracepoint(ebpf, EXIT_TRACEPOINT_PROGRAM, "syscalls", &tracepoint)
                })
                .collect(),
        };
        let complete = attempt.iter().all(|h| h.attached);
        // A mode whose hooks attached only in part is given up whole, except the syscall
        // tracepoints: each of those stands alone.
        if complete
            || (mode == CaptureMode::SyscallTracepoints && attempt.iter().any(|h| h.attached))
        {
            hooks.extend(attempt);
            return Ok((mode, hooks));
        }
        for hook in attempt.iter().filter(|h| h.attached) {
            detach(ebpf, &hook.name);
        }
        hooks.extend(attempt.into_iter().map(|mut h| {
            if h.attached {
                h.attached = false;
                h.error = Some(format!("given up: other hooks of {mode} failed"));
            }
            h
        }));
    }
    let why = hooks
        .iter()
        .filter_map(|h| h.error.as_deref())
        .collect::<Vec<_>>()
        .join("; ");
    Err(ProbeError::Attach(why))
}

/// The cgroup/recvmsg hooks see the sender of datagrams that unconnected UDP sockets receive;
/// attached to the cgroup v2 root they apply to every task. Attached as a BPF link (the only
/// way on the kernels that have the socket tracepoints), which never displaces other programs:
/// the kernel refuses the multi-attach flag on links, hence `Single`.
fn attach_recvmsg(ebpf: &mut Ebpf, program_name: &str) -> HookStatus {
    let result = (|| -> Result<String, String> {
        let root = preflight::cgroup2_root()
            .ok_or("no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo)")?;
        let cgroup = std::fs::File::open(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let program: &mut CgroupSockAddr = ebpf
            .program_mut(program_name)
            .ok_or_else(|| format!("program {program_name} missing from the object"))?
            .try_into()
            .map_err(|e: ProgramError| e.to_string())?;
        program.load().map_err(|e| verifier_detail(&e))?;
        program
            .attach(cgroup, CgroupAttachMode::Single)
            .map_err(|e| error_chain(&e))?;
        Ok(root.display().to_string())
    })();
    match result {
        Ok(root) => hook_status(format!("cgroup/{program_name} ({root})"), Ok(())),
        Err(e) => hook_status(format!("cgroup/{program_name}"), Err(e)),
    }
}

/// Unloads the program behind a hook that was attached (which drops its links).
fn detach(ebpf: &mut Ebpf, hook_name: &str) {
    let program_name = hook_name.split(' ').next().unwrap_or(hook_name);
    let program_name = program_name.rsplit('/').next().unwrap_or(program_name);
    let program_name = if program_name == "sys_exit" {
        EXIT_BTF_PROGRAM
    } else {
        program_name
    };
    if let Some(program) = ebpf.program_mut(program_name) {
        // Detaching can only fail for a program never loaded, which attached hooks are not.
        let _ = match program {
            aya::programs::Program::BtfTracePoint(p) => p.unload(),
            aya::programs::Program::TracePoint(p) => p.unload(),
            aya::programs::Program::CgroupSockAddr(p) => p.unload(),
            _ => Ok(()),
        };
    }
}

fn hook_status(name: String, result: Result<(), String>) -> HookStatus {
    match result {
        Ok(()) => HookStatus {
            name,
            attached: true,
            error: None,
        },
        Err(error) => HookStatus {
            name,
            attached: false,
            error: Some(error),
        },
    }
}

fn attach_btf(ebpf: &mut Ebpf, btf: &Btf, program_name: &str, tracepoint: &str) -> HookStatus {
    let result = (|| -> Result<(), String> {
        let program: &mut BtfTracePoint = ebpf
            .program_mut(program_name)
            .ok_or_else(|| format!("program {program_name} missing from the object"))?
            .try_into()
            .map_err(|e: ProgramError| e.to_string())?;
        program
            .load(tracepoint, btf)
            .map_err(|e| verifier_detail(&e))?;
        program.attach().map_err(|e| error_chain(&e))?;
        Ok(())
    })();
    hook_status(format!("raw_tracepoint/{tracepoint}"), result)
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program_name: &str,
    category: &str,
    tracepoint: &str,
) -> HookStatus {
    let result = (|| -> Result<(), String> {
        let program: &mut TracePoint = ebpf
            .program_mut(program_name)
            .ok_or_else(|| format!("program {program_name} missing from the object"))?
            .try_into()
            .map_err(|e: ProgramError| e.to_string())?;
        // One program serves several tracepoints: load it once.
        if program.fd().is_err() {
            program.load().map_err(|e| verifier_detail(&e))?;
        }
        program
            .attach(category, tracepoint)
            .map_err(|e| error_chain(&e))?;
        Ok(())
    })();
    hook_status(format!("{category}/{tracepoint}"), result)
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, ProbeError> {
    ebpf.take_map(name).ok_or_else(|| ProbeError::Load {
        detail: format!("map {name} missing from the object"),
    })
}

/// The error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A program load error with the last lines of the verifier log, where the reason is.
fn verifier_detail(error: &aya::programs::ProgramError) -> String {
    if let aya::programs::ProgramError::LoadError {
        io_error,
        verifier_log,
    } = error
    {
        let log = verifier_log.to_string();
        let tail: Vec<&str> = log.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return format!("{io_error}; verifier log (tail):\n{}", tail.join("\n"));
    }
    error_chain(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_deduplicated_and_bounded() {
        let (array, count) = ports_array(&[53, 5353, 53]).unwrap();
        assert_eq!(count, 2);
        assert_eq!(&array[..2], &[53, 5353]);
        assert!(ports_array(&[]).is_err());
        assert!(ports_array(&[0]).is_err());
        assert!(ports_array(&(1..=9).collect::<Vec<u16>>()).is_err());
    }
}
