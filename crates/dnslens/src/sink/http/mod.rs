//! The agent's HTTP endpoints, served by hyper on a thread of its own with a tokio runtime of
//! its own (the capture never waits on a client; a client can stop no other):
//!
//! - `/metrics`: the registry, as OpenMetrics text when the scraper accepts it (Prometheus
//!   does), else the Prometheus text format 0.0.4 (curl, promtool); with a token file, only to
//!   `Authorization: Bearer <token>` ([`access`]);
//! - `/healthz`: 200 while the capture is attached and the poll loop turned in the last
//!   [`STALLED_AFTER`], else 503 saying which;
//! - `/readyz`: 200 once attached and, with a cluster, once the first pod list arrived.
//!
//! The probes stay open with a token: the kubelet's carry none, and they tell nothing but
//! health. With a certificate and key, every endpoint is HTTPS only.
//!
//! The run loop reports through [`Health`]; the server only reads it.

mod access;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_client::registry::Registry;

use super::metrics;
use access::{Access, Token};
pub use access::{AccessFiles, TlsFiles, RELOAD_EVERY};

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

/// Connections served at once; more are closed as they come. Prometheus and the kubelet need a
/// few; a client holding one idle loses it after [`HEADER_TIMEOUT`]. At most [`MAX_HEAD`] bytes
/// are buffered for each: 8 MiB in all.
const MAX_CONNECTIONS: usize = 512;
/// Time a client has to send its request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may take in all, answer included (a client that does not read).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of a request's head; more and the connection is closed.
const MAX_HEAD: usize = 16 << 10;

/// The running server; dropping it stops it.
pub struct Server {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The port bound and the access files read, nothing served yet and no thread started: what
/// can fail is found before the probe is attached, and the serving thread is started after the
/// capabilities are dropped (a thread keeps those it was started with).
pub struct Bound {
    runtime: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    access: Access,
}

impl Bound {
    /// Binds `address` and reads the files of `access`.
    pub fn new(address: SocketAddr, access: AccessFiles) -> anyhow::Result<Bound> {
        let access = Access::load(access)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("starting the HTTP server's runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(address))
            .map_err(|e| {
                anyhow::anyhow!(
                    "--metrics-address {address}: cannot listen there ({e}); another agent or \
                     program may have the port: give another address"
                )
            })?;
        Ok(Bound {
            runtime,
            listener,
            access,
        })
    }

    /// The address bound (the port chosen, when 0 was given).
    pub fn address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound socket has an address")
    }

    /// `https` with a certificate, else `http`.
    pub fn scheme(&self) -> &'static str {
        match self.access.tls() {
            Some(_) => "https",
            None => "http",
        }
    }

    /// Serves from a new thread. Every client is the network's: a TLS handshake and then a
    /// request's head must each come within [`HEADER_TIMEOUT`] and the head within
    /// [`MAX_HEAD`] bytes, a connection ends within [`CONNECTION_TIMEOUT`], at most
    /// [`MAX_CONNECTIONS`] are served at once, and bodies are never read. hyper on a tokio
    /// runtime of this thread's own: one slow client is a parked task, not a blocked server.
    pub fn serve(self, registry: Arc<Registry>, health: Arc<Health>) -> anyhow::Result<Server> {
        let address = self.address();
        let Bound {
            runtime,
            listener,
            access,
        } = self;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("dnslens-http".to_string())
            .spawn(move || runtime.block_on(serve(listener, access, registry, health, stopped)))
            .context("starting the HTTP server's thread")?;
        Ok(Server {
            address,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Server {
    /// The address served.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    mut access: Access,
    registry: Arc<Registry>,
    health: Arc<Health>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of fds, say: wait a little rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // Dropped: closed at once.
        };
        access.refresh(Instant::now());
        let (tls, token) = (access.tls(), access.token());
        let (registry, health) = (Arc::clone(&registry), Arc::clone(&health));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&request, &registry, &health, token.as_deref());
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let served = async {
                let stream: Box<dyn Stream> = match tls {
                    Some(config) => {
                        let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                        // The head's limit: a client that opens TLS and stalls costs this task.
                        match tokio::time::timeout(HEADER_TIMEOUT, handshake).await {
                            Ok(Ok(tls)) => Box::new(tls),
                            _ => return,
                        }
                    }
                    None => Box::new(stream),
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEAD)
                    .keep_alive(false)
                    // Clients that match header names exactly (they were title case) keep working.
                    .title_case_headers(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            };
            // A client that went away or was too slow is its own problem, not the agent's.
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, served).await;
            drop(slot);
        });
    }
}

/// A connection, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for S {}

type Reply = hyper::Response<http_body_util::Full<hyper::body::Bytes>>;

fn respond<B>(
    request: &hyper::Request<B>,
    registry: &Registry,
    health: &Health,
    token: Option<&Token>,
) -> Reply {
    use hyper::Method;
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return text(405, "only GET and HEAD\n".to_string());
    }
    let now = Instant::now();
    match request.uri().path() {
        "/metrics" => {
            let authorization = request.headers().get(hyper::header::AUTHORIZATION);
            if token.is_some_and(|t| !t.allows(authorization.map(|v| v.as_bytes()))) {
                let mut refused = text(
                    401,
                    "/metrics needs the header Authorization: Bearer <token>\n".to_string(),
                );
                refused.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Bearer"),
                );
                return refused;
            }
            let openmetrics = request
                .headers()
                .get_all(hyper::header::ACCEPT)
                .iter()
                .any(|v| {
                    v.to_str()
                        .is_ok_and(|v| v.contains("application/openmetrics-text"))
                });
            let body = metrics::encode(registry, openmetrics);
            let kind = if openmetrics {
                OPENMETRICS
            } else {
                PROMETHEUS_TEXT
            };
            reply(200, kind, body)
        }
        "/healthz" => status(health.live(now)),
        "/readyz" => status(health.ready(now)),
        _ => text(
            404,
            "not found: /metrics, /healthz or /readyz\n".to_string(),
        ),
    }
}

fn status(state: Result<(), String>) -> Reply {
    match state {
        Ok(()) => text(200, "ok\n".to_string()),
        Err(why) => text(503, format!("{why}\n")),
    }
}

fn text(code: u16, body: String) -> Reply {
    reply(code, "text/plain; charset=utf-8", body)
}

fn reply(code: u16, content_type: &str, body: String) -> Reply {
    hyper::Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
        .expect("a valid status and header")
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
        let server = Bound::new("127.0.0.1:0".parse().unwrap(), AccessFiles::default())
            .and_then(|b| b.serve(sink.registry(), Arc::clone(&health)))
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
        assert!(TcpStream::connect(at).is_err(), "stopped on drop");
    }

    /// The port is reachable from the network: no client may stop the endpoints. A
    /// Content-Length near 2^64, 200 clients that never finish their head and a 4 MiB header
    /// line leave /healthz answering within a second.
    #[test]
    fn hostile_clients_cannot_stop_the_endpoints() {
        let health = Arc::new(Health::new());
        health.turned(Instant::now(), true);
        let server = Bound::new("127.0.0.1:0".parse().unwrap(), AccessFiles::default())
            .and_then(|b| b.serve(Arc::new(Registry::default()), Arc::clone(&health)))
            .unwrap();
        let at = server.address();
        let attack = dnslens_testkit::http_attacks::attack(at).unwrap();
        for _ in 0..3 {
            let asked = Instant::now();
            let (code, _, body) = get(at, "/healthz", "*/*");
            assert_eq!((code, body.as_str()), (200, "ok\n"));
            assert!(
                asked.elapsed() < Duration::from_secs(1),
                "{:?}",
                asked.elapsed()
            );
        }
        drop(attack);
        drop(server);
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
        let e = Bound::new(address, AccessFiles::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with(&format!("--metrics-address {address}: cannot listen")),
            "{e}"
        );
    }
}
