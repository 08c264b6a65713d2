//! The terminal while the view is up: raw mode, the alternate screen, a hidden cursor, and
//! stderr set aside in a pipe (the run's warnings and the pod watch's would scribble over the
//! screen). A [`Screen`] undoes all of it when dropped, and so does a panic hook before the
//! panic's message is printed; undoing twice is harmless. What was written to stderr meanwhile
//! is printed once the terminal is back.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Stdout, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::thread::JoinHandle;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;

/// Whether the terminal is in the view's modes.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The real stderr while fd 2 is the pipe; -1 otherwise.
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);
/// stderr lines kept while the view is up; older ones are counted.
const KEPT_LINES: usize = 200;

pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
    // Dropped in this order: the terminal's modes, then stderr (which prints what it kept).
    _modes: Modes,
    stderr: Stderr,
}

impl Screen {
    pub fn enter() -> io::Result<Screen> {
        install_panic_hook();
        let stderr = Stderr::set_aside().map_err(|e| with_context(e, "setting stderr aside"))?;
        ACTIVE.store(true, Ordering::SeqCst);
        let modes = Modes;
        terminal::enable_raw_mode().map_err(|e| with_context(e, "entering raw mode"))?;
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)
            .map_err(|e| with_context(e, "entering the alternate screen"))?;
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        Ok(Screen {
            terminal,
            _modes: modes,
            stderr,
        })
    }

    /// The latest line written to stderr since the view came up.
    pub fn last_line(&self) -> Option<String> {
        self.stderr.kept.lock().ok()?.lines.back().cloned()
    }
}

/// False once the terminal was put back (by a panic elsewhere): nothing more may be drawn.
pub fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Leaves the terminal's modes when dropped.
struct Modes;

impl Drop for Modes {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal and stderr back, once: on drop, or from the panic hook.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    }
    let saved = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    if saved >= 0 {
        // SAFETY: `saved` is our duplicate of the real stderr, closed only here, once.
        unsafe {
            libc::dup2(saved, libc::STDERR_FILENO);
            libc::close(saved);
        }
    }
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

#[derive(Default)]
struct Kept {
    lines: VecDeque<String>,
    dropped: u64,
}

/// fd 2 pointed at a pipe whose lines a thread keeps.
struct Stderr {
    kept: Arc<Mutex<Kept>>,
    reader: Option<JoinHandle<()>>,
}

impl Stderr {
    fn set_aside() -> io::Result<Stderr> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array, which we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both were just opened by pipe2 and are owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_DUPFD_CLOEXEC duplicates fd 2, which stays open; the copy is ours.
        let saved = unsafe { libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
        if saved < 0 {
            return Err(io::Error::last_os_error());
        }
        let _ = io::stderr().flush();
        // SAFETY: both descriptors are open; fd 2 now writes to the pipe (`write` is closed
        // when dropped below, so the pipe ends when fd 2 is put back).
        if unsafe { libc::dup2(write.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: `saved` is ours and not stored anywhere yet.
            unsafe { libc::close(saved) };
            return Err(e);
        }
        drop(write);
        SAVED_STDERR.store(saved, Ordering::SeqCst);
        let kept = Arc::new(Mutex::new(Kept::default()));
        let into = Arc::clone(&kept);
        let reader = std::thread::Builder::new()
            .name("dnslens-stderr".to_string())
            .spawn(move || keep_lines(File::from(read), &into));
        match reader {
            Ok(reader) => Ok(Stderr {
                kept,
                reader: Some(reader),
            }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

fn keep_lines(pipe: File, kept: &Mutex<Kept>) {
    let mut pipe = BufReader::new(pipe);
    let mut line = Vec::new();
    while pipe.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        line.clear();
        let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.lines.len() == KEPT_LINES {
            kept.lines.pop_front();
            kept.dropped += 1;
        }
        kept.lines.push_back(text);
    }
}

impl Drop for Stderr {
    fn drop(&mut self) {
        restore();
        // fd 2 no longer holds the pipe, so the reader sees its end.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let kept = std::mem::take(&mut *self.kept.lock().unwrap_or_else(PoisonError::into_inner));
        let mut err = io::stderr().lock();
        if kept.dropped > 0 {
            let _ = writeln!(err, "dnslens: ({} earlier lines left out)", kept.dropped);
        }
        for line in kept.lines {
            let _ = writeln!(err, "{line}");
        }
    }
}
