//! The command line as typed: clap definitions only, values already of their type
//! ([`crate::units`]). Checking values together and turning them into the settings that build
//! the components is `settings.rs`. The agent's groups of flags are also the keys of its config
//! file (`settings/config.rs`), so they derive `Deserialize` too.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dnslens_lens::count::CountBy;
use dnslens_probe::CaptureMode;
use serde::{Deserialize, Deserializer};

use crate::sink::{Grouping, TableColumn};
use crate::units::{self, Address, ByteSize, DnstapAddress, Duration, Fraction, RingBufferSize};

#[derive(Debug, Parser)]
#[command(
    name = "dnslens",
    version,
    about = "Which process, container and pod resolved which domain, when, and what came back",
    long_about = "Which process, container and pod resolved which domain, when, and what came \
                  back.\n\nCaptures DNS in the kernel with eBPF at the socket syscalls (UDP and \
                  TCP, any resolver library) and needs root."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print DNS exchanges as they happen: a table, or JSON lines with --json.
    Trace(TraceArgs),
    /// Count the queries sent by clients per interval, by who asked (process, pid, pod...), what
    /// (qname, domain, qtype), whom (server) and what came back (rcode), or several of these;
    /// with --lookups, count lookups instead (by who asked, name, domain, outcome, source).
    Count(CountArgs),
    /// A live view, like top: per pod or per process, queries/s, NXDOMAIN and SERVFAIL %,
    /// unanswered queries, p50/p99 latency, lookups/s, lookup p99, queries per lookup, the
    /// selected row's top domains, recent alerts.
    Top(TopArgs),
    /// Show which cgroup, container, pod and workload a running process belongs to.
    Whois(WhoisArgs),
    /// Run the detectors over a trace saved with `dnslens trace --json` (no kernel, no root).
    Detect(DetectArgs),
    /// The node agent: Prometheus metrics and health on HTTP, events and alerts as JSON lines,
    /// until SIGTERM (docs/kubernetes.md, docs/metrics.md).
    Agent(AgentArgs),
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// One JSON object per message and per unanswered query (schema: docs/schema.md).
    #[arg(short, long)]
    pub json: bool,

    /// Stop after printing N events (N alerts with --alerts).
    #[arg(short = 'c', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// At the end, every stage's counters rather than one line (they are shown anyway when
    /// something was lost).
    #[arg(short, long)]
    pub verbose: bool,

    /// Report a query as unanswered when no response came within this time.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub timeout: Duration,

    /// Colour the table.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,

    /// The table's columns, in this order, e.g. time,process,server,qname,rcode,latency
    /// [default: every column that fits the terminal].
    #[arg(
        long,
        value_enum,
        value_name = "COLUMN",
        value_delimiter = ',',
        conflicts_with = "json"
    )]
    pub columns: Vec<TableColumn>,

    /// With --json, also a line per TCP connect (not filtered), for `dnslens detect` to replay.
    #[arg(long, requires = "json")]
    pub connects: bool,

    /// One line per lookup instead of one per message: the name the application asked for,
    /// through its search list, retries and nameservers, how it ended and what it cost. The
    /// filters judge a lookup by its process (--pid, --comm, --pod, ...), its names (--domain:
    /// any name it tried; --exclude-domain: the name asked or answered; --qtype: any type
    /// asked) and its outcome (--rcode NOERROR: answered or nodata, TIMEOUT: timeout;
    /// --min-latency).
    #[arg(long, conflicts_with_all = ["alerts", "connects", "columns"])]
    pub lookups: bool,

    /// Also write every DNS message captured (both sides, as the filters let through) to FILE
    /// as pcapng for Wireshark or tshark: a packet per message with IP and UDP or TCP headers,
    /// its kernel time in ns, and a comment naming the process, container and pod; an interface
    /// per network namespace. FILE is emptied first, as tcpdump -w does.
    #[arg(
        short = 'w',
        long,
        value_name = "FILE",
        help_heading = "Packet capture"
    )]
    pub pcapng: Option<PathBuf>,

    /// Rotate the --pcapng file when a packet would take it past this size, e.g. 100MiB.
    #[arg(
        long,
        value_name = "SIZE",
        requires = "pcapng",
        help_heading = "Packet capture"
    )]
    pub rotate_size: Option<ByteSize>,

    /// Rotated files kept: FILE.1 (the newest) to FILE.N [default: 5].
    #[arg(
        long,
        value_name = "N",
        requires = "pcapng",
        help_heading = "Packet capture"
    )]
    pub rotate_keep: Option<u32>,

    #[command(flatten)]
    pub capture: CaptureArgs,

    #[command(flatten)]
    pub dnstap: DnstapArgs,

    /// Show only alerts (the detectors still see every event).
    #[arg(long, conflicts_with = "no_detect", help_heading = "Detectors")]
    pub alerts: bool,

    /// Run no detectors: events only.
    #[arg(long, help_heading = "Detectors")]
    pub no_detect: bool,

    /// Learn each workload's domains and executables into --baseline for this long, e.g. 10m,
    /// then save it and judge against it.
    #[arg(long, value_name = "DURATION", help_heading = "Detectors")]
    pub learn: Option<Duration>,

    #[command(flatten)]
    pub detectors: DetectorArgs,

    #[command(flatten)]
    pub filters: FilterArgs,

    #[command(flatten)]
    pub answers: AnswerFilterArgs,

    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// What to count queries by. Repeat it (or give a list) to count by several keys at once,
    /// a column each in the order given: --by pod --by qname. With rcode, a query is counted
    /// when its answer comes (TIMEOUT when none did). name, outcome and source are lookups'
    /// keys (--lookups), which have no qname, qtype, rcode or server.
    #[arg(
        long,
        value_enum,
        value_name = "KEY",
        value_delimiter = ',',
        default_values_t = [CountBy::Process]
    )]
    pub by: Vec<CountBy>,

    /// Length of one counting interval.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub interval: Duration,

    /// Count lookups instead of queries, each when it ends (as trace --lookups shows them):
    /// by who asked, name (what the application asked for, its search list taken off), domain,
    /// outcome (answered, nxdomain, nodata, servfail, refused, timeout, error) and source (dns,
    /// libc, libc+dns). The filters judge lookups as trace --lookups does.
    #[arg(long)]
    pub lookups: bool,

    /// One JSON object per interval.
    #[arg(short, long)]
    pub json: bool,

    /// At the end, every stage's counters rather than one line (they are shown anyway when
    /// something was lost).
    #[arg(short, long)]
    pub verbose: bool,

    #[command(flatten)]
    pub capture: CaptureArgs,

    #[command(flatten)]
    pub filters: FilterArgs,

    #[command(flatten)]
    pub answers: AnswerFilterArgs,

    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
}

/// `dnslens top`. Keys: ? help, q quit, g pods/processes, < > sort column, r reverse, arrows
/// select, a alerts in full.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// What a row is at the start (`g` switches).
    #[arg(long, value_enum, value_name = "ROWS", default_value_t = Grouping::Pod)]
    pub by: Grouping,

    /// How often the view is redrawn.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub interval: Duration,

    /// Count a query as unanswered when no response came within this time.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub timeout: Duration,

    #[command(flatten)]
    pub capture: CaptureArgs,

    /// Run no detectors: no alerts.
    #[arg(long, help_heading = "Detectors")]
    pub no_detect: bool,

    #[command(flatten)]
    pub detectors: DetectorArgs,

    #[command(flatten)]
    pub filters: FilterArgs,

    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// The JSON lines of `dnslens trace --json` (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,

    /// One JSON object per alert (docs/detectors.md).
    #[arg(long)]
    pub json: bool,

    /// Colour the alerts.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,

    /// Learn the whole input into --baseline (saved at the end) instead of judging against it.
    #[arg(long, help_heading = "Detectors")]
    pub learn: bool,

    #[command(flatten)]
    pub detectors: DetectorArgs,
}

/// `dnslens agent`. Each flag but --config can be set in the config file instead, under its long
/// name with `_` for `-` (`rotate_size = "100MiB"`); a flag given here wins over the file.
#[derive(Clone, Debug, Default, Args)]
pub struct AgentArgs {
    /// The agent's settings as TOML: keys are the flags below with `_` for `-`; an unknown key
    /// is refused with its line.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub agent: AgentOptions,

    #[command(flatten)]
    pub capture: CaptureArgs,

    #[command(flatten)]
    pub dnstap: DnstapArgs,

    #[command(flatten)]
    pub detectors: DetectorArgs,

    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
}

/// The agent's own flags, besides those it shares with `trace`.
#[derive(Clone, Debug, Default, Args, Deserialize)]
#[serde(default)]
pub struct AgentOptions {
    /// Where /metrics, /healthz and /readyz are served [default: 127.0.0.1:9253].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_address: Option<Address>,

    /// Serve the metrics port as HTTPS only, with this PEM certificate chain; needs
    /// --metrics-tls-key. Read again when it changes.
    #[arg(long, value_name = "FILE")]
    pub metrics_tls_cert: Option<PathBuf>,

    /// The PEM private key of --metrics-tls-cert.
    #[arg(long, value_name = "FILE")]
    pub metrics_tls_key: Option<PathBuf>,

    /// /metrics answers only requests with `Authorization: Bearer TOKEN`, TOKEN this file's
    /// line (read again when it changes); /healthz and /readyz stay open for the kubelet.
    #[arg(long, value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,

    /// Events and alerts as JSON lines: a file, or `-` for stdout [default: -].
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Rotate the --output file when a line would take it past this size, e.g. 100MiB.
    #[arg(long, value_name = "SIZE")]
    pub rotate_size: Option<ByteSize>,

    /// Rotated files kept: PATH.1 (the newest) to PATH.N [default: 5].
    #[arg(long, value_name = "N")]
    pub rotate_keep: Option<u32>,

    /// Fraction of the ordinary events written, from 0 to 1 (a query and its response are kept
    /// or dropped together); alerts are always written, metrics count every event [default: 1].
    #[arg(long, value_name = "FRACTION")]
    pub sample: Option<Fraction>,

    /// Report a query as unanswered when no response came within this time [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<Duration>,

    /// Run no detectors: events and metrics only.
    #[arg(long, help_heading = "Detectors")]
    pub no_detect: bool,
}

impl AgentArgs {
    /// These flags, each taken from `file` where not given here.
    pub fn or(self, file: AgentArgs) -> AgentArgs {
        AgentArgs {
            config: self.config.or(file.config),
            agent: self.agent.or(file.agent),
            capture: self.capture.or(file.capture),
            dnstap: self.dnstap.or(file.dnstap),
            detectors: self.detectors.or(file.detectors),
            kubernetes: self.kubernetes.or(file.kubernetes),
        }
    }
}

impl AgentOptions {
    fn or(self, file: AgentOptions) -> AgentOptions {
        let AgentOptions {
            metrics_address,
            metrics_tls_cert,
            metrics_tls_key,
            metrics_token_file,
            output,
            rotate_size,
            rotate_keep,
            sample,
            timeout,
            no_detect,
        } = file;
        AgentOptions {
            metrics_address: self.metrics_address.or(metrics_address),
            metrics_tls_cert: self.metrics_tls_cert.or(metrics_tls_cert),
            metrics_tls_key: self.metrics_tls_key.or(metrics_tls_key),
            metrics_token_file: self.metrics_token_file.or(metrics_token_file),
            output: self.output.or(output),
            rotate_size: self.rotate_size.or(rotate_size),
            rotate_keep: self.rotate_keep.or(rotate_keep),
            sample: self.sample.or(sample),
            timeout: self.timeout.or(timeout),
            no_detect: self.no_detect || no_detect,
        }
    }
}

/// `--dnstap`: every DNS message also as dnstap, beside the normal output (docs/shipping.md).
#[derive(Clone, Debug, Default, Args, Deserialize)]
#[command(next_help_heading = "dnstap")]
#[serde(default)]
pub struct DnstapArgs {
    /// Also send each DNS message as dnstap, with its process, container and pod in `extra`:
    /// unix:/path (a Frame Streams receiver's socket), tcp:HOST:PORT, or file:/path.
    #[arg(long, value_name = "ADDR")]
    pub dnstap: Option<DnstapAddress>,

    /// Rotate the file:/path of --dnstap when a frame would take it past this size, e.g. 100MiB.
    #[arg(long, value_name = "SIZE", requires = "dnstap")]
    pub dnstap_rotate_size: Option<ByteSize>,

    /// Rotated dnstap files kept: PATH.1 (the newest) to PATH.N [default: 5].
    #[arg(long, value_name = "N", requires = "dnstap_rotate_size")]
    pub dnstap_rotate_keep: Option<u32>,
}

impl DnstapArgs {
    fn or(self, file: DnstapArgs) -> DnstapArgs {
        DnstapArgs {
            dnstap: self.dnstap.or(file.dnstap),
            dnstap_rotate_size: self.dnstap_rotate_size.or(file.dnstap_rotate_size),
            dnstap_rotate_keep: self.dnstap_rotate_keep.or(file.dnstap_rotate_keep),
        }
    }
}

/// The detectors' configuration and baseline, for `trace` and `detect`.
#[derive(Clone, Debug, Default, Args, Deserialize)]
#[command(next_help_heading = "Detectors")]
#[serde(default)]
pub struct DetectorArgs {
    /// Thresholds, allowlists and per-namespace overrides (TOML; docs/detectors.md).
    #[arg(long, value_name = "FILE")]
    pub detect_config: Option<PathBuf>,

    /// What each workload normally resolves and runs (JSON), as `dnslens trace --learn 10m
    /// --baseline FILE` or `dnslens detect --learn` saved it; where learning, a missing file is
    /// created.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
}

impl DetectorArgs {
    fn or(self, file: DetectorArgs) -> DetectorArgs {
        let DetectorArgs {
            detect_config,
            baseline,
        } = file;
        DetectorArgs {
            detect_config: self.detect_config.or(detect_config),
            baseline: self.baseline.or(baseline),
        }
    }
}

#[derive(Debug, Args)]
pub struct WhoisArgs {
    /// The process id, as ps shows it on this host.
    pub pid: u32,

    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
}

/// Where pod names come from. Without a cluster (no in-cluster service account, no
/// kubeconfig), events carry container ids and pod uids only.
#[derive(Clone, Debug, Default, Args, Deserialize)]
#[command(next_help_heading = "Kubernetes")]
#[serde(default)]
pub struct KubernetesArgs {
    /// This node's name in Kubernetes: only its pods are watched [default: the hostname].
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// The kubeconfig file to reach the API server with [default: the files in KUBECONFIG,
    /// else the in-cluster service account, else ~/.kube/config].
    // KUBECONFIG is read by the cluster layer, not bound here: it is a list, and its missing
    // entries are skipped as kubectl does, where a file named by this flag must exist.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Do not ask the Kubernetes API: containers and pods by id only.
    #[arg(long)]
    pub no_kubernetes: bool,
}

impl KubernetesArgs {
    fn or(self, file: KubernetesArgs) -> KubernetesArgs {
        let KubernetesArgs {
            node_name,
            kubeconfig,
            no_kubernetes,
        } = file;
        KubernetesArgs {
            node_name: self.node_name.or(node_name),
            kubeconfig: self.kubeconfig.or(kubeconfig),
            no_kubernetes: self.no_kubernetes || no_kubernetes,
        }
    }
}

#[derive(Clone, Debug, Default, Args, Deserialize)]
#[serde(default)]
pub struct CaptureArgs {
    /// Another port that carries DNS, besides 53 (repeatable; 8 ports at most in all).
    #[arg(long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    #[serde(rename = "port", deserialize_with = "units::ports")]
    pub ports: Vec<u16>,

    /// Stop after this long, e.g. 10s, 500ms, 2m, 1h30m.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Size of the kernel-to-user ring buffer: a power of two, e.g. 16MiB.
    #[arg(long, value_name = "SIZE")]
    pub ring_buffer_size: Option<RingBufferSize>,

    /// Kernel hooks that capture DNS (docs/design.md); auto takes the cheapest this kernel allows
    /// [default: auto].
    // No clap default: the agent tells a flag given from one left to its config file.
    #[arg(long, value_enum)]
    #[serde(deserialize_with = "capture_mode")]
    pub capture: Option<CaptureMode>,
}

impl CaptureArgs {
    fn or(self, file: CaptureArgs) -> CaptureArgs {
        let CaptureArgs {
            ports,
            duration,
            ring_buffer_size,
            capture,
        } = file;
        CaptureArgs {
            ports: if self.ports.is_empty() {
                ports
            } else {
                self.ports
            },
            duration: self.duration.or(duration),
            ring_buffer_size: self.ring_buffer_size.or(ring_buffer_size),
            capture: self.capture.or(capture),
        }
    }
}

/// `capture = "sockets"` in a config file: a name as the flag takes it.
fn capture_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CaptureMode>, D::Error> {
    let name = String::deserialize(d)?;
    match CaptureMode::from_str(&name, true) {
        Ok(mode) => Ok(Some(mode)),
        Err(_) => {
            let modes: Vec<String> = CaptureMode::value_variants()
                .iter()
                .filter_map(|m| Some(m.to_possible_value()?.get_name().to_string()))
                .collect();
            Err(units::refused(
                format_args!("{name:?}"),
                format_args!("not a capture mode: one of {}", modes.join(", ")),
            ))
        }
    }
}

/// Filters, each repeatable or comma-separated; every filter given must match.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Filters")]
pub struct FilterArgs {
    /// Only this process id.
    #[arg(short, long, value_name = "PID", value_delimiter = ',')]
    pub pid: Vec<u32>,

    /// Only this thread or process name (exact, or a glob with * and ?): a thread's own name
    /// (Go and Java name theirs) or its process's.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub comm: Vec<String>,

    /// Only this process name (exact, or a glob with * and ?): the process's, whatever its
    /// threads call themselves.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub name: Vec<String>,

    /// Only names in this domain (example.com matches it and a.example.com), or a glob.
    #[arg(short, long, value_name = "DOMAIN", value_delimiter = ',')]
    pub domain: Vec<String>,

    /// Leave out names in this domain, or matching this glob.
    #[arg(long, value_name = "DOMAIN", value_delimiter = ',')]
    pub exclude_domain: Vec<String>,

    /// Only this query type: A, AAAA, HTTPS, TYPE65280...
    #[arg(long, value_name = "TYPE", value_delimiter = ',')]
    pub qtype: Vec<String>,

    /// Only this end of an exchange: client (the process that asked) or server (the one that
    /// answered, when it runs on this host).
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: Option<RoleArg>,

    /// Only processes of this user id.
    #[arg(long, value_name = "UID", value_delimiter = ',')]
    pub uid: Vec<u32>,

    /// Only pods in this namespace (exact, or a glob).
    #[arg(long, value_name = "NAMESPACE", value_delimiter = ',')]
    pub namespace: Vec<String>,

    /// Leave out pods in this namespace, e.g. kube-system to hide CoreDNS's upstream queries.
    #[arg(long, value_name = "NAMESPACE", value_delimiter = ',')]
    pub exclude_namespace: Vec<String>,

    /// Only this pod: its name (exact, or a glob) or its uid.
    #[arg(long, value_name = "POD", value_delimiter = ',')]
    pub pod: Vec<String>,

    /// Only this container: its name (exact, or a glob) or the start of its id.
    #[arg(long, value_name = "CONTAINER", value_delimiter = ',')]
    pub container: Vec<String>,

    /// Only pods of this workload: NAME or KIND/NAME (deploy/web, sts/db-*), globs allowed.
    #[arg(long, value_name = "WORKLOAD", value_delimiter = ',')]
    pub workload: Vec<String>,

    /// Only processes outside containers and pods.
    #[arg(long, conflicts_with = "no_host")]
    pub host: bool,

    /// Leave out processes outside containers and pods.
    #[arg(long)]
    pub no_host: bool,
}

/// Filters on what came back, for trace and count (which then counts each query when its
/// answer comes); top, whose rows start from queries, has none of them.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Filters")]
pub struct AnswerFilterArgs {
    /// Only responses with this code: NOERROR, NXDOMAIN, SERVFAIL, RCODE23..., or TIMEOUT for
    /// queries left unanswered.
    #[arg(long, value_name = "RCODE", value_delimiter = ',')]
    pub rcode: Vec<String>,

    /// Only queries left unanswered (the table's TIMEOUT rows): the same as --rcode TIMEOUT.
    #[arg(long)]
    pub unanswered: bool,

    /// Only exchanges that took at least this long, e.g. 100ms, and queries left unanswered.
    #[arg(long, value_name = "DURATION")]
    pub min_latency: Option<Duration>,
}

impl AnswerFilterArgs {
    /// Whether any is given.
    pub fn any(&self) -> bool {
        !self.rcode.is_empty() || self.unanswered || self.min_latency.is_some()
    }
}

/// `--role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Client,
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// When stdout is a terminal and NO_COLOR is not set.
    Auto,
    Always,
    Never,
}
