//! The JSON lines' writes, on a thread of their own. The run loop hands over whole buffers and
//! goes back to the ring buffer: copying lines into the page cache was a third of dnslens's CPU
//! at 50k queries/s (docs/performance.md), and a write that waits (dirty-page throttling, a slow
//! pipe) stopped the reading while the kernel dropped what no longer fit. Now the copy runs
//! beside the pipeline, and a wait stops it only once [`QUEUED`] buffers are waiting; that wait
//! is timed, so a loss can be told apart from a slow output. An output that takes nothing for
//! [`PATIENCE`] is stalled (a reader of stdout that stopped, a full disk): its buffers are
//! dropped and their lines counted until it takes one again, so that it cannot stop the
//! capture, the detectors, the agent's metrics or a stop by SIGINT.

use std::io::{self, Write};
use std::mem;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Buffers handed over and not written yet before the run loop waits: at most 4 MiB of lines
/// with the JSON sink's 64 KiB buffers (fewer under light load, where each turn hands over what
/// it has).
const QUEUED: usize = 64;
/// Written buffers kept for reuse; the rest of a backlog's buffers are freed.
const SPARE: usize = 4;
/// How long a hand-over waits for room before the output counts as stalled. The ring buffer
/// fills meanwhile: this only bounds how long the reading can be stopped.
pub const PATIENCE: Duration = Duration::from_secs(1);
/// How often a waiting hand-over looks for room.
const RETRY: Duration = Duration::from_micros(200);

/// What the output cost the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputStats {
    /// How long, in all, handing over waited for room.
    pub waited: Duration,
    /// Lines dropped while the output was stalled.
    pub dropped_lines: u64,
}

impl OutputStats {
    /// What it cost since `earlier`.
    pub fn since(self, earlier: OutputStats) -> OutputStats {
        OutputStats {
            waited: self.waited.saturating_sub(earlier.waited),
            dropped_lines: self.dropped_lines.saturating_sub(earlier.dropped_lines),
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == OutputStats::default()
    }
}

pub struct Writer<W: Write + Send + 'static> {
    /// `None` once closed.
    full: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<(W, io::Result<()>)>>,
    stats: OutputStats,
    /// The last hand-over found no room within [`PATIENCE`]: drop until there is room again.
    stalled: bool,
}

impl<W: Write + Send + 'static> Writer<W> {
    pub fn start(out: W) -> Self {
        let (full, to_write) = mpsc::sync_channel(QUEUED);
        let (give_back, spare) = mpsc::sync_channel(SPARE);
        let thread = thread::Builder::new()
            .name("dnslens-output".to_string())
            .spawn(move || write_out(out, &to_write, &give_back))
            // Only the OS refusing a thread fails here (out of memory or pids): nothing runs then.
            .expect("starting the output thread");
        Writer {
            full: Some(full),
            spare,
            thread: Some(thread),
            stats: OutputStats::default(),
            stalled: false,
        }
    }

    /// Hands `lines` over to be written, leaving an empty buffer in its place. Waits up to
    /// [`PATIENCE`] for room, and not at all while the output is stalled: then the lines are
    /// dropped and counted. An error is the write's that stopped the thread.
    pub fn hand_over(&mut self, lines: &mut Vec<u8>) -> io::Result<()> {
        let Some(full) = &self.full else {
            return Err(io::Error::other("the output was closed"));
        };
        let empty = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(lines.capacity()));
        let mut chunk = mem::replace(lines, empty);
        let mut waiting_since = None;
        let sent = loop {
            match full.try_send(chunk) {
                Ok(()) => {
                    self.stalled = false;
                    break true;
                }
                Err(TrySendError::Disconnected(_)) => break false,
                Err(TrySendError::Full(back)) => {
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    if self.stalled || since.elapsed() >= PATIENCE {
                        self.stalled = true;
                        self.stats.dropped_lines +=
                            back.iter().filter(|&&b| b == b'\n').count() as u64;
                        break true;
                    }
                    chunk = back;
                    thread::sleep(RETRY);
                }
            }
        };
        if let Some(since) = waiting_since {
            self.stats.waited += since.elapsed();
        }
        if sent {
            Ok(())
        } else {
            self.stopped()
        }
    }

    /// The write error that stopped the thread, if it stopped: a closed pipe ends the run at
    /// the next turn even when nothing more is handed over.
    pub fn check(&mut self) -> io::Result<()> {
        if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            return self.stopped();
        }
        Ok(())
    }

    fn stopped(&mut self) -> io::Result<()> {
        // The thread returns only after an error or once closed.
        self.close()
            .and(Err(io::Error::other("the output thread stopped")))
    }

    /// Waits until everything handed over is written and flushed, and stops the thread; its
    /// writer is returned once.
    pub fn close(&mut self) -> io::Result<Option<W>> {
        self.full = None;
        let Some(thread) = self.thread.take() else {
            return Ok(None);
        };
        let (out, written) = thread
            .join()
            .map_err(|_| io::Error::other("the output thread panicked"))?;
        written.map(|()| Some(out))
    }

    pub fn stats(&self) -> OutputStats {
        self.stats
    }
}

impl<W: Write + Send + 'static> Drop for Writer<W> {
    fn drop(&mut self) {
        // Lines handed over are written even when the run ends on an error.
        let _ = self.close();
    }
}

fn write_out<W: Write>(
    mut out: W,
    to_write: &Receiver<Vec<u8>>,
    give_back: &SyncSender<Vec<u8>>,
) -> (W, io::Result<()>) {
    let written = (|| loop {
        let mut chunk = match to_write.try_recv() {
            Ok(chunk) => chunk,
            Err(TryRecvError::Empty) => {
                // Caught up: what is written goes out now, so a pipe's reader sees it live.
                out.flush()?;
                match to_write.recv() {
                    Ok(chunk) => chunk,
                    Err(_) => return Ok(()),
                }
            }
            Err(TryRecvError::Disconnected) => return out.flush(),
        };
        out.write_all(&chunk)?;
        chunk.clear();
        let _ = give_back.try_send(chunk);
    })();
    (out, written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_buffer_in_order_and_returns_the_writer() {
        let mut writer = Writer::start(Vec::new());
        let mut expected = Vec::new();
        for i in 0..(QUEUED * 3) {
            let mut lines = format!("line {i}\n").into_bytes();
            expected.extend_from_slice(&lines);
            writer.hand_over(&mut lines).unwrap();
            assert!(lines.is_empty());
        }
        assert_eq!(writer.close().unwrap().unwrap(), expected);
        assert!(
            writer.close().unwrap().is_none(),
            "the writer is returned once"
        );
    }

    /// A writer that fails after `ok` writes, as a closed pipe does.
    struct FailsAfter {
        ok: usize,
    }

    impl Write for FailsAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.ok -= 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_comes_back_to_the_caller() {
        let mut writer = Writer::start(FailsAfter { ok: 2 });
        let error = (0..(QUEUED * 4))
            .find_map(|_| writer.hand_over(&mut b"x\n".to_vec()).err())
            .expect("the error is seen once the thread has stopped");
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
        assert!(writer.hand_over(&mut b"x\n".to_vec()).is_err());
        assert!(writer.close().unwrap().is_none());
    }

    #[test]
    fn a_stalled_output_drops_and_counts_lines_until_it_takes_again() {
        let (open, gate) = mpsc::channel();
        let mut writer = Writer::start(Gate(gate));
        // One buffer in the write and QUEUED in the queue, then no room for PATIENCE.
        for _ in 0..=QUEUED {
            writer.hand_over(&mut b"x\n".to_vec()).unwrap();
        }
        let start = Instant::now();
        writer.hand_over(&mut b"a\nb\n".to_vec()).unwrap();
        assert!(start.elapsed() >= PATIENCE);
        // Stalled: the next one is dropped at once.
        let start = Instant::now();
        writer.hand_over(&mut b"c\n".to_vec()).unwrap();
        assert!(start.elapsed() < PATIENCE);
        assert_eq!(writer.stats().dropped_lines, 3);
        // Taking again ends the stall: once the thread has made room, a buffer goes through.
        for _ in 0..=QUEUED {
            open.send(()).unwrap();
        }
        let taken = (0..1000).any(|_| {
            let before = writer.stats().dropped_lines;
            writer.hand_over(&mut b"d\n".to_vec()).unwrap();
            let through = writer.stats().dropped_lines == before;
            if !through {
                thread::sleep(Duration::from_millis(10));
            }
            through
        });
        assert!(taken, "{:?}", writer.stats());
        drop(open);
        writer.close().unwrap();
    }

    #[test]
    fn a_stopped_thread_is_seen_without_handing_over_more() {
        let mut writer = Writer::start(FailsAfter { ok: 0 });
        writer.hand_over(&mut b"x\n".to_vec()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let error = loop {
            match writer.check() {
                Err(e) => break e,
                Ok(()) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
                Ok(()) => panic!("the thread did not stop on its write error"),
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }

    /// A writer that blocks until told to go on, as a throttled disk does.
    struct Gate(Receiver<()>);

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_waits_and_the_wait_is_timed() {
        let (open, gate) = mpsc::channel();
        let mut writer = Writer::start(Gate(gate));
        let handed = QUEUED + 2;
        let opener = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            for _ in 0..handed {
                open.send(()).unwrap();
            }
        });
        // One buffer in the write and QUEUED in the queue: the next one waits for the gate.
        for _ in 0..handed {
            writer.hand_over(&mut b"x\n".to_vec()).unwrap();
        }
        let stats = writer.stats();
        assert!(stats.waited >= Duration::from_millis(100), "{stats:?}");
        assert_eq!(stats.dropped_lines, 0);
        opener.join().unwrap();
        writer.close().unwrap();
    }
}
