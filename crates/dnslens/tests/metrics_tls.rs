//! The agent's metrics port with TLS and a bearer token (issue 13), served on loopback with a
//! certificate made by the test: a rustls client, curl and promtool read it; a wrong or missing
//! token gets 401 and the probes need none; plain HTTP to the TLS port and clients that stall in
//! the handshake stop nothing; changed files are read again. No root needed.

mod node;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dnslens::sink::http::{AccessFiles, Bound, Health, Server, TlsFiles, RELOAD_EVERY};
use dnslens::sink::metrics::{Limits, MetricsSink};
use node::agent::promtool_check;
use node::{have_tool, unique_tag, TempDir};
use rustls::pki_types::{CertificateDer, ServerName};

const TOKEN: &str = "tok-3n.Q~9+/=";

/// A server with TLS and a token, its files in a directory of the test's own.
struct Served {
    server: Server,
    dir: TempDir,
    /// The self-signed certificate, the client's only root.
    cert: CertificateDer<'static>,
}

impl Served {
    fn start() -> Served {
        let (tag, _) = unique_tag();
        let dir = TempDir::new(&format!("{tag}-tls"));
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        std::fs::write(dir.path().join("tls.crt"), made.cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), made.key_pair.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        let health = Arc::new(Health::new());
        health.turned(Instant::now(), true);
        let server = Bound::new("127.0.0.1:0".parse().unwrap(), files(dir.path()))
            .and_then(|b| {
                assert_eq!(b.scheme(), "https");
                b.serve(MetricsSink::new(Limits::default()).registry(), health)
            })
            .unwrap();
        Served {
            server,
            dir,
            cert: made.cert.der().clone(),
        }
    }

    fn at(&self) -> SocketAddr {
        self.server.address()
    }

    /// `GET path` over HTTPS, with `Authorization` if given: status, head and body.
    fn get(&self, path: &str, authorization: Option<&str>) -> (u16, String, String) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::IpAddress(self.at().ip().into());
        let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(self.at()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = Vec::new();
        // The server may close without close_notify after the body: what came is the reply.
        let _ = tls.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (code, head.to_string(), body.to_string())
    }
}

fn files(dir: &Path) -> AccessFiles {
    AccessFiles {
        tls: Some(TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }),
        token: Some(dir.join("token")),
    }
}

/// /metrics over HTTPS with the token; 401 and `WWW-Authenticate: Bearer` with a wrong one, a
/// right one of another scheme or none; the probes without any.
#[test]
fn https_metrics_need_the_token_and_the_probes_do_not() {
    let served = Served::start();
    let (code, _, body) = served.get("/metrics", Some(&format!("Bearer {TOKEN}")));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("# TYPE dnslens_events_lost_total counter"),
        "{body}"
    );
    for wrong in [
        None,
        Some("Bearer tok-3n.Q~9+/"),
        Some("Bearer nope"),
        Some("Basic dG9rOg=="),
    ] {
        let (code, head, body) = served.get("/metrics", wrong);
        assert_eq!(code, 401, "{wrong:?}: {body}");
        assert!(head.contains("\r\nWww-Authenticate: Bearer"), "{head}");
        assert!(!body.contains("dnslens_"), "{body}");
    }
    for probe in ["/healthz", "/readyz"] {
        let (code, _, body) = served.get(probe, None);
        assert_eq!((code, body.as_str()), (200, "ok\n"), "{probe}");
    }
}

/// Plain HTTP to the TLS port is closed at once, answered with nothing; 200 clients that send
/// half a ClientHello and wait leave /healthz answering within a second.
#[test]
fn plain_http_and_stalled_handshakes_cannot_stop_the_endpoints() {
    let served = Served::start();
    let mut plain = TcpStream::connect(served.at()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(plain, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let asked = Instant::now();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        !String::from_utf8_lossy(&reply).contains("ok"),
        "plain HTTP was served: {reply:?}"
    );
    // A TLS record header announcing a 512-byte handshake, then silence.
    let stalled: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(served.at()).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
            s
        })
        .collect();
    for _ in 0..3 {
        let asked = Instant::now();
        let (code, _, body) = served.get("/healthz", None);
        assert_eq!((code, body.as_str()), (200, "ok\n"));
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
    }
    drop(stalled);
}

/// A new token and a new certificate are served once the files change; a token file changed
/// into something unusable keeps the last good token.
#[test]
fn changed_files_are_read_again() {
    let served = Served::start();
    let dir = served.dir.path().to_path_buf();
    let auth = |t: &str| format!("Bearer {t}");
    std::fs::write(dir.join("token"), "second\n").unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.join("tls.crt"), made.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), made.key_pair.serialize_pem()).unwrap();
    std::thread::sleep(RELOAD_EVERY + Duration::from_millis(200));
    // The look happens as a connection comes: this one may still get the old settings.
    let _ = TcpStream::connect(served.at());
    std::thread::sleep(Duration::from_millis(100));
    let served = Served {
        cert: made.cert.der().clone(),
        ..served
    };
    assert_eq!(served.get("/metrics", Some(&auth("second"))).0, 200);
    assert_eq!(served.get("/metrics", Some(&auth(TOKEN))).0, 401);

    std::fs::write(dir.join("token"), "two words\n").unwrap();
    std::thread::sleep(RELOAD_EVERY + Duration::from_millis(200));
    let _ = TcpStream::connect(served.at());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(served.get("/metrics", Some(&auth("second"))).0, 200);
}

/// Files that cannot be used stop the agent at start, naming the flag and the file.
#[test]
fn unusable_files_are_named_at_start() {
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-tls-bad"));
    let a = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("tls.crt"), a.cert.pem()).unwrap();
    std::fs::write(path("tls.key"), b.key_pair.serialize_pem()).unwrap();
    std::fs::write(path("token"), "t\n").unwrap();
    std::fs::write(path("empty"), "").unwrap();
    let error = |files: AccessFiles| {
        let e = Bound::new("127.0.0.1:0".parse().unwrap(), files)
            .err()
            .unwrap();
        format!("{e:#}")
    };
    let e = error(files(dir.path()));
    assert!(
        e.contains("--metrics-tls-key") && e.contains("does not fit the certificate"),
        "{e}"
    );
    let with = |cert: PathBuf, key: PathBuf| AccessFiles {
        tls: Some(TlsFiles { cert, key }),
        token: None,
    };
    let e = error(with(path("empty"), path("tls.key")));
    assert!(
        e.contains("--metrics-tls-cert") && e.contains("no CERTIFICATE"),
        "{e}"
    );
    let e = error(with(path("tls.crt"), path("empty")));
    assert!(
        e.contains("--metrics-tls-key") && e.contains("private key"),
        "{e}"
    );
    let e = error(AccessFiles {
        tls: None,
        token: Some(path("missing")),
    });
    assert!(
        e.contains("--metrics-token-file") && e.contains("cannot read"),
        "{e}"
    );
}

/// Real consumers: curl trusting the certificate fetches the scrape with the token (and gets
/// 401 without), and promtool accepts what it fetched.
#[test]
fn curl_and_promtool_read_the_https_scrape() {
    if !have_tool("curl") || !have_tool("promtool") {
        return;
    }
    let served = Served::start();
    let url = format!("https://{}/metrics", served.at());
    let ca = served.dir.path().join("tls.crt");
    let curl = |extra: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&ca)
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(curl(&["-o", "/dev/null", "-w", "%{http_code}"]), "401");
    let text = curl(&["-H", &format!("Authorization: Bearer {TOKEN}")]);
    let checked = promtool_check(&text);
    assert!(
        checked.status.success() && text.contains("dnslens_events_lost_total"),
        "promtool check metrics refused the HTTPS scrape:\n{}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
