//! `--dnstap ADDR`: each DNS message also as a dnstap message, beside the normal output. The
//! run loop only encodes ([`encode`]) and hands the payload to a bounded queue; a thread of its
//! own connects, shakes hands, writes and reconnects with backoff ([`link`]), so a slow, absent
//! or restarted receiver never holds up the capture: while the queue is full, messages are
//! dropped and counted (the end report, `dnslens_dnstap_dropped_total`).

mod encode;
mod link;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use dnslens_lens::DnsEvent;

pub use encode::{Encoder, TOOLS};
use link::Link;

use crate::sink::rotate::Rotation;
use crate::units::DnstapAddress;

/// Messages waiting for the thread, and the bytes they may hold in all.
const QUEUED: usize = 16384;
const QUEUED_BYTES: usize = 16 << 20;
/// Waits between attempts to connect: doubled from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// Frames written are pushed out after this long without a new one.
const FLUSH_AFTER: Duration = Duration::from_millis(50);

/// Where dnstap goes, from the settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnstapOutput {
    pub address: DnstapAddress,
    /// `file:` only.
    pub rotation: Option<Rotation>,
}

/// What the dnstap output did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnstapStats {
    /// Messages written to the receiver or file.
    pub sent: u64,
    /// Messages dropped: the queue was full (receiver absent or slow), or the link broke
    /// before they were written out.
    pub dropped: u64,
    /// Times the link was made again after it was lost.
    pub reconnects: u64,
}

#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    queued_bytes: AtomicUsize,
    closing: AtomicBool,
}

pub struct DnstapSink {
    encoder: Encoder,
    queue: Option<SyncSender<Vec<u8>>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl DnstapSink {
    /// Starts the thread, which connects in the background: a receiver not there yet is
    /// waited for, not an error. `identity`: the node name, or the hostname.
    pub fn start(output: &DnstapOutput, identity: &str) -> DnstapSink {
        let (queue, frames) = mpsc::sync_channel(QUEUED);
        let shared = Arc::new(Shared::default());
        let (output, worker) = (output.clone(), Arc::clone(&shared));
        let thread = thread::Builder::new()
            .name("dnslens-dnstap".to_string())
            .spawn(move || write_out(&output, &frames, &worker))
            .expect("starting the dnstap thread");
        DnstapSink {
            encoder: Encoder::new(identity),
            queue: Some(queue),
            shared,
            thread: Some(thread),
        }
    }

    /// Every event the pipeline makes, with its message's bytes (none for an unanswered
    /// query): each tells which processes serve DNS; those `shown` (they passed the filters)
    /// are sent.
    pub fn event(&mut self, event: &DnsEvent, wire: Option<&[u8]>, shown: bool) {
        self.encoder.learn(event);
        let (true, Some(queue), Some(wire)) = (shown, &self.queue, wire) else {
            return;
        };
        let Some(payload) = self.encoder.encode(event, wire) else {
            return;
        };
        let len = payload.len();
        let s = &self.shared;
        if s.queued_bytes.load(Ordering::Relaxed) + len > QUEUED_BYTES {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        s.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = queue.try_send(payload)
        {
            s.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            s.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> DnstapStats {
        let s = &self.shared;
        DnstapStats {
            sent: s.sent.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Writes what is queued, ends the stream (STOP, and FINISH from a receiver) and stops the
    /// thread; without a receiver what is queued is dropped and counted.
    pub fn finish(&mut self) -> DnstapStats {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.stats()
    }
}

impl Drop for DnstapSink {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The thread: (re)connect, write, flush when idle, end the stream when the queue closes.
fn write_out(output: &DnstapOutput, frames: &Receiver<Vec<u8>>, shared: &Shared) {
    let address = describe(&output.address);
    let mut link: Option<Link> = None;
    let mut backoff = BACKOFF.0;
    let mut lost_once = false;
    let mut opened_once = false;
    // Frames written since the last flush: sent once flushed, dropped if the flush fails.
    let mut unflushed = 0u64;
    loop {
        let Some(open) = link.as_mut() else {
            match Link::open(&output.address, output.rotation, opened_once) {
                Ok(l) => {
                    opened_once = true;
                    if lost_once {
                        shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        say!("dnslens: dnstap: connected again to {address}");
                    }
                    link = Some(l);
                    backoff = BACKOFF.0;
                }
                Err(e) => {
                    if !lost_once {
                        say!(
                            "dnslens: dnstap: {address}: {e:#}; trying again, and dropping (and \
                             counting) messages while the queue is full"
                        );
                    }
                    lost_once = true;
                    if wait_or_close(backoff, shared) {
                        drain(frames, shared);
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
            continue;
        };
        let failed = match frames.recv_timeout(FLUSH_AFTER) {
            Ok(frame) => {
                shared
                    .queued_bytes
                    .fetch_sub(frame.len(), Ordering::Relaxed);
                unflushed += 1;
                open.send(&frame).err()
            }
            Err(RecvTimeoutError::Timeout) if unflushed == 0 => None,
            Err(RecvTimeoutError::Timeout) => open.flush().err().or_else(|| {
                shared.sent.fetch_add(unflushed, Ordering::Relaxed);
                unflushed = 0;
                None
            }),
            Err(RecvTimeoutError::Disconnected) => {
                let link = link.take().expect("open above");
                match link.close() {
                    Ok(()) => shared.sent.fetch_add(unflushed, Ordering::Relaxed),
                    Err(e) => {
                        say!("dnslens: dnstap: {address}: ending the stream: {e:#}");
                        shared.dropped.fetch_add(unflushed, Ordering::Relaxed)
                    }
                };
                return;
            }
        };
        if let Some(e) = failed {
            say!("dnslens: dnstap: {address}: {e}; connecting again");
            shared.dropped.fetch_add(unflushed, Ordering::Relaxed);
            unflushed = 0;
            link = None;
            lost_once = true;
        }
    }
}

/// Sleeps `wait`, or less once the sink is closing (then returns true).
fn wait_or_close(wait: Duration, shared: &Shared) -> bool {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if shared.closing.load(Ordering::Relaxed) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    shared.closing.load(Ordering::Relaxed)
}

/// What is still queued when the run ends without a receiver: dropped, counted.
fn drain(frames: &Receiver<Vec<u8>>, shared: &Shared) {
    let left = frames.try_iter().count() as u64;
    shared.dropped.fetch_add(left, Ordering::Relaxed);
}

fn describe(address: &DnstapAddress) -> String {
    match address {
        DnstapAddress::Unix(p) => format!("unix:{}", p.display()),
        DnstapAddress::Tcp(a) => format!("tcp:{a}"),
        DnstapAddress::File(p) => format!("file:{}", p.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnslens_dnstap::fstrm::{self, Control};
    use dnslens_dnstap::{Dnstap, Reader};
    use dnslens_lens::model::sample;
    use prost::Message as _;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("dnslens-dnstap-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn event(id: u16) -> DnsEvent {
        sample::query(id, "a.example", 1, 0)
    }

    const WIRE: Option<&[u8]> = Some(&[0u8; 12]);

    #[test]
    fn a_file_holds_one_stream_per_rotation_and_reads_back() {
        let d = dir("file");
        let path = d.join("t.fstrm");
        let output = DnstapOutput {
            address: DnstapAddress::File(path.clone()),
            rotation: Some(Rotation {
                size: 2000,
                keep: 3,
            }),
        };
        let mut sink = DnstapSink::start(&output, "node-1");
        for id in 0..10 {
            sink.event(&event(id), WIRE, true);
        }
        sink.event(&event(99), WIRE, false);
        let stats = sink.finish();
        assert_eq!((stats.sent, stats.dropped), (10, 0));
        let mut ids = Vec::new();
        for name in ["t.fstrm.3", "t.fstrm.2", "t.fstrm.1", "t.fstrm"] {
            let Ok(bytes) = std::fs::read(d.join(name)) else {
                continue;
            };
            assert!(bytes.len() <= 2000, "{name}: {}", bytes.len());
            assert!(
                bytes.ends_with(&fstrm::control(Control::Stop, false)),
                "{name}"
            );
            let mut reader = Reader::new(&bytes[..]);
            while let Some(frame) = reader.next_frame().unwrap() {
                let tap = Dnstap::decode(&frame[..]).unwrap();
                assert_eq!(tap.identity.as_deref(), Some(&b"node-1"[..]));
                ids.push(tap.message.unwrap().query_message.unwrap().len());
            }
        }
        assert_eq!(ids.len(), 10, "every message once, over the rotated files");
        assert!(d.join("t.fstrm.1").exists(), "rotated");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn without_a_receiver_messages_are_dropped_and_counted_and_a_late_one_gets_the_rest() {
        let d = dir("late");
        let path = d.join("r.sock");
        let output = DnstapOutput {
            address: DnstapAddress::Unix(path.clone()),
            rotation: None,
        };
        let mut sink = DnstapSink::start(&output, "n");
        // More than the queue holds, at once: the capture thread never waits.
        let start = Instant::now();
        for id in 0..(QUEUED + 100) {
            sink.event(&event(id as u16), WIRE, true);
        }
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(sink.stats().dropped >= 100, "{:?}", sink.stats());
        // A receiver comes: it gets the queue, then the stream's end.
        let listener = UnixListener::bind(&path).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        fstrm::read_control(&mut s).unwrap();
        s.write_all(&fstrm::control(Control::Accept, true)).unwrap();
        let receiver = thread::spawn(move || {
            let mut reader = Reader::new(&mut s);
            let mut n = 0u64;
            while reader.next_frame().unwrap().is_some() {
                n += 1;
            }
            s.write_all(&fstrm::control(Control::Finish, false))
                .unwrap();
            n
        });
        let stats = sink.finish();
        let received = receiver.join().unwrap();
        assert_eq!(received, stats.sent);
        assert_eq!(
            stats.sent + stats.dropped,
            (QUEUED + 100) as u64,
            "{stats:?}"
        );
        assert_eq!(stats.reconnects, 1, "connected after a failed attempt");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
