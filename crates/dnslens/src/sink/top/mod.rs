//! `dnslens top`: a live view of who resolves what, as a sink of the run loop. The loop feeds
//! events and alerts into the [`model::Model`] under a lock held only for that; a thread of
//! its own draws the view (`--interval`) and reads keys, so a slow or stalled terminal never
//! holds up the capture. Quitting the view stops the run; the run's end closes the view.

mod controls;
mod model;
mod terminal;
mod view;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dnslens_detect::Alert;
use dnslens_lens::lookup::Lookup;
use dnslens_lens::{clock, DnsEvent};
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use ratatui::widgets::TableState;

pub use controls::Grouping;
use controls::{Command, Controls};
use model::{Model, Snapshot};
use terminal::Screen;

use crate::sink::Sink;

/// How often the view looks whether the run has ended, while waiting for keys.
const QUIT_CHECK: Duration = Duration::from_millis(100);

struct Shared {
    model: Mutex<Model>,
    /// The run has ended: the view closes.
    quit: AtomicBool,
}

pub struct TopSink {
    shared: Arc<Shared>,
    /// The view's thread; `Err` if it could not be started.
    view: Option<io::Result<JoinHandle<io::Result<()>>>>,
}

impl TopSink {
    /// Starts the view with rows grouped `by`, redrawn every `interval`.
    pub fn start(by: Grouping, interval: Duration) -> TopSink {
        let shared = Arc::new(Shared {
            model: Mutex::new(Model::new(clock::monotonic_now_ns())),
            quit: AtomicBool::new(false),
        });
        let view_shared = Arc::clone(&shared);
        let view = std::thread::Builder::new()
            .name("dnslens-top".to_string())
            .spawn(move || {
                let _stop = StopRun;
                show(&view_shared, by, interval)
            });
        if view.is_err() {
            crate::stop::stop();
        }
        TopSink {
            shared,
            view: Some(view),
        }
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        // A panic while drawing left the model whole (it only reads it).
        self.shared
            .model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the view and waits for it to put the terminal back.
    fn close(&mut self) -> io::Result<()> {
        self.shared.quit.store(true, Ordering::SeqCst);
        match self.view.take() {
            None => Ok(()),
            Some(Err(e)) => Err(io::Error::new(
                e.kind(),
                format!("starting the view's thread: {e}"),
            )),
            Some(Ok(view)) => match view.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(io::Error::new(
                    e.kind(),
                    format!("the terminal failed: {e} (dnslens top needs an interactive terminal)"),
                )),
                Err(_) => Err(io::Error::other("the view panicked (its message is above)")),
            },
        }
    }
}

impl Sink for TopSink {
    /// Nothing is printed for an event: the view draws figures.
    fn event(&mut self, event: &DnsEvent) -> io::Result<bool> {
        self.model().event(event);
        Ok(false)
    }

    /// Placed in the window when it reaches the model: within half a second of its end (the
    /// lookup stage's `linger`).
    fn lookup(&mut self, lookup: &Lookup) -> io::Result<bool> {
        self.model().lookup(lookup, clock::monotonic_now_ns());
        Ok(false)
    }

    fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        self.model().alert(alert);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn finish(&mut self, _wall_ns: u64) -> io::Result<()> {
        self.close()
    }
}

impl Drop for TopSink {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Ends the run when the view ends, whichever way: `q`, a terminal error or a panic.
struct StopRun;

impl Drop for StopRun {
    fn drop(&mut self) {
        crate::stop::stop();
    }
}

/// The view's thread: draw every `interval` and after each key, until `q` or the run's end.
fn show(shared: &Shared, by: Grouping, interval: Duration) -> io::Result<()> {
    let mut screen = Screen::enter()?;
    let mut view = View {
        controls: Controls::new(by),
        table: TableState::default(),
        shown: None,
    };
    let mut next_draw = Instant::now();
    while !shared.quit.load(Ordering::SeqCst) && terminal::active() {
        let now = Instant::now();
        if now >= next_draw {
            view.draw(shared, &mut screen)?;
            next_draw = now + interval;
        }
        let wait = next_draw.saturating_duration_since(now).min(QUIT_CHECK);
        if !event::poll(wait)? {
            continue;
        }
        match event::read()? {
            Event::Key(key) if key.kind != KeyEventKind::Release => match view::command(&key) {
                Some(Command::Quit) => break,
                Some(command) => {
                    // The view is drawn before the first key is read, so it was shown.
                    if let Some(shown) = &view.shown {
                        view.controls.apply(command, shown);
                    }
                    view.draw(shared, &mut screen)?;
                }
                None => {}
            },
            Event::Resize(..) => view.draw(shared, &mut screen)?,
            _ => {}
        }
    }
    Ok(())
}

/// What the view's thread keeps between frames.
struct View {
    controls: Controls,
    table: TableState,
    /// The rows as last drawn, which the keys move over.
    shown: Option<Snapshot>,
}

impl View {
    fn draw(&mut self, shared: &Shared, screen: &mut Screen) -> io::Result<()> {
        // The lock is held to copy the figures out, not while the terminal is written.
        let snapshot = shared
            .model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot(clock::monotonic_now_ns(), &self.controls);
        let notice = screen.last_line();
        let mut drawn = None;
        screen.terminal.draw(|frame| {
            drawn = Some(view::render(
                frame,
                &snapshot,
                &mut self.table,
                self.controls.overlay,
                notice.as_deref(),
                crate::sink::local_utc_offset,
            ));
        })?;
        if let Some(drawn) = drawn {
            self.controls.page = drawn.page;
            self.controls.columns = drawn.columns;
        }
        self.shown = Some(snapshot);
        Ok(())
    }
}
