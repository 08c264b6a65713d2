//! What the command line says when something is off (issue 14): an error names its cause once,
//! the agent run without privileges says why before announcing anything, and a replay says
//! what it cannot judge. No root needed, no BPF loaded, no network.

mod node;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use node::{have_root, unique_tag, TempDir};

fn dnslens(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dnslens"));
    c.args(args);
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `--baseline /nonexistent.json: ... (os error 2): ... (os error 2)` printed the io error
/// twice: once in the message, once as its source.
#[test]
fn an_error_names_its_cause_once() {
    for args in [
        ["trace", "--baseline", "/nonexistent/dnslens-baseline.json"],
        [
            "trace",
            "--detect-config",
            "/nonexistent/dnslens-detect.toml",
        ],
    ] {
        let out = dnslens(&args).output().expect("run dnslens");
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert_eq!(said.lines().count(), 1, "{args:?}: one line: {said}");
        assert_eq!(said.matches("(os error 2)").count(), 1, "{args:?}: {said}");
        assert!(said.contains(args[2]), "{args:?} names the file: {said}");
    }
}

/// The agent announced `metrics on http://...` and then failed to load BPF: without the
/// privileges it says only why.
#[test]
fn the_agent_without_privileges_says_why_before_announcing() {
    let mut agent = dnslens(&[
        "agent",
        "--metrics-address",
        "127.0.0.1:0",
        "--no-kubernetes",
        "--output",
        "-",
    ]);
    if have_root() {
        agent.uid(65534).gid(65534);
    }
    let out = agent.output().expect("run dnslens agent");
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("loading BPF needs root"), "{said}");
    assert!(
        !said.contains("metrics on"),
        "announced before failing: {said}"
    );
}

/// `detect --input` said "0 alerts" of a trace that raised resolver_bypass alerts live: it
/// says which detectors a replay cannot judge.
#[test]
fn a_replay_says_what_it_cannot_judge() {
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-replay"));
    let input = dir.path().join("empty.jsonl");
    std::fs::write(&input, "").expect("write the trace");
    let out = dnslens(&["detect", "--input"])
        .arg(&input)
        .output()
        .expect("run dnslens detect");
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    for detector in ["resolver_bypass", "unknown_binary", "unresolved_connect"] {
        assert!(
            said.lines()
                .any(|l| l.contains("a replay cannot") && l.contains(detector)),
            "{detector}: {said}"
        );
    }
}

/// `dnslens trace 2>&1 | head -3` ended in a panic (exit 101, "failed printing to stderr") once
/// head had gone: a reader of stderr that went away must not turn a message into a crash.
#[test]
fn a_closed_stderr_is_no_panic() {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just made by pipe(2) and are owned here alone.
    let (read, write) = unsafe {
        use std::os::fd::{FromRawFd, OwnedFd};
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    drop(read);
    let out = dnslens(&["detect", "--input", "/nonexistent/dnslens-trace.jsonl"])
        .stderr(std::process::Stdio::from(write))
        .output()
        .expect("run dnslens");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
