//! Running `dnslens agent` as a child, and plain HTTP to its endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{wait_until, ChildGuard};

/// A free port on loopback (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `GET path` over HTTP/1.1 with `Connection: close`: the status and the body.
pub fn get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).ok()?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    // Prometheus answers its API in chunks.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((code, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A running `dnslens agent`, killed by its pid on drop if it did not exit.
pub struct Agent {
    pub child: ChildGuard,
    pub address: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Agent {
    pub fn start(args: &[&str]) -> Agent {
        let port = free_port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dnslens"))
            .arg("agent")
            .args(["--metrics-address", &address.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dnslens agent");
        let stderr = super::trace::collect_stderr(&mut child);
        Agent {
            child: ChildGuard::new(child),
            address,
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (60 s at most) for `/readyz` to say 200.
    pub fn wait_ready(&mut self) {
        let mut last = None;
        let ready = wait_until(Duration::from_secs(60), || {
            if self.child.wait_timeout(Duration::ZERO).is_some() {
                return true;
            }
            last = get(self.address, "/readyz");
            last.as_ref().is_some_and(|(code, _)| *code == 200)
        });
        assert!(
            ready && self.child.wait_timeout(Duration::ZERO).is_none(),
            "the agent did not get ready (last /readyz: {last:?})\nstderr:\n{}",
            self.stderr()
        );
    }

    /// SIGTERM, then its exit status (10 s at most) and stderr.
    pub fn terminate(mut self) -> (Option<std::process::ExitStatus>, String) {
        self.child.signal(libc::SIGTERM);
        let status = self.child.wait_timeout(Duration::from_secs(10));
        // The stderr reader ends at EOF, right after the exit.
        std::thread::sleep(Duration::from_millis(100));
        (status, self.stderr())
    }
}

/// `promtool check metrics` over an exposition: what Prometheus's own linter says of it.
pub fn promtool_check(exposition: &str) -> Output {
    let mut promtool = Command::new(super::resolvers::tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    promtool
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    promtool.wait_with_output().expect("promtool")
}
