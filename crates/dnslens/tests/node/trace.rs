//! Running `dnslens trace --json` (or `count`) as a child: started, waited for until it says
//! it is tracing, read while it runs, and stopped with SIGINT as a user would.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{unique_tag, wait_until, ChildGuard, TempDir};

/// A running `dnslens trace --json`. Killed on drop if not stopped.
pub struct Trace {
    child: ChildGuard,
    out: PathBuf,
    stderr: Arc<Mutex<String>>,
    _dir: TempDir,
}

/// What a stopped trace printed.
pub struct Stopped {
    pub events: Vec<Value>,
    /// stdout lines that were not JSON objects.
    pub bad_lines: Vec<String>,
    pub stderr: String,
    /// None if it did not exit within 10 s of SIGINT (it was then killed).
    pub status: Option<ExitStatus>,
}

impl Trace {
    /// Starts `dnslens trace --json --no-detect ARGS` and waits (60 s at most) until it reports
    /// tracing. Without the detectors: alerts pass every filter, so another test's process on
    /// this host (a resolver run from a checkout under /tmp, say) would show in the output of a
    /// capture test.
    pub fn start(args: &[&str]) -> Trace {
        let mut all = vec!["--no-detect"];
        all.extend_from_slice(args);
        Trace::with_detectors(&all)
    }

    /// Starts `dnslens trace --json ARGS`, the detectors on unless ARGS say otherwise.
    pub fn with_detectors(args: &[&str]) -> Trace {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        Trace::printing(&all)
    }

    /// Starts `dnslens trace ARGS`: the table unless ARGS say `--json`.
    pub fn printing(args: &[&str]) -> Trace {
        Trace::subcommand("trace", args)
    }

    /// Starts `dnslens count ARGS`.
    pub fn count(args: &[&str]) -> Trace {
        Trace::subcommand("count", args)
    }

    fn subcommand(subcommand: &str, args: &[&str]) -> Trace {
        let (tag, _) = unique_tag();
        let dir = TempDir::new(&format!("{tag}-{subcommand}"));
        let out = dir.path().join("stdout");
        let mut child = Command::new(env!("CARGO_BIN_EXE_dnslens"))
            .arg(subcommand)
            // Every stage's counters at the end, which the tests read.
            .arg("-v")
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("trace stdout file"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dnslens");
        let stderr = collect_stderr(&mut child);
        let mut trace = Trace {
            child: ChildGuard::new(child),
            out,
            stderr,
            _dir: dir,
        };
        let mut exited = None;
        let ready = wait_until(Duration::from_secs(60), || {
            exited = trace.child.wait_timeout(Duration::ZERO);
            exited.is_some() || trace.stderr().contains("tracing")
        });
        assert!(
            ready && exited.is_none(),
            "dnslens {subcommand} {args:?} did not start tracing (exit: {exited:?})\nstderr:\n{}",
            trace.stderr()
        );
        trace
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The complete JSON lines printed so far.
    pub fn events(&self) -> Vec<Value> {
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        parse_lines(complete).0
    }

    /// The dnslens process's pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Sends `signal` to dnslens (e.g. SIGKILL, then `wait_exit` to reap it).
    pub fn signal(&mut self, signal: libc::c_int) {
        self.child.signal(signal);
    }

    /// Everything printed on stdout so far, unparsed (cheap to search while it grows).
    pub fn stdout_text(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Sends SIGINT and waits for dnslens to print what it has and exit.
    pub fn stop(mut self) -> Stopped {
        self.child.signal(libc::SIGINT);
        self.finish(Duration::from_secs(10))
    }

    /// Waits up to `timeout` for dnslens to exit by itself (`--count`, `--duration`); kills it
    /// if it does not (then `Stopped::status` is None).
    pub fn wait_exit(mut self, timeout: Duration) -> Stopped {
        self.finish(timeout)
    }

    fn finish(&mut self, timeout: Duration) -> Stopped {
        let status = self.child.wait_timeout(timeout);
        if status.is_none() {
            self.child.signal(libc::SIGKILL);
            let _ = self.child.wait_timeout(Duration::from_secs(5));
        }
        // The stderr reader ends at EOF, right after the exit.
        std::thread::sleep(Duration::from_millis(50));
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        let (events, bad_lines) = parse_lines(&text);
        Stopped {
            events,
            bad_lines,
            stderr: self.stderr(),
            status,
        }
    }
}

fn parse_lines(text: &str) -> (Vec<Value>, Vec<String>) {
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => events.push(v),
            _ => bad.push(line.to_string()),
        }
    }
    (events, bad)
}

/// What the child writes on stderr (piped), gathered line by line by a thread of its own, so
/// that a chatty child never blocks on a full pipe.
pub fn collect_stderr(child: &mut std::process::Child) -> Arc<Mutex<String>> {
    let stderr = Arc::new(Mutex::new(String::new()));
    let pipe = child.stderr.take().expect("stderr pipe");
    let sink = Arc::clone(&stderr);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    stderr
}
