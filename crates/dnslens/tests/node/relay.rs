//! A lossy hop in front of the node's dnsmasq: a UDP relay on an address of the server namespace
//! that drops the first datagrams it receives and passes the rest to dnsmasq, answer and all.
//! What it dropped never reaches dnsmasq's log, so the log and the relay's count together say
//! what the clients sent. It runs on a thread of the test moved into the server namespace.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::ip;
use super::net::Node;

pub struct Relay {
    pub addr: Ipv4Addr,
    dropped: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts the relay on `.54` of the node's /24, dropping the first `drop_first` queries.
    pub fn start(node: &Node, drop_first: usize) -> Relay {
        let [a, b, c, _] = node.server.v4.octets();
        let addr = Ipv4Addr::new(a, b, c, 54);
        let ns = &node.server.ns;
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", "br0"]);
        let netns = File::open(Path::new("/run/netns").join(ns)).expect("open the netns");
        let upstream = SocketAddr::from((node.server.v4, 53));
        let (dropped, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = {
            let (dropped, stop) = (dropped.clone(), stop.clone());
            std::thread::spawn(move || {
                // SAFETY: setns on a descriptor we own; it moves this thread only.
                let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                let listen = UdpSocket::bind((addr, 53)).expect("bind the relay");
                let out = UdpSocket::bind((addr, 0)).expect("bind the relay's upstream side");
                listen
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                out.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                bound_tx.send(()).unwrap();
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, client)) = listen.recv_from(&mut buf) else {
                        continue;
                    };
                    if dropped.load(Ordering::Relaxed) < drop_first {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    out.send_to(&buf[..n], upstream).expect("relay to dnsmasq");
                    if let Ok(n) = out.recv(&mut buf) {
                        let _ = listen.send_to(&buf[..n], client);
                    }
                }
            })
        };
        bound_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the relay did not bind");
        Relay {
            addr,
            dropped,
            stop,
            thread: Some(thread),
        }
    }

    /// Queries dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
