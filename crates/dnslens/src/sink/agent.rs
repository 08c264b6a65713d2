//! The agent's sink: every event, lookup and alert into the Prometheus metrics ([`super::metrics`]),
//! alerts and a sample of the ordinary events into the JSON lines, on stdout or a size-rotated
//! file ([`super::rotate`]); and the run's health, which the HTTP server ([`super::http`])
//! serves with the metrics.

use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use dnslens_detect::Alert;
use dnslens_lens::lookup::Lookup;
use dnslens_lens::DnsEvent;
use prometheus_client::registry::Registry;

use super::http::{AccessFiles, Health};
use super::metrics::{Limits, MetricsSink};
use super::rotate::{LogFile, Rotation};
use super::{JsonSink, OutputStats, Sink, Status};

/// Where and how the agent writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentOutput {
    pub metrics_address: SocketAddr,
    /// TLS and the bearer token of the metrics port.
    pub access: AccessFiles,
    /// `None`: stdout.
    pub path: Option<PathBuf>,
    pub rotation: Option<Rotation>,
    pub sample: Sampler,
}

impl AgentOutput {
    /// What the output is called in errors.
    pub fn name(&self) -> String {
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

    /// Whether any event line is written at all (`--sample 0`: none, metrics only).
    pub fn keeps_any(&self) -> bool {
        self.below != Some(0)
    }

    pub fn keeps(&self, e: &DnsEvent) -> bool {
        let Some(below) = self.below else {
            return true;
        };
        if below == 0 {
            // --sample 0 (metrics only): nothing is kept, and nothing needs hashing.
            return false;
        }
        // Keyed per run: the same choice for the same exchange throughout the run, and no name
        // an attacker can pick to be always left out.
        let mut h = dnslens_lens::hash::keyed_hasher();
        e.who.socket.hash(&mut h);
        e.id.hash(&mut h);
        for b in e.qname.bytes() {
            // A server may answer in another case than asked (0x20 randomisation).
            b.to_ascii_lowercase().hash(&mut h);
        }
        h.finish() < below
    }
}

/// Every event and alert into the metrics; alerts and the sampled events into the JSON lines.
pub struct AgentSink<W: Write + Send + 'static> {
    metrics: MetricsSink,
    json: JsonSink<W>,
    sample: Sampler,
    health: Arc<Health>,
}

impl AgentSink<Box<dyn Write + Send>> {
    /// Opens the output (a file is appended to) and makes the metrics.
    pub fn open(out: &AgentOutput) -> anyhow::Result<Self> {
        let writer: Box<dyn Write + Send> = match &out.path {
            Some(path) => Box::new(LogFile::open(path, out.rotation).with_context(|| {
                format!(
                    "--output {}: cannot open it for appending; give a writable file, or - \
                     for stdout",
                    path.display()
                )
            })?),
            None => Box::new(io::stdout()),
        };
        Ok(AgentSink {
            metrics: MetricsSink::new(Limits::default()),
            json: JsonSink::new(writer, false),
            sample: out.sample,
            health: Arc::new(Health::new()),
        })
    }
}

impl<W: Write + Send + 'static> AgentSink<W> {
    /// The registry the HTTP server encodes: the series this sink counts into.
    pub fn registry(&self) -> Arc<Registry> {
        self.metrics.registry()
    }

    /// What `/healthz` and `/readyz` read.
    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// What the JSON lines' writer cost so far.
    pub fn output(&self) -> OutputStats {
        self.json.output()
    }

    /// The run's own counters, about once a second: into the metrics, and the loop's turn into
    /// the health.
    pub fn status(&mut self, status: &Status) {
        self.metrics.status(status);
        // Without a cluster there is no pod list to wait for.
        let listed = status.cluster.as_ref().is_none_or(|c| c.listed);
        self.health.turned(status.now, listed);
    }
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

    /// Lookups are counted, not written: the JSON lines stay messages.
    fn lookup(&mut self, lookup: &Lookup) -> io::Result<bool> {
        self.metrics.lookup(lookup)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnslens_lens::model::{sample, Kind};

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
        let text = super::super::metrics::encode(&sink.metrics.registry(), false);
        assert!(
            text.contains("dnslens_queries_total{namespace=\"(unknown)\""),
            "{text}"
        );
        let lines = String::from_utf8(sink.json.into_inner()).unwrap();
        assert_eq!(lines.lines().count(), 1);
        assert!(lines.contains("\"kind\":\"alert\""), "{lines}");
    }
}
