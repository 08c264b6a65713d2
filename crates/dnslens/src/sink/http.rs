//! The agent's HTTP endpoints, served by `tiny_http` on a thread of its own (a blocking server:
//! no async runtime, which only exists with Kubernetes on; four small dependencies):
//!
//! - `/metrics`: the registry, as OpenMetrics text when the scraper accepts it (Prometheus
//!   does), else the Prometheus text format 0.0.4 (curl, promtool);
//! - `/healthz`: 200 while the capture is attached and the poll loop turned in the last
//!   [`STALLED_AFTER`], else 503 saying which;
//! - `/readyz`: 200 once attached and, with a cluster, once the first pod list arrived.
//!
//! The run loop reports through [`Health`]; the server only reads it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tiny_http::{Header, Method, Request, Response};

use super::metrics;

/// How long the poll loop may not turn before `/healthz` fails. It turns at least every 100 ms
/// and reports once a second; the liveness probe allows three failures 10 s apart on top.
pub const STALLED_AFTER: Duration = Duration::from_secs(10);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the run loop says about itself, read by the endpoints.
#[derive(Debug)]
pub struct Health {
    start: Instant,
    /// Milliseconds from `start` to the last turn the loop reported; 0: none yet, not attached.
    last_turn_ms: AtomicU64,
    /// The pods are named (or there is no cluster to name them).
    listed: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        Health {
            start: Instant::now(),
            last_turn_ms: AtomicU64::new(0),
            listed: AtomicBool::new(false),
        }
    }

    /// The attached loop turned at `now`; `listed`: the first pod list arrived, or none is
    /// awaited.
    pub fn turned(&self, now: Instant, listed: bool) {
        let ms = now.saturating_duration_since(self.start).as_millis() as u64;
        self.last_turn_ms.store(ms.max(1), Ordering::Release);
        self.listed.store(listed, Ordering::Release);
    }

    /// `Err` says why the agent is not alive.
    pub fn live(&self, now: Instant) -> Result<(), String> {
        let last = self.last_turn_ms.load(Ordering::Acquire);
        if last == 0 {
            return Err("the capture is not attached yet".to_string());
        }
        let since = now
            .saturating_duration_since(self.start)
            .saturating_sub(Duration::from_millis(last));
        if since > STALLED_AFTER {
            return Err(format!(
                "the poll loop has not turned for {}s",
                since.as_secs()
            ));
        }
        Ok(())
    }

    /// `Err` says why the agent is not ready.
    pub fn ready(&self, now: Instant) -> Result<(), String> {
        self.live(now)?;
        if !self.listed.load(Ordering::Acquire) {
            return Err("waiting for the first pod list from the API server".to_string());
        }
        Ok(())
    }
}

/// The running server; dropping it stops it.
pub struct Server {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `address` and serves from a new thread.
    pub fn start(
        address: SocketAddr,
        registry: Arc<Registry>,
        health: Arc<Health>,
    ) -> anyhow::Result<Server> {
        let server = tiny_http::Server::http(address).map_err(|e| {
            anyhow::anyhow!(
                "--metrics-address {address}: cannot listen there ({e}); another agent or \
                 program may have the port: give another address"
            )
        })?;
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("dnslens-http".to_string())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    // A client that went away is its own problem, not the agent's.
                    let _ = respond(request, &registry, &health);
                }
            })
            .context("starting the HTTP server's thread")?;
        Ok(Server {
            server,
            thread: Some(thread),
        })
    }

    /// The address bound (the port chosen, when 0 was given).
    pub fn address(&self) -> SocketAddr {
        self.server
            .server_addr()
            .to_ip()
            .expect("an IP listener has an IP address")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn respond(request: Request, registry: &Registry, health: &Health) -> std::io::Result<()> {
    if !matches!(request.method(), Method::Get | Method::Head) {
        return request.respond(text(405, "only GET and HEAD\n".to_string()));
    }
    let path = request.url().split('?').next().unwrap_or("");
    let now = Instant::now();
    let response = match path {
        "/metrics" => {
            let openmetrics = request.headers().iter().any(|h| {
                h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text")
            });
            let body = metrics::encode(registry, openmetrics);
            let kind = if openmetrics {
                OPENMETRICS
            } else {
                PROMETHEUS_TEXT
            };
            Response::from_string(body).with_header(header(kind))
        }
        "/healthz" => status(health.live(now)),
        "/readyz" => status(health.ready(now)),
        _ => text(
            404,
            "not found: /metrics, /healthz or /readyz\n".to_string(),
        ),
    };
    request.respond(response)
}

fn status(state: Result<(), String>) -> Response<std::io::Cursor<Vec<u8>>> {
    match state {
        Ok(()) => text(200, "ok\n".to_string()),
        Err(why) => text(503, format!("{why}\n")),
    }
}

fn text(code: u16, body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(code)
        .with_header(header("text/plain; charset=utf-8"))
}

fn header(content_type: &str) -> Header {
    Header::from_bytes("Content-Type", content_type).expect("a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn get(address: SocketAddr, path: &str, accept: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        let kind = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .unwrap_or("")
            .to_string();
        (code, kind, body.to_string())
    }

    #[test]
    fn endpoints_say_what_is_missing_then_ok() {
        let sink = metrics::MetricsSink::new(metrics::Limits::default());
        let health = Arc::new(Health::new());
        let server = Server::start(
            "127.0.0.1:0".parse().unwrap(),
            sink.registry(),
            Arc::clone(&health),
        )
        .unwrap();
        let at = server.address();
        let (code, _, body) = get(at, "/healthz", "*/*");
        assert_eq!(
            (code, body.as_str()),
            (503, "the capture is not attached yet\n")
        );
        health.turned(Instant::now(), false);
        assert_eq!(get(at, "/healthz", "*/*").0, 200);
        let (code, _, body) = get(at, "/readyz", "*/*");
        assert_eq!(code, 503);
        assert!(body.contains("first pod list"), "{body}");
        health.turned(Instant::now(), true);
        assert_eq!(get(at, "/readyz", "*/*").0, 200);

        let (code, kind, body) = get(at, "/metrics", "*/*");
        assert_eq!((code, kind.as_str()), (200, PROMETHEUS_TEXT));
        assert!(
            body.contains("# TYPE dnslens_events_lost_total counter"),
            "{body}"
        );
        let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        let (code, kind, body) = get(at, "/metrics", accept);
        assert_eq!((code, kind.as_str()), (200, OPENMETRICS));
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(get(at, "/nope", "*/*").0, 404);
        drop(server);
        // tiny_http closes its listener from its accept thread, just after.
        let closed = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            TcpStream::connect(at).is_err()
        });
        assert!(closed, "stopped on drop");
    }

    #[test]
    fn a_loop_that_stopped_turning_is_not_alive() {
        let health = Health::new();
        let start = health.start;
        health.turned(start + Duration::from_secs(1), true);
        assert!(health.ready(start + Duration::from_secs(5)).is_ok());
        let e = health.live(start + Duration::from_secs(30)).unwrap_err();
        assert_eq!(e, "the poll loop has not turned for 29s");
        assert!(health.ready(start + Duration::from_secs(30)).is_err());
    }

    #[test]
    fn a_taken_port_is_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let e = Server::start(
            address,
            Arc::new(Registry::default()),
            Arc::new(Health::new()),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.starts_with(&format!("--metrics-address {address}: cannot listen")),
            "{e}"
        );
    }
}
