//! `dnslens agent`: the long-running node agent. Its settings come from flags over a config file
//! ([`crate::settings::config`]); it serves metrics and health on HTTP ([`crate::sink::http`])
//! and writes events and alerts as JSON lines to stdout or a size-rotated file, a sample of the
//! ordinary events if asked ([`crate::sink::AgentSink`]). Capture, enrichment and detectors are the run loop
//! `trace` uses ([`crate::run::capture`]), with the agent's sink.

use crate::run;
use crate::settings::Settings;
use crate::sink::http::Server;
use crate::sink::{self, AnySink, Output};

/// Runs the agent: its sink and the HTTP server first (an unwritable output or a taken port
/// stops it before anything is attached), then the shared run loop into the agent's sink,
/// until SIGTERM or SIGINT. The metrics' address is announced once the probe is attached: a
/// run without the privileges to load it says why and no more.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let Output::Agent(out) = &settings.output else {
        unreachable!("agent settings have an agent output")
    };
    let (address, name) = (out.metrics_address, out.name());
    // The agent's sink shows no pods' columns: it is built before the cluster is asked.
    let sink = sink::build(&settings.output, false)?;
    let AnySink::Agent(agent) = &sink else {
        unreachable!("an agent output builds the agent's sink")
    };
    let server = Server::start(address, agent.registry(), agent.health())?;
    let served = server.address();
    let result = run::capture(settings, &name, move |_pods| {
        eprintln!(
            "dnslens: agent: metrics on http://{served}/metrics, health on /healthz and /readyz"
        );
        Ok(sink)
    });
    drop(server);
    result
}
