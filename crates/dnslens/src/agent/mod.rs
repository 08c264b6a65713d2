//! `dnslens agent`: the long-running node agent. Its settings come from flags over a config file
//! ([`config`]); it serves metrics and health on HTTP ([`crate::http`]) and writes events and
//! alerts as JSON lines to stdout or a size-rotated file ([`rotate`]), a sample of the ordinary
//! events if asked. Capture, enrichment and detectors are the run loop `trace` uses
//! ([`crate::run::capture`]), with [`AgentSink`] as its sink.

pub mod config;
pub mod rotate;

use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::ValueEnum;
use dnslens_detect::Alert;
use dnslens_lens::filter::Filter;
use dnslens_lens::DnsEvent;
use dnslens_probe::CaptureMode;
use toml::Spanned;

use crate::flags::AgentArgs;
use crate::http::{Health, Server};
use crate::metrics::{Limits, MetricsSink};
use crate::settings::{self, Learn, Output, Settings};
use crate::sink::{JsonSink, OutputStats, Sink, Status};
use config::Loaded;
use rotate::{LogFile, Rotation};

pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9253";
/// Rotated files kept when `--rotate-size` is given without `--rotate-keep`.
const DEFAULT_ROTATE_KEEP: u32 = 5;

/// Where and how the agent writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentOutput {
    pub metrics_address: SocketAddr,
    /// `None`: stdout.
    pub path: Option<PathBuf>,
    pub rotation: Option<Rotation>,
    pub sample: Sampler,
}

impl AgentOutput {
    /// What the output is called in errors.
    fn name(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "stdout".to_string(),
        }
    }
}

/// Keeps a fraction of the ordinary events. The choice is a hash of the socket, the message id
/// and the name, so a query, its response and its unanswered report share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampler {
    /// Events whose hash is below this are kept; `None` keeps all.
    below: Option<u64>,
}

impl Sampler {
    pub fn new(fraction: f64) -> Sampler {
        Sampler {
            below: (fraction < 1.0).then(|| (fraction.max(0.0) * u64::MAX as f64) as u64),
        }
    }

    pub fn keeps(&self, e: &DnsEvent) -> bool {
        let Some(below) = self.below else {
            return true;
        };
        // SipHash with fixed keys: the same choice for the same exchange throughout the run.
        let mut h = std::hash::DefaultHasher::new();
        e.who.socket.hash(&mut h);
        e.id.hash(&mut h);
        for b in e.qname.bytes() {
            // A server may answer in another case than asked (0x20 randomisation).
            b.to_ascii_lowercase().hash(&mut h);
        }
        h.finish() < below
    }
}

/// The agent's settings: flags over the config file, over the defaults. A value from the file
/// that is refused is named by file, line and key.
pub fn settings(args: &AgentArgs) -> anyhow::Result<Settings> {
    let mut args = args.clone();
    if let Some(path) = &args.config {
        let loaded = Loaded::read(path)?;
        fill(&mut args, &loaded)?;
    }
    let metrics_address = args
        .metrics_address
        .as_deref()
        .unwrap_or(DEFAULT_METRICS_ADDRESS);
    let metrics_address: SocketAddr = metrics_address.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "--metrics-address {metrics_address:?} is not an address and port: write it like \
             127.0.0.1:9253, or 0.0.0.0:9253 for every address"
        )
    })?;
    let path = args.output.filter(|p| p.as_os_str() != "-");
    let rotation = match (&args.rotate_size, args.rotate_keep) {
        (None, None) => None,
        (None, Some(_)) => bail!("--rotate-keep needs --rotate-size: the size at which to rotate"),
        (Some(size), keep) => {
            let size =
                settings::parse_size(size).with_context(|| format!("--rotate-size {size:?}"))?;
            if size == 0 {
                bail!("--rotate-size 0: give the size a file may reach, e.g. 100MiB");
            }
            if path.is_none() {
                bail!("--rotate-size rotates a file: give --output PATH (stdout is not rotated)");
            }
            Some(Rotation {
                size,
                keep: keep.unwrap_or(DEFAULT_ROTATE_KEEP),
            })
        }
    };
    let sample = args.sample.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample) {
        bail!("--sample {sample}: give the fraction of events to write, from 0 to 1, e.g. 0.1");
    }
    let timeout =
        settings::positive_duration("--timeout", args.timeout.as_deref().unwrap_or("5s"))?;
    let detect = match args.no_detect {
        true => None,
        false => Some(settings::detect(&args.detectors, Learn::Off)?),
    };
    Ok(Settings {
        probe: settings::probe_config(&args.capture)?,
        filter: Filter::default(),
        duration: args
            .capture
            .duration
            .as_deref()
            .map(|d| settings::positive_duration("--duration", d))
            .transpose()?,
        timeout,
        output: Output::Agent(AgentOutput {
            metrics_address,
            path,
            rotation,
            sample: Sampler::new(sample),
        }),
        kubernetes: settings::kubernetes(&args.kubernetes),
        detect,
    })
}

/// Takes each setting not given as a flag from the file, checking the ones the flags' checks
/// would name by flag.
fn fill(args: &mut AgentArgs, f: &Loaded) -> anyhow::Result<()> {
    let file = &f.file;
    let text = |v: &Option<Spanned<String>>| v.as_ref().map(|v| v.get_ref().clone());
    let path = |v: &Option<Spanned<PathBuf>>| v.as_ref().map(|v| f.resolve(v.get_ref()));
    let flag = |v: &Option<Spanned<bool>>| v.as_ref().is_some_and(|v| *v.get_ref());
    // A value taken from the file is checked here, where its line is known.
    let checked = |key: &str, v: &Spanned<String>, check: &dyn Fn(&str) -> anyhow::Result<()>| {
        check(v.get_ref())
            .with_context(|| format!("{} = {:?}", f.origin(key, v.span()), v.get_ref()))
    };

    if args.metrics_address.is_none() {
        if let Some(v) = &file.metrics_address {
            checked("metrics_address", v, &|a| {
                a.trim().parse::<SocketAddr>().map(drop).map_err(|_| {
                    anyhow::anyhow!("not an address and port: write it like \"0.0.0.0:9253\"")
                })
            })?;
        }
        args.metrics_address = text(&file.metrics_address);
    }
    args.output = args.output.take().or_else(|| path(&file.output));
    if args.rotate_size.is_none() {
        if let Some(v) = &file.rotate_size {
            let v = Spanned::new(v.span(), v.get_ref().0.clone());
            checked("rotate_size", &v, &|s| settings::parse_size(s).map(drop))?;
            args.rotate_size = Some(v.into_inner());
        }
    }
    args.rotate_keep = args
        .rotate_keep
        .or(file.rotate_keep.as_ref().map(|v| *v.get_ref()));
    if args.sample.is_none() {
        if let Some(v) = &file.sample {
            let sample = *v.get_ref();
            if !(0.0..=1.0).contains(&sample) {
                bail!(
                    "{} = {sample}: give the fraction of events to write, from 0 to 1",
                    f.origin("sample", v.span())
                );
            }
            args.sample = Some(sample);
        }
    }
    for (key, flag_value, file_value) in [
        ("timeout", &mut args.timeout, &file.timeout),
        ("duration", &mut args.capture.duration, &file.duration),
    ] {
        if flag_value.is_none() {
            if let Some(v) = file_value {
                checked(key, v, &|d| settings::positive_duration(key, d).map(drop))?;
                *flag_value = Some(v.get_ref().clone());
            }
        }
    }
    args.no_detect |= flag(&file.no_detect);
    if args.capture.ports.is_empty() {
        if let Some(v) = &file.port {
            if v.get_ref().contains(&0) {
                bail!(
                    "{} = {:?}: 0 is not a port: give the ports DNS is served on",
                    f.origin("port", v.span()),
                    v.get_ref()
                );
            }
            args.capture.ports = v.get_ref().clone();
        }
    }
    if args.capture.ring_buffer_size.is_none() {
        if let Some(v) = &file.ring_buffer_size {
            let v = Spanned::new(v.span(), v.get_ref().0.clone());
            checked("ring_buffer_size", &v, &|s| {
                settings::parse_ring_size(s).map(drop)
            })?;
            args.capture.ring_buffer_size = Some(v.into_inner());
        }
    }
    if args.capture.capture.is_none() {
        if let Some(v) = &file.capture {
            let mode = CaptureMode::from_str(v.get_ref(), true).map_err(|_| {
                let modes: Vec<String> = CaptureMode::value_variants()
                    .iter()
                    .filter_map(|m| Some(m.to_possible_value()?.get_name().to_string()))
                    .collect();
                anyhow::anyhow!(
                    "{} = {:?}: not a capture mode: one of {}",
                    f.origin("capture", v.span()),
                    v.get_ref(),
                    modes.join(", ")
                )
            })?;
            args.capture.capture = Some(mode);
        }
    }
    let d = &mut args.detectors;
    d.detect_config = d.detect_config.take().or_else(|| path(&file.detect_config));
    d.baseline = d.baseline.take().or_else(|| path(&file.baseline));
    let k = &mut args.kubernetes;
    k.node_name = k.node_name.take().or_else(|| text(&file.node_name));
    k.kubeconfig = k.kubeconfig.take().or_else(|| path(&file.kubeconfig));
    k.no_kubernetes |= flag(&file.no_kubernetes);
    Ok(())
}

/// Runs the agent: the HTTP server first (a taken port stops it before anything is attached),
/// then the shared run loop into an [`AgentSink`], until SIGTERM or SIGINT.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let Output::Agent(out) = settings.output.clone() else {
        unreachable!("agent settings have an agent output")
    };
    let metrics = MetricsSink::new(Limits::default());
    let health = Arc::new(Health::new());
    let server = Server::start(out.metrics_address, metrics.registry(), Arc::clone(&health))?;
    eprintln!(
        "dnslens: agent: metrics on http://{}/metrics, health on /healthz and /readyz",
        server.address()
    );
    let writer: Box<dyn Write + Send> = match &out.path {
        Some(path) => Box::new(LogFile::open(path, out.rotation).with_context(|| {
            format!(
                "--output {}: cannot open it for appending; give a writable file, or - for \
                 stdout",
                path.display()
            )
        })?),
        None => Box::new(io::stdout()),
    };
    let name = out.name();
    let result = crate::run::capture(settings, &name, move |_pods| {
        Box::new(AgentSink {
            metrics,
            json: JsonSink::new(writer, false),
            sample: out.sample,
            health,
        })
    });
    drop(server);
    result
}

/// Every event and alert into the metrics; alerts and the sampled events into the JSON lines.
pub struct AgentSink<W: Write + Send + 'static> {
    metrics: MetricsSink,
    json: JsonSink<W>,
    sample: Sampler,
    health: Arc<Health>,
}

impl<W: Write + Send + 'static> Sink for AgentSink<W> {
    fn event(&mut self, event: &DnsEvent) -> io::Result<bool> {
        self.metrics.event(event)?;
        if self.sample.keeps(event) {
            self.json.event(event)
        } else {
            Ok(false)
        }
    }

    fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        self.metrics.alert(alert)?;
        self.json.alert(alert)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.json.flush()
    }

    fn finish(&mut self, wall_ns: u64) -> io::Result<()> {
        self.json.finish(wall_ns)
    }

    fn output(&self) -> OutputStats {
        self.json.output()
    }

    fn wants_status(&self) -> bool {
        true
    }

    fn status(&mut self, status: &Status) {
        self.metrics.status(status);
        // Without a cluster there is no pod list to wait for.
        let listed = status.cluster.as_ref().is_none_or(|c| c.listed);
        self.health.turned(status.now, listed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{Cli, Command};
    use clap::Parser;
    use dnslens_lens::model::{sample, Kind};
    use std::time::Duration;

    fn args(argv: &[&str]) -> AgentArgs {
        let cli = Cli::try_parse_from(["dnslens", "agent"].iter().chain(argv)).unwrap();
        match cli.command {
            Command::Agent(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn agent(s: &Settings) -> &AgentOutput {
        match &s.output {
            Output::Agent(a) => a,
            other => panic!("{other:?}"),
        }
    }

    /// A config file in a fresh directory, removed with it.
    struct ConfigFile(PathBuf);

    impl ConfigFile {
        fn new(name: &str, text: &str) -> ConfigFile {
            let dir =
                std::env::temp_dir().join(format!("dnslens-agent-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("agent.toml");
            std::fs::write(&path, text).unwrap();
            ConfigFile(path)
        }

        fn arg(&self) -> &str {
            self.0.to_str().unwrap()
        }

        fn dir(&self) -> &std::path::Path {
            self.0.parent().unwrap()
        }
    }

    impl Drop for ConfigFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.dir());
        }
    }

    fn error(argv: &[&str]) -> String {
        format!("{:#}", settings(&args(argv)).unwrap_err())
    }

    #[test]
    fn defaults() {
        let s = settings(&args(&["--no-kubernetes"])).unwrap();
        let a = agent(&s);
        assert_eq!(a.metrics_address, "127.0.0.1:9253".parse().unwrap());
        assert_eq!((a.path.as_ref(), a.rotation), (None, None));
        assert_eq!(a.sample, Sampler::new(1.0));
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.probe, dnslens_probe::ProbeConfig::default());
        assert!(s.detect.is_some() && !s.kubernetes.enabled && s.filter.is_empty());
        assert_eq!(
            settings(&args(&["--output", "-"]))
                .map(|s| agent(&s).path.clone())
                .unwrap(),
            None
        );
    }

    #[test]
    fn the_file_fills_what_flags_leave_out_and_flags_win() {
        let f = ConfigFile::new(
            "merge",
            "metrics_address = \"0.0.0.0:9999\"\noutput = \"events.jsonl\"\nrotate_size = \"1MiB\"\n\
             sample = 0.25\ntimeout = \"2s\"\nport = [5353]\ncapture = \"syscall-exit\"\n\
             ring_buffer_size = \"8MiB\"\nno_kubernetes = true\nno_detect = true\n",
        );
        let s = settings(&args(&["--config", f.arg()])).unwrap();
        let a = agent(&s);
        assert_eq!(a.metrics_address, "0.0.0.0:9999".parse().unwrap());
        assert_eq!(
            a.path.as_deref(),
            Some(f.dir().join("events.jsonl").as_path())
        );
        assert_eq!(
            a.rotation,
            Some(Rotation {
                size: 1 << 20,
                keep: 5
            })
        );
        assert_eq!(a.sample, Sampler::new(0.25));
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.probe.ports, vec![53, 5353]);
        assert_eq!(s.probe.capture, CaptureMode::SyscallExit);
        assert_eq!(s.probe.ring_buffer_bytes, 8 << 20);
        assert!(!s.kubernetes.enabled && s.detect.is_none());

        let s = settings(&args(&[
            "--config",
            f.arg(),
            "--metrics-address",
            "127.0.0.1:1",
            "--output",
            "/tmp/x.jsonl",
            "--rotate-keep",
            "2",
            "--sample",
            "1",
            "--port",
            "5300",
            "--capture",
            "sockets",
        ]))
        .unwrap();
        let a = agent(&s);
        assert_eq!(a.metrics_address, "127.0.0.1:1".parse().unwrap());
        assert_eq!(
            a.path.as_deref(),
            Some(std::path::Path::new("/tmp/x.jsonl"))
        );
        assert_eq!(
            a.rotation,
            Some(Rotation {
                size: 1 << 20,
                keep: 2
            })
        );
        assert_eq!(a.sample, Sampler::new(1.0));
        assert_eq!(s.probe.ports, vec![53, 5300]);
        assert_eq!(s.probe.capture, CaptureMode::Sockets);
    }

    #[test]
    fn bad_values_name_the_flag_or_the_file_line_and_key() {
        let e = error(&["--metrics-address", "localhost"]);
        assert!(
            e.contains("--metrics-address \"localhost\"") && e.contains("127.0.0.1:9253"),
            "{e}"
        );
        let e = error(&["--output", "/tmp/x", "--rotate-size", "10XB"]);
        assert!(
            e.contains("--rotate-size \"10XB\"") && e.contains("unknown unit"),
            "{e}"
        );
        let e = error(&["--rotate-size", "1MiB"]);
        assert!(e.contains("give --output PATH"), "{e}");
        let e = error(&["--output", "/tmp/x", "--rotate-keep", "3"]);
        assert!(e.contains("--rotate-keep needs --rotate-size"), "{e}");
        let e = error(&["--sample", "1.5"]);
        assert!(
            e.contains("--sample 1.5") && e.contains("from 0 to 1"),
            "{e}"
        );
        let e = error(&["--timeout", "0s"]);
        assert!(e.contains("longer than zero"), "{e}");

        let bad = ConfigFile::new("bad", "output = \"/tmp/x\"\n\nrotate_size = \"10XB\"\n");
        let e = error(&["--config", bad.arg()]);
        assert!(
            e.contains(&format!(
                "agent config {}:3: rotate_size = \"10XB\"",
                bad.arg()
            )) && e.contains("unknown unit"),
            "{e}"
        );
        let unknown = ConfigFile::new("unknown", "# the agent\nsampel = 0.5\n");
        let e = error(&["--config", unknown.arg()]);
        assert!(
            e.contains(&format!(
                "agent config {}:2:1: unknown field `sampel`",
                unknown.arg()
            )),
            "{e}"
        );
        for (name, text, want) in [
            (
                "sample",
                "sample = 2\n",
                ":1: sample = 2: give the fraction",
            ),
            (
                "address",
                "metrics_address = \"9253\"\n",
                ":1: metrics_address = \"9253\"",
            ),
            (
                "mode",
                "capture = \"kprobes\"\n",
                ":1: capture = \"kprobes\": not a capture mode: one of auto, sockets",
            ),
            ("port", "\nport = [0]\n", ":2: port = [0]: 0 is not a port"),
            (
                "ring",
                "ring_buffer_size = 5000\n",
                ":1: ring_buffer_size = \"5000\"",
            ),
            ("timeout", "timeout = \"soon\"\n", ":1: timeout = \"soon\""),
        ] {
            let f = ConfigFile::new(name, text);
            let e = error(&["--config", f.arg()]);
            assert!(
                e.contains(&format!("agent config {}{want}", f.arg())),
                "{name}: {e}"
            );
        }
        let e = error(&["--config", "/nonexistent/agent.toml"]);
        assert!(
            e.contains("agent config /nonexistent/agent.toml") && e.contains("cannot read"),
            "{e}"
        );
        let detect = ConfigFile::new("detect", "detect_config = \"missing.toml\"\n");
        let e = error(&["--config", detect.arg()]);
        assert!(
            e.contains(&detect.dir().join("missing.toml").display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn sampling_keeps_an_exchange_together_and_never_drops_alerts() {
        let half = Sampler::new(0.5);
        let mut kept = 0;
        for i in 0..2_000u16 {
            let mut q = sample::query(i, &format!("host{i}.example"), 1, 0);
            q.who.socket = u64::from(i) * 7;
            let mut r = sample::response(&q, 0, &[], 10);
            r.qname = r.qname.to_ascii_uppercase();
            let mut u = q.clone();
            u.kind = Kind::Unanswered;
            assert_eq!(half.keeps(&q), half.keeps(&r), "{i}");
            assert_eq!(half.keeps(&q), half.keeps(&u), "{i}");
            kept += usize::from(half.keeps(&q));
        }
        assert!((850..1150).contains(&kept), "{kept} of 2000 kept at 0.5");
        let q = sample::query(1, "a.example", 1, 0);
        assert!(Sampler::new(1.0).keeps(&q) && !Sampler::new(0.0).keeps(&q));

        // The sink: metrics see every event, the JSON lines a sample, alerts always.
        let mut sink = AgentSink {
            metrics: MetricsSink::new(Limits::default()),
            json: JsonSink::new(Vec::new(), false),
            sample: Sampler::new(0.0),
            health: Arc::new(Health::new()),
        };
        assert!(!sink.event(&q).unwrap());
        let alert = Alert {
            detector: dnslens_detect::Detector::Dga,
            severity: dnslens_detect::Severity::High,
            summary: "s".to_string(),
            count: 1,
            window_s: 60,
            evidence: Default::default(),
            time_ns: q.time_ns,
            who: q.who.clone(),
        };
        sink.alert(&alert).unwrap();
        let text = crate::metrics::encode(&sink.metrics.registry(), false);
        assert!(
            text.contains("dnslens_queries_total{namespace=\"(unknown)\""),
            "{text}"
        );
        let lines = String::from_utf8(sink.json.into_inner()).unwrap();
        assert_eq!(lines.lines().count(), 1);
        assert!(lines.contains("\"kind\":\"alert\""), "{lines}");
    }
}
