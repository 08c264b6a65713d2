//! Validated settings: the raw flags checked and turned into what builds the components (probe
//! configuration, filter, output). Every error names the flag, the value and what would work.
//! The agent's settings ([`agent`]) also come from its config file ([`config`]).

pub mod agent;
pub mod config;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use dnslens_detect::{Baseline, BaselineError, Config};
use dnslens_lens::count::{CountBy, CountedAt};
use dnslens_lens::filter::{Filter, Glob};
use dnslens_lens::model::TIMEOUT;
use dnslens_lens::Role;
use dnslens_probe::{Named, ProbeConfig, MAX_PORTS};
use strum::VariantArray;

use crate::flags::{
    AnswerFilterArgs, CaptureArgs, Cli, ColorWhen, Command, DetectorArgs, DnstapArgs, FilterArgs,
    KubernetesArgs, RoleArg,
};
use crate::sink::dnstap::DnstapOutput;
use crate::sink::pcapng::PcapngOutput;
use crate::sink::rotate::Rotation;
use crate::sink::Output;
use crate::units::{self, ByteSize, DnstapAddress};

/// Rotated files kept when a rotation size is given without the number to keep.
const DEFAULT_ROTATE_KEEP: u32 = 5;

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// `trace` or `count`: capture.
    Capture(Box<Settings>),
    /// `whois PID`.
    Whois(Whois),
    /// `detect --input FILE`: the detectors over a saved trace.
    Replay(Box<Replay>),
    /// `agent`: capture into the metrics and the JSON lines (`Output::Agent`).
    Agent(Box<Settings>),
}

#[derive(Debug, PartialEq)]
pub struct Replay {
    /// `-` is stdin.
    pub input: PathBuf,
    pub json: bool,
    pub color: bool,
    pub detect: Detect,
}

/// What the detectors run with: the config and baseline already read and checked, so a bad
/// file stops dnslens before anything is attached.
#[derive(Debug, PartialEq)]
pub struct Detect {
    pub config: Config,
    /// From --baseline; `None` without one, or when learning into a file not made yet.
    pub baseline: Option<Baseline>,
    /// Where a learned baseline is saved.
    pub baseline_path: Option<PathBuf>,
    pub learn: Learn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learn {
    Off,
    /// `trace --learn DURATION`: then the baseline is saved and judged against.
    For(Duration),
    /// `detect --learn`: the whole input, saved at its end.
    Throughout,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Whois {
    pub pid: u32,
    pub kubernetes: Kubernetes,
}

/// Where pod names come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kubernetes {
    /// Ask the API server (not with `--no-kubernetes`).
    pub enabled: bool,
    /// `--node-name` or `NODE_NAME`; the hostname stands in when the cluster needs one.
    pub node_name: Option<String>,
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, PartialEq)]
pub struct Settings {
    pub probe: ProbeConfig,
    pub filter: Filter,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Pairing timeout: queries without a response after it are reported unanswered.
    pub timeout: Duration,
    pub output: Output,
    /// `--dnstap`: also each message as dnstap.
    pub dnstap: Option<DnstapOutput>,
    /// `trace --pcapng`: every message also as a packet, beside the output.
    pub pcapng: Option<PcapngOutput>,
    pub kubernetes: Kubernetes,
    /// `None` with `--no-detect`, and for `count`.
    pub detect: Option<Detect>,
    /// `-v`: every stage's counters at the end, not one line.
    pub verbose: bool,
}

/// What the environment says about colour.
#[derive(Clone, Copy, Debug, Default)]
pub struct Terminal {
    pub stdout_is_tty: bool,
    /// NO_COLOR is set to a non-empty value.
    pub no_color: bool,
}

impl Action {
    pub fn from_cli(cli: Cli, terminal: Terminal) -> anyhow::Result<Action> {
        match &cli.command {
            Command::Whois(args) => Ok(Action::Whois(Whois {
                pid: args.pid,
                kubernetes: kubernetes(&args.kubernetes),
            })),
            Command::Trace(_) | Command::Count(_) | Command::Top(_) => {
                Settings::from_cli(cli, terminal).map(|s| Action::Capture(Box::new(s)))
            }
            Command::Agent(args) => agent::settings(args).map(|s| Action::Agent(Box::new(s))),
            Command::Detect(args) => {
                let learn = if args.learn {
                    Learn::Throughout
                } else {
                    Learn::Off
                };
                Ok(Action::Replay(Box::new(Replay {
                    input: args.input.clone(),
                    json: args.json,
                    color: color(args.color, terminal) && !args.json,
                    detect: detect(&args.detectors, learn)?,
                })))
            }
        }
    }
}

/// `--rotate-size` and `--rotate-keep` (`flag` is `--rotate`; dnstap's are `--dnstap-rotate`),
/// for a file that `file_given` says was given (`needs` names it in the error).
pub fn rotation(
    flag: &str,
    size: Option<ByteSize>,
    keep: Option<u32>,
    file_given: bool,
    needs: &str,
) -> anyhow::Result<Option<Rotation>> {
    Ok(match (size, keep) {
        (None, None) => None,
        (None, Some(_)) => {
            bail!("{flag}-keep needs {flag}-size: the size at which to rotate")
        }
        (Some(ByteSize(size)), keep) => {
            if size == 0 {
                bail!("{flag}-size 0: give the size a file may reach, e.g. 100MiB");
            }
            if !file_given {
                bail!("{flag}-size rotates a file: give {needs}");
            }
            Some(Rotation {
                size,
                keep: keep.unwrap_or(DEFAULT_ROTATE_KEEP),
            })
        }
    })
}

fn color(when: ColorWhen, terminal: Terminal) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => terminal.stdout_is_tty && !terminal.no_color,
    }
}

/// Reads and checks the detector config and the baseline.
pub fn detect(args: &DetectorArgs, learn: Learn) -> anyhow::Result<Detect> {
    let config = match &args.detect_config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let learning = learn != Learn::Off;
    let baseline = match &args.baseline {
        None if learning => {
            bail!("--learn needs --baseline FILE: the file the learned baseline is saved to")
        }
        None => None,
        Some(path) => match Baseline::load(path) {
            Ok(baseline) => Some(baseline),
            Err(BaselineError::Read { source, .. })
                if learning && source.kind() == std::io::ErrorKind::NotFound =>
            {
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                if dir.is_some_and(|d| !d.is_dir()) {
                    bail!(
                        "--baseline {}: its directory does not exist, so the learned baseline \
                         could not be saved: create it or name another file",
                        path.display()
                    );
                }
                None
            }
            Err(e @ BaselineError::Read { .. }) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "--baseline {0}: learn one first with --learn 10m --baseline {0}",
                    path.display()
                )))
            }
            Err(e) => return Err(e.into()),
        },
    };
    Ok(Detect {
        config,
        baseline,
        baseline_path: args.baseline.clone(),
        learn,
    })
}

impl Settings {
    pub fn from_cli(cli: Cli, terminal: Terminal) -> anyhow::Result<Settings> {
        let verbose = match &cli.command {
            Command::Trace(args) => args.verbose,
            Command::Count(args) => args.verbose,
            _ => false,
        };
        let none = AnswerFilterArgs::default();
        let pcapng = match &cli.command {
            Command::Trace(args) => {
                let given = args.pcapng.is_some();
                let rotation = rotation(
                    "--rotate",
                    args.rotate_size,
                    args.rotate_keep,
                    given,
                    "--pcapng FILE",
                )?;
                args.pcapng
                    .clone()
                    .map(|path| PcapngOutput { path, rotation })
            }
            _ => None,
        };
        let (capture, (filters, answers), timeout, output, kube, detect) = match &cli.command {
            Command::Trace(args) => {
                let output = Output::Trace {
                    json: args.json,
                    color: color(args.color, terminal) && !args.json,
                    max_events: args.count,
                    alerts_only: args.alerts,
                    connects: args.connects,
                    lookups: args.lookups,
                    columns: (!args.columns.is_empty()).then(|| args.columns.clone()),
                };
                let timeout = args.timeout.get();
                let learn = match args.learn {
                    Some(d) => Learn::For(d.get()),
                    None => Learn::Off,
                };
                let detect = match args.no_detect {
                    true if learn != Learn::Off => {
                        bail!("--learn feeds the detectors, which --no-detect turns off")
                    }
                    true => None,
                    false => Some(detect(&args.detectors, learn)?),
                };
                (
                    &args.capture,
                    (&args.filters, &args.answers),
                    timeout,
                    output,
                    &args.kubernetes,
                    detect,
                )
            }
            Command::Count(args) => {
                let by = &args.by;
                if let Some(twice) = by.iter().enumerate().find(|(i, b)| by[..*i].contains(b)) {
                    bail!("--by {} is given twice: give each key once", twice.1.name());
                }
                let at = CountedAt::needed(by, args.answers.any(), args.lookups);
                if let Some(b) = by.iter().find(|b| !b.applies(at)) {
                    let what = match args.lookups {
                        true => {
                            "a query's key, and a lookup may ask several names and types of \
                             several servers, an rcode each (name is the name it asked for)"
                        }
                        false => "a lookup's key: add --lookups to count lookups",
                    };
                    let keys: Vec<&str> = CountBy::VARIANTS
                        .iter()
                        .filter(|k| k.applies(at))
                        .map(|k| k.name())
                        .collect();
                    bail!(
                        "--by {} is {what}; the keys here are: {}",
                        b.name(),
                        keys.join(", ")
                    );
                }
                let output = Output::Count {
                    by: by.clone(),
                    at,
                    interval: args.interval.get(),
                    json: args.json,
                };
                // Unanswered queries are not counted, so the timeout only bounds the pending
                // table.
                let timeout = Duration::from_nanos(dnslens_lens::correlate::DEFAULT_TIMEOUT_NS);
                (
                    &args.capture,
                    (&args.filters, &args.answers),
                    timeout,
                    output,
                    &args.kubernetes,
                    None,
                )
            }
            Command::Top(args) => {
                if !terminal.stdout_is_tty {
                    bail!(
                        "top draws on a terminal and stdout is not one: run it in a \
                         terminal, or use trace or count to write to a pipe or a file"
                    );
                }
                if args.filters.role.is_some() {
                    bail!(
                        "--role: top's rows count the queries clients sent, so a server side \
                         shows nothing; leave it out (trace --role server shows servers)"
                    );
                }
                let output = Output::Top {
                    by: args.by,
                    interval: args.interval.get(),
                };
                let detect = match args.no_detect {
                    true => None,
                    false => Some(detect(&args.detectors, Learn::Off)?),
                };
                (
                    &args.capture,
                    (&args.filters, &none),
                    args.timeout.get(),
                    output,
                    &args.kubernetes,
                    detect,
                )
            }
            Command::Whois(_) | Command::Detect(_) | Command::Agent(_) => {
                bail!("only trace, count and top capture: this command has no capture settings")
            }
        };
        let kubernetes = kubernetes(kube);
        let filter = filter(filters, answers)?;
        if !kubernetes.enabled && filter.needs_pod_metadata() {
            bail!(
                "--namespace, --exclude-namespace and --workload need pod names from the \
                 Kubernetes API, which --no-kubernetes turns off"
            );
        }
        let dnstap = match &cli.command {
            Command::Trace(args) => dnstap(&args.dnstap)?,
            _ => None,
        };
        Ok(Settings {
            probe: probe_config(capture)?,
            filter,
            duration: capture.duration.map(units::Duration::get),
            timeout,
            output,
            dnstap,
            pcapng,
            kubernetes,
            detect,
            verbose,
        })
    }
}

/// `--dnstap` and its rotation (of a `file:` only).
pub fn dnstap(args: &DnstapArgs) -> anyhow::Result<Option<DnstapOutput>> {
    let rotation = rotation(
        "--dnstap-rotate",
        args.dnstap_rotate_size,
        args.dnstap_rotate_keep,
        matches!(args.dnstap, Some(DnstapAddress::File(_))),
        "--dnstap file:PATH",
    )?;
    Ok(args
        .dnstap
        .clone()
        .map(|address| DnstapOutput { address, rotation }))
}

pub fn kubernetes(args: &KubernetesArgs) -> Kubernetes {
    let given = |s: &str| !s.trim().is_empty();
    Kubernetes {
        enabled: !args.no_kubernetes,
        node_name: args
            .node_name
            .as_deref()
            .filter(|n| given(n))
            .map(|n| n.trim().to_string()),
        kubeconfig: args
            .kubeconfig
            .clone()
            .filter(|p| given(&p.to_string_lossy())),
    }
}

pub fn probe_config(capture: &CaptureArgs) -> anyhow::Result<ProbeConfig> {
    let mut config = ProbeConfig::default();
    let mut ports = vec![53];
    for &port in &capture.ports {
        if port == 0 {
            bail!("--port 0 is not a port: give the port DNS is served on, e.g. --port 5353");
        }
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    if ports.len() > MAX_PORTS {
        bail!(
            "{} ports given with 53 included, at most {MAX_PORTS} can be traced",
            ports.len()
        );
    }
    config.ports = ports;
    config.capture = capture.capture.unwrap_or_default();
    if let Some(size) = capture.ring_buffer_size {
        config.ring_buffer_bytes = size.0;
    }
    Ok(config)
}

fn filter(args: &FilterArgs, answers: &AnswerFilterArgs) -> anyhow::Result<Filter> {
    let in_containers = [
        ("--namespace", args.namespace.is_empty()),
        ("--pod", args.pod.is_empty()),
        ("--container", args.container.is_empty()),
        ("--workload", args.workload.is_empty()),
    ];
    if let Some((flag, _)) = in_containers.iter().find(|(_, empty)| args.host && !empty) {
        bail!(
            "--host keeps only processes outside containers and {flag} selects processes in \
             them: give one or the other"
        );
    }
    let globs = |values: &[String]| -> anyhow::Result<Vec<Glob>> {
        values
            .iter()
            .map(|v| match v.trim() {
                "" => bail!("an empty name is not a filter: give a name, or a glob such as web-*"),
                v => Ok(Glob::new(v)),
            })
            .collect()
    };
    // The table's TIMEOUT, as a user would filter for it.
    let (timeouts, rcodes): (Vec<String>, Vec<String>) = answers
        .rcode
        .iter()
        .cloned()
        .partition(|r| r.trim().eq_ignore_ascii_case(TIMEOUT));
    let timeout = !timeouts.is_empty();
    Ok(Filter {
        pids: args.pid.clone(),
        uids: args.uid.clone(),
        comms: args.comm.iter().map(|c| Glob::new(c)).collect(),
        names: args.name.iter().map(|c| Glob::new(c)).collect(),
        domains: parse_each("--domain", &args.domain)?,
        exclude_domains: parse_each("--exclude-domain", &args.exclude_domain)?,
        qtypes: parse_each("--qtype", &args.qtype)?,
        rcodes: parse_each("--rcode", &rcodes)?,
        unanswered: answers.unanswered || timeout,
        roles: match args.role {
            Some(RoleArg::Client) => vec![Role::Client],
            Some(RoleArg::Server) => vec![Role::Server],
            None => Vec::new(),
        },
        min_latency_us: answers
            .min_latency
            .map(|d| u64::try_from(d.get().as_micros()).unwrap_or(u64::MAX)),
        namespaces: globs(&args.namespace).context("--namespace")?,
        exclude_namespaces: globs(&args.exclude_namespace).context("--exclude-namespace")?,
        pods: globs(&args.pod).context("--pod")?,
        containers: parse_each("--container", &args.container)?,
        workloads: parse_each("--workload", &args.workload)?,
        host: match (args.host, args.no_host) {
            (true, _) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
        },
    })
}

/// Parses every value of `flag`, space around each ignored; an error names the flag and the
/// value as given.
fn parse_each<T>(flag: &str, values: &[String]) -> anyhow::Result<Vec<T>>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    values
        .iter()
        .map(|v| v.trim().parse().with_context(|| format!("{flag} {v:?}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Grouping;
    use clap::Parser;
    use dnslens_wire::{Rcode, RecordType};

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from(std::iter::once("dnslens").chain(args.iter().copied()))?;
        Settings::from_cli(cli, Terminal::default())
    }

    fn error(args: &[&str]) -> String {
        format!("{:#}", settings(args).unwrap_err())
    }

    #[test]
    fn trace_settings() {
        let s = settings(&[
            "trace",
            "--json",
            "--port",
            "5353",
            "--port",
            "53",
            "--duration",
            "10s",
            "--count",
            "3",
            "--timeout",
            "2s",
            "--ring-buffer-size",
            "8MiB",
            "--qtype",
            "A,aaaa",
            "--rcode",
            "NXDOMAIN",
            "--domain",
            "example.com",
            "--comm",
            "dig",
            "--pid",
            "1,2",
        ])
        .unwrap();
        assert_eq!(s.probe.ports, vec![53, 5353]);
        assert_eq!(s.probe.ring_buffer_bytes, 8 << 20);
        assert_eq!(s.duration, Some(Duration::from_secs(10)));
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(
            s.output,
            Output::Trace {
                json: true,
                color: false,
                max_events: Some(3),
                alerts_only: false,
                connects: false,
                lookups: false,
                columns: None,
            }
        );
        assert_eq!(s.filter.qtypes, vec![RecordType::A, RecordType::AAAA]);
        assert_eq!(s.filter.rcodes, vec![Rcode::NXDOMAIN]);
        assert_eq!(s.filter.pids, vec![1, 2]);
        assert_eq!(s.filter.comms, vec![Glob::new("dig")]);

        let defaults = settings(&["trace"]).unwrap();
        assert_eq!(defaults.probe, ProbeConfig::default());
        assert_eq!(defaults.timeout, Duration::from_secs(5));
        assert!(defaults.filter.is_empty());
    }

    #[test]
    fn colour_follows_the_terminal_unless_told() {
        let cli = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("dnslens").chain(args.iter().copied())).unwrap()
        };
        let color = |args: &[&str], tty: bool, no_color: bool| {
            let terminal = Terminal {
                stdout_is_tty: tty,
                no_color,
            };
            match Settings::from_cli(cli(args), terminal).unwrap().output {
                Output::Trace { color, .. } => color,
                Output::Count { .. } | Output::Top { .. } | Output::Agent(_) => unreachable!(),
            }
        };
        assert!(color(&["trace"], true, false));
        assert!(!color(&["trace"], false, false));
        assert!(!color(&["trace"], true, true));
        assert!(color(&["trace", "--color", "always"], false, false));
        assert!(!color(&["trace", "--color", "never"], true, false));
        assert!(!color(&["trace", "--json"], true, false));
    }

    #[test]
    fn count_settings() {
        let s = settings(&["count", "--by", "cgroup", "--interval", "500ms", "--json"]).unwrap();
        assert_eq!(
            s.output,
            Output::Count {
                by: vec![CountBy::Cgroup],
                at: CountedAt::Query,
                interval: Duration::from_millis(500),
                json: true
            }
        );
        let d = settings(&["count"]).unwrap();
        assert_eq!(
            d.output,
            Output::Count {
                by: vec![CountBy::Process],
                at: CountedAt::Query,
                interval: Duration::from_secs(1),
                json: false
            }
        );
    }

    /// Issue 16 item 4: `count --lookups` counts lookups, by the keys that apply to them; a
    /// query's key is refused with lookups, a lookup's key without, each saying why.
    #[test]
    fn count_lookups_takes_the_keys_of_lookups() {
        let s = settings(&[
            "count",
            "--lookups",
            "--by",
            "workload,name",
            "--by",
            "outcome",
        ]);
        assert_eq!(
            s.unwrap().output,
            Output::Count {
                by: vec![CountBy::Workload, CountBy::Name, CountBy::Outcome],
                at: CountedAt::Lookup,
                interval: Duration::from_secs(1),
                json: false
            }
        );
        let s = settings(&[
            "count",
            "--lookups",
            "--rcode",
            "NXDOMAIN",
            "--by",
            "source",
        ]);
        assert!(matches!(
            s.unwrap().output,
            Output::Count {
                at: CountedAt::Lookup,
                ..
            }
        ));
        for key in ["qtype", "rcode", "server", "qname"] {
            let e = settings(&["count", "--lookups", "--by", key]).unwrap_err();
            let e = format!("{e:#}");
            assert!(
                e.starts_with(&format!("--by {key} is a query's key")),
                "{e}"
            );
            assert!(e.contains("the keys here are: comm, process,"), "{e}");
            assert!(e.contains("name, domain, outcome, source"), "{e}");
        }
        for key in ["name", "outcome", "source"] {
            let e = format!("{:#}", settings(&["count", "--by", key]).unwrap_err());
            assert!(e.contains("add --lookups"), "{e}");
        }
    }

    /// Issue 14: `--by` takes every key, repeated or listed, into a composite key in the order
    /// given; rcode (as a key or `--rcode`) counts queries at their answer.
    #[test]
    fn count_by_several_keys() {
        let by = |args: &[&str]| match settings(args).unwrap().output {
            Output::Count { by, at, .. } => (by, at),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            by(&["count", "--by", "qname", "--by", "rcode"]),
            (vec![CountBy::Qname, CountBy::Rcode], CountedAt::Answer)
        );
        assert_eq!(
            by(&["count", "--by", "pod,domain", "--by", "qtype,server"]),
            (
                vec![
                    CountBy::Pod,
                    CountBy::Domain,
                    CountBy::Qtype,
                    CountBy::Server
                ],
                CountedAt::Query
            )
        );
        assert_eq!(
            by(&["count", "--by", "pid", "--rcode", "NXDOMAIN"]),
            (vec![CountBy::Pid], CountedAt::Answer)
        );
        for answers in [&["--unanswered"][..], &["--min-latency", "100ms"]] {
            let args = [&["count"][..], answers].concat();
            assert_eq!(by(&args).1, CountedAt::Answer, "{answers:?}");
        }
        let s = settings(&["count", "--rcode", "nxdomain,SERVFAIL,timeout"]).unwrap();
        assert_eq!(s.filter.rcodes, vec![Rcode::NXDOMAIN, Rcode::SERVFAIL]);
        assert!(s.filter.unanswered);
        let e = error(&["count", "--by", "pod", "--by", "qname", "--by", "pod"]);
        assert!(e.contains("--by pod is given twice"), "{e}");
    }

    #[test]
    fn top_settings_need_a_terminal() {
        let tty = Terminal {
            stdout_is_tty: true,
            no_color: false,
        };
        let top = |args: &[&str], terminal| {
            let cli = Cli::try_parse_from(["dnslens", "top"].iter().chain(args))?;
            Settings::from_cli(cli, terminal)
        };
        let s = top(&["--by", "process", "--interval", "2s", "--no-detect"], tty).unwrap();
        assert_eq!(
            s.output,
            Output::Top {
                by: Grouping::Process,
                interval: Duration::from_secs(2)
            }
        );
        assert_eq!(s.detect, None);
        let d = top(&[], tty).unwrap();
        assert_eq!(
            d.output,
            Output::Top {
                by: Grouping::Pod,
                interval: Duration::from_secs(1)
            }
        );
        assert!(d.detect.is_some(), "detectors run unless --no-detect");
        let piped = format!("{:#}", top(&[], Terminal::default()).unwrap_err());
        assert!(piped.contains("stdout is not one"), "{piped}");
        let role = format!("{:#}", top(&["--role", "server"], tty).unwrap_err());
        assert!(
            role.contains("top's rows count the queries clients sent"),
            "{role}"
        );
        // Issue 14: top's rows start from queries, so it has no filter on what came back to
        // list and refuse; trace and count list them and take them.
        for flag in ["--rcode=NXDOMAIN", "--unanswered", "--min-latency=1s"] {
            let e = top(&[flag], tty).unwrap_err().to_string();
            let name = flag.split('=').next().unwrap();
            assert!(e.contains(&format!("unexpected argument '{name}'")), "{e}");
        }
        let mut cli = <Cli as clap::CommandFactory>::command();
        for (command, listed) in [("top", false), ("trace", true), ("count", true)] {
            let help = cli.find_subcommand_mut(command).unwrap().render_help();
            assert_eq!(help.to_string().contains("--rcode"), listed, "{command}");
        }
    }

    #[test]
    fn kubernetes_filters_and_flags() {
        let s = settings(&[
            "trace",
            "--namespace",
            "shop,kube-*",
            "--exclude-namespace",
            "kube-system",
            "--pod",
            "web-*",
            "--container",
            "app,0123abcd",
            "--workload",
            "deploy/web",
            "--no-host",
            "--node-name",
            "node-1",
            "--kubeconfig",
            "/etc/kube.conf",
        ])
        .unwrap();
        let f = &s.filter;
        assert_eq!(f.namespaces, vec![Glob::new("shop"), Glob::new("kube-*")]);
        assert_eq!(f.exclude_namespaces, vec![Glob::new("kube-system")]);
        assert_eq!(f.pods, vec![Glob::new("web-*")]);
        assert_eq!(f.containers.len(), 2);
        assert_eq!(f.workloads, vec!["deploy/web".parse().unwrap()]);
        assert_eq!(f.host, Some(false));
        assert_eq!(
            s.kubernetes,
            Kubernetes {
                enabled: true,
                node_name: Some("node-1".to_string()),
                kubeconfig: Some("/etc/kube.conf".into()),
            }
        );
        assert_eq!(
            settings(&["trace", "--host"]).unwrap().filter.host,
            Some(true)
        );
        let off = settings(&["count", "--no-kubernetes", "--by", "pod", "--pod", "6f1a*"]);
        let off = off.unwrap();
        assert!(!off.kubernetes.enabled);
        assert!(matches!(off.output, Output::Count { by, .. } if by == [CountBy::Pod]));
        for (by, want) in [
            ("namespace", CountBy::Namespace),
            ("workload", CountBy::Workload),
            ("container", CountBy::Container),
        ] {
            let s = settings(&["count", "--by", by]).unwrap();
            assert!(matches!(s.output, Output::Count { by, .. } if by == [want]));
        }
    }

    #[test]
    fn whois_takes_a_pid_and_the_cluster_flags() {
        let cli = Cli::try_parse_from(["dnslens", "whois", "4242", "--node-name", "n1"]).unwrap();
        match Action::from_cli(cli, Terminal::default()).unwrap() {
            Action::Whois(w) => {
                assert_eq!(w.pid, 4242);
                assert_eq!(w.kubernetes.node_name.as_deref(), Some("n1"));
                assert!(w.kubernetes.enabled);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["dnslens", "whois", "me"]).is_err());
    }

    /// A file in a fresh temporary directory, removed with it.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: Option<&str>) -> TempFile {
            let dir = std::env::temp_dir()
                .join(format!("dnslens-settings-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name);
            if let Some(text) = text {
                std::fs::write(&path, text).unwrap();
            }
            TempFile(path)
        }

        fn arg(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }

    #[test]
    fn detectors_are_on_unless_turned_off() {
        let d = settings(&["trace"]).unwrap().detect.unwrap();
        assert_eq!(d.config, Config::default());
        assert_eq!((d.baseline, d.learn), (None, Learn::Off));
        assert!(settings(&["trace", "--no-detect"])
            .unwrap()
            .detect
            .is_none());
        assert!(settings(&["count"]).unwrap().detect.is_none());
        let s = settings(&["trace", "--alerts", "--json", "--connects"]).unwrap();
        assert!(matches!(
            s.output,
            Output::Trace {
                alerts_only: true,
                connects: true,
                columns: None,
                ..
            }
        ));
        let s = settings(&["trace", "--json", "--lookups"]).unwrap();
        assert!(matches!(s.output, Output::Trace { lookups: true, .. }));
        assert!(settings(&["trace", "--lookups", "--alerts"]).is_err());
    }

    #[test]
    fn detector_config_and_baseline_are_read_before_anything_runs() {
        let config = TempFile::new("detect.toml", Some("[new_domain_connect]\nwarmup_s = 0\n"));
        let s = settings(&["trace", "--detect-config", config.arg()]).unwrap();
        assert_eq!(s.detect.unwrap().config.new_domain_connect.warmup_s, 0);

        let bad = TempFile::new("bad.toml", Some("\n[tunneling]\nwindw_s = 3\n"));
        let e = error(&["trace", "--detect-config", bad.arg()]);
        assert!(
            e.contains(&format!("{}:3:1", bad.arg())) && e.contains("windw_s"),
            "{e}"
        );

        let baseline = TempFile::new("baseline.json", None);
        let e = error(&["trace", "--baseline", baseline.arg()]);
        assert!(e.contains("learn one first with --learn 10m"), "{e}");
        let s = settings(&["trace", "--learn", "10m", "--baseline", baseline.arg()]).unwrap();
        let d = s.detect.unwrap();
        assert_eq!(d.learn, Learn::For(Duration::from_secs(600)));
        assert_eq!(
            (d.baseline, d.baseline_path),
            (None, Some(baseline.0.clone()))
        );
        std::fs::write(
            &baseline.0,
            r#"{"version":1,"cluster_domain":"cluster.local","workloads":{}}"#,
        )
        .unwrap();
        let d = settings(&["trace", "--baseline", baseline.arg()])
            .unwrap()
            .detect;
        assert_eq!(d.unwrap().baseline, Some(Baseline::new("cluster.local")));

        let e = error(&["trace", "--learn", "10m"]);
        assert!(e.contains("--learn needs --baseline"), "{e}");
        let nowhere = format!(
            "{}/no/such/dir/b.json",
            baseline.0.parent().unwrap().display()
        );
        let e = error(&["trace", "--learn", "1m", "--baseline", &nowhere]);
        assert!(e.contains("directory does not exist"), "{e}");
        let e = error(&["trace", "--learn", "1m", "--no-detect"]);
        assert!(e.contains("--no-detect turns off"), "{e}");
        assert!(error(&["trace", "--learn", "0s"]).contains("longer than zero"));
        assert!(error(&["trace", "--alerts", "--no-detect"]).contains("--no-detect"));
        assert!(error(&["trace", "--connects"]).contains("--json"));
    }

    #[test]
    fn detect_replays_a_file() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(std::iter::once("dnslens").chain(args.iter().copied()))
                .unwrap();
            Action::from_cli(cli, Terminal::default())
        };
        match parse(&["detect", "--input", "t.jsonl", "--json"]).unwrap() {
            Action::Replay(r) => {
                assert_eq!(r.input, PathBuf::from("t.jsonl"));
                assert!(r.json && !r.color);
                assert_eq!(r.detect.learn, Learn::Off);
            }
            other => panic!("{other:?}"),
        }
        let e = format!(
            "{:#}",
            parse(&["detect", "--input", "-", "--learn"]).unwrap_err()
        );
        assert!(e.contains("--learn needs --baseline"), "{e}");
        assert!(
            Cli::try_parse_from(["dnslens", "detect"]).is_err(),
            "--input is required"
        );
    }

    #[test]
    fn clear_errors() {
        let e = error(&["trace", "--qtype", "AAA"]);
        assert!(e.contains("--qtype \"AAA\"") && e.contains("TYPEN"), "{e}");
        let s = settings(&["trace", "--qtype", "65280,A", "--rcode", "timeout,NXDOMAIN"]).unwrap();
        assert_eq!(s.filter.qtypes, vec![RecordType(65280), RecordType::A]);
        assert_eq!(s.filter.rcodes, vec![Rcode::NXDOMAIN]);
        assert!(s.filter.unanswered);
        let s = settings(&["trace", "--role", "server", "--min-latency", "100ms"]).unwrap();
        assert_eq!(s.filter.roles, vec![dnslens_lens::Role::Server]);
        assert_eq!(s.filter.min_latency_us, Some(100_000));
        let e = error(&["trace", "--rcode", "nope"]);
        assert!(e.contains("--rcode \"nope\""), "{e}");
        let e = error(&["trace", "--duration", "10x"]);
        assert!(
            e.contains("--duration \"10x\"") && e.contains("unknown unit"),
            "{e}"
        );
        let e = error(&["trace", "--timeout", "0s"]);
        assert!(e.contains("longer than zero"), "{e}");
        let e = error(&["trace", "--ring-buffer-size", "10MiB"]);
        assert!(e.contains("power of two"), "{e}");
        let e = error(&["trace", "--port", "0"]);
        assert!(
            e.contains("'0' for '--port <PORT>'") && e.contains("1..=65535"),
            "{e}"
        );
        let e = error(&["trace", "--count", "0"]);
        assert!(e.contains("'0' for '--count <N>'"), "{e}");
        let e = error(&["trace", "--domain", "["]);
        assert!(e.contains("no [...] classes"), "{e}");
        let many: Vec<String> = (1..=8).map(|p| format!("--port={}", 1000 + p)).collect();
        let mut args = vec!["trace"];
        args.extend(many.iter().map(String::as_str));
        assert!(error(&args).contains("at most 8"));
        let e = error(&["trace", "--domain", ""]);
        assert!(e.contains("empty domain"), "{e}");
        let e = error(&["count", "--by", "host"]);
        assert!(e.contains("host"), "{e}");
        let e = error(&["trace", "--host", "--pod", "web"]);
        assert!(
            e.contains("--host keeps only") && e.contains("--pod"),
            "{e}"
        );
        let e = error(&["trace", "--host", "--no-host"]);
        assert!(e.contains("--no-host"), "{e}");
        let e = error(&[
            "trace",
            "--no-kubernetes",
            "--exclude-namespace",
            "kube-system",
        ]);
        assert!(e.contains("--no-kubernetes turns off"), "{e}");
        let e = error(&["trace", "--workload", "a/b/c"]);
        assert!(
            e.contains("--workload \"a/b/c\"") && e.contains("deployment/web"),
            "{e}"
        );
        let e = error(&["trace", "--namespace", " "]);
        assert!(e.contains("--namespace") && e.contains("empty name"), "{e}");
        let e = error(&["trace", "--container", ""]);
        assert!(e.contains("--container"), "{e}");
    }
}
