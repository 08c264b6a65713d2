//! The standard `process_*` metrics of the agent itself (CPU, memory, file descriptors, start
//! time), as every Prometheus client library names them. prometheus-client has no process
//! collector, so they are read from /proc/self at each scrape, on the HTTP server's thread: a
//! few hundred bytes of the agent's own files, nothing a workload controls.

use std::fs;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::families::registered;
use super::names;

#[derive(Debug)]
pub(super) struct ProcessCollector {
    /// Clock ticks a second, the unit of the CPU times in /proc/self/stat.
    ticks: f64,
    page_bytes: f64,
    /// Seconds since the epoch; `None` when /proc could not say.
    start_time: Option<f64>,
}

/// What /proc/self/stat says, in its units (ticks, bytes, pages).
#[derive(Debug, PartialEq)]
struct Stat {
    cpu_ticks: u64,
    start_ticks: u64,
    virtual_bytes: u64,
    resident_pages: u64,
}

/// Parses /proc/PID/stat: the fields after the command name, which is in parentheses and may
/// hold spaces and parentheses itself.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(") ")?;
    // Field 3 (state) is the first here: utime is field 14.
    let fields: Vec<u64> = rest
        .split_ascii_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let field = |n: usize| fields.get(n - 4).copied();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// The boot time from /proc/stat, seconds since the epoch.
fn boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|t| t.trim().parse().ok())
}

fn sysconf(name: libc::c_int) -> f64 {
    // SAFETY: sysconf reads a constant of the system; no pointers.
    unsafe { libc::sysconf(name) as f64 }
}

fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some(limit.rlim_cur)
}

impl ProcessCollector {
    pub(super) fn new() -> ProcessCollector {
        let ticks = sysconf(libc::_SC_CLK_TCK);
        let stat = fs::read_to_string("/proc/self/stat").ok();
        let boot = fs::read_to_string("/proc/stat").ok();
        let start_time = match (stat.as_deref().and_then(parse_stat), boot) {
            (Some(s), Some(b)) => boot_time(&b).map(|b| b as f64 + s.start_ticks as f64 / ticks),
            _ => None,
        };
        ProcessCollector {
            ticks,
            page_bytes: sysconf(libc::_SC_PAGESIZE),
            start_time,
        }
    }
}

/// Encodes `metric` under `name`, a row of the names table.
fn put(
    encoder: &mut DescriptorEncoder,
    name: &'static str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let (base, unit) = registered(name);
    // As the registry writes the help of what is registered with it.
    let help = format!("{}.", names::metric(name).help);
    let described = encoder.encode_descriptor(base, &help, unit.as_ref(), metric.metric_type())?;
    metric.encode(described)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let stat = fs::read_to_string("/proc/self/stat").ok();
        if let Some(s) = stat.as_deref().and_then(parse_stat) {
            let cpu = s.cpu_ticks as f64 / self.ticks;
            put(e, "process_cpu_seconds_total", ConstCounter::new(cpu))?;
            let resident = s.resident_pages as f64 * self.page_bytes;
            put(
                e,
                "process_resident_memory_bytes",
                ConstGauge::new(resident),
            )?;
            let virt = s.virtual_bytes as f64;
            put(e, "process_virtual_memory_bytes", ConstGauge::new(virt))?;
        }
        if let Ok(fds) = fs::read_dir("/proc/self/fd") {
            let open = fds.count() as i64;
            put(e, "process_open_fds", ConstGauge::new(open))?;
        }
        if let Some(max) = max_fds() {
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            put(e, "process_max_fds", ConstGauge::new(max))?;
        }
        if let Some(start) = self.start_time {
            put(e, "process_start_time_seconds", ConstGauge::new(start))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        // A command name with a space and a parenthesis, as a process may choose.
        let line = "4242 (dns lens) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 \
                    9 0 123456 987654321 4321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 \
                    1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                cpu_ticks: 175,
                start_ticks: 123456,
                virtual_bytes: 987654321,
                resident_pages: 4321,
            }
        );
        assert_eq!(boot_time("cpu 1 2 3\nbtime 1700000000\n"), Some(1700000000));
        let own = parse_stat(&fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        assert!(own.resident_pages > 0 && own.virtual_bytes > 0, "{own:?}");
    }
}
