//! `dnslens agent`: the long-running node agent. Its settings come from flags over a config file
//! ([`crate::settings::config`]); it serves metrics and health on HTTP or HTTPS
//! ([`crate::sink::http`]) and writes events and alerts as JSON lines to stdout or a
//! size-rotated file, a sample of the ordinary events if asked ([`crate::sink::AgentSink`]).
//! Capture, enrichment and detectors are the run loop `trace` uses ([`crate::run::capture`]),
//! with the agent's sink.

use crate::run;
use crate::settings::Settings;
use crate::sink::http::Bound;
use crate::sink::{self, AnySink, Output};

/// Runs the agent: the port bound and its TLS and token files read first (a taken port or a bad
/// file stops it before anything is attached), then the shared run loop into the agent's sink,
/// until SIGTERM or SIGINT. The sink and the server start their threads once the run has
/// dropped its capabilities, so those threads hold none it gave up.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let Output::Agent(out) = &settings.output else {
        unreachable!("agent settings have an agent output")
    };
    let name = out.name();
    let bound = Bound::new(out.metrics_address, out.access.clone())?;
    let output = settings.output.clone();
    let mut server = None;
    let result = run::capture(settings, &name, |_pods| {
        // The agent's sink shows no pods' columns.
        let sink = sink::build(&output, false)?;
        let AnySink::Agent(agent) = &sink else {
            unreachable!("an agent output builds the agent's sink")
        };
        let scheme = bound.scheme();
        let serving = bound.serve(agent.registry(), agent.health())?;
        say!(
            "dnslens: agent: metrics on {scheme}://{}/metrics, health on /healthz and /readyz",
            serving.address()
        );
        server = Some(serving);
        Ok(sink)
    });
    drop(server);
    result
}
