//! The seccomp profile the DaemonSet ships, `deploy/seccomp/dnslens.json` (issue 13), installed
//! as the container runtime would, before exec: `dnslens trace` under it still captures a query
//! made in a test namespace, with its executable's path, and a syscall outside the profile is
//! refused with EPERM as its `defaultAction` says.
//!
//! The OCI JSON is translated into seccompiler's (Firecracker's, pure Rust): a default action
//! and a list of allowed names. Names the profile lists for another architecture (`open` is
//! x86-64's only) are left out, as libseccomp leaves them out for the runtime.
//!
//! `root_*` needs root (it skips without, and fails in CI without it, since CI runs as root).

mod node;

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use node::dnsmasq::HOST;
use node::net::Node;
use node::resolvers::tool;
use node::{have_root, unique_tag, wait_until, ChildGuard, TempDir};
use seccompiler::{BpfProgram, TargetArch};
use serde_json::{json, Value};

/// The profile as a filter for this machine's architecture.
fn filter() -> BpfProgram {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/seccomp/dnslens.json");
    let profile: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    let errno = profile["defaultErrnoRet"]
        .as_u64()
        .unwrap_or(libc::EPERM as u64);
    let arch =
        TargetArch::try_from(std::env::consts::ARCH).expect("an architecture seccompiler knows");
    let compile = |names: &[&str]| {
        let filter: Vec<Value> = names.iter().map(|n| json!({ "syscall": n })).collect();
        let text = json!({ "dnslens": {
            "default_action": { "errno": errno },
            "filter_action": "allow",
            "filter": filter,
        }});
        seccompiler::compile_from_json(text.to_string().as_bytes(), arch)
            .map(|mut programs| programs.remove("dnslens").unwrap())
    };
    let mut names = Vec::new();
    for rule in profile["syscalls"].as_array().unwrap() {
        assert_eq!(rule["action"], "SCMP_ACT_ALLOW", "{rule}");
        assert!(
            rule.get("args").is_none(),
            "conditions are not translated: {rule}"
        );
        for name in rule["names"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            if compile(&[name]).is_ok() {
                names.push(name);
            }
        }
    }
    assert!(names.contains(&"bpf") && names.contains(&"perf_event_open"));
    compile(&names).unwrap()
}

/// `dnslens trace --json --no-detect` under the profile captures a query of dig in a test
/// namespace with dig's path; the filter is there (`Seccomp: 2` in /proc/PID/status) and refuses
/// `syslog`, which the profile does not list, in the child before exec.
#[test]
fn root_trace_captures_under_the_seccomp_profile() {
    if !have_root() {
        return;
    }
    let filter = filter();
    let node = Node::start(1);
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-seccomp"));
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_dnslens"));
    command
        .args(["trace", "--json", "--no-detect", "--duration", "60s"])
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap());
    // SAFETY: between fork and exec only the filter's prctl and seccomp calls and one syscall,
    // which allocate nothing.
    unsafe {
        command.pre_exec(move || {
            seccompiler::apply_filter(&filter).map_err(std::io::Error::other)?;
            // SYSLOG_ACTION_SIZE_BUFFER: harmless, and root may ask it without a filter.
            let size = libc::syscall(libc::SYS_syslog, 10, std::ptr::null_mut::<u8>(), 0);
            if size != -1 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
                return Err(std::io::Error::from_raw_os_error(libc::ENOTRECOVERABLE));
            }
            Ok(())
        });
    }
    let mut trace = ChildGuard::new(command.spawn().expect("dnslens under the profile"));
    let stderr = || fs::read_to_string(&err).unwrap_or_default();
    let started = wait_until(Duration::from_secs(60), || {
        stderr().contains("tracing DNS") || trace.wait_timeout(Duration::ZERO).is_some()
    });
    assert!(
        started && trace.wait_timeout(Duration::ZERO).is_none(),
        "dnslens did not start tracing under the profile:\n{}",
        stderr()
    );
    let status = fs::read_to_string(format!("/proc/{}/status", trace.pid())).unwrap();
    assert!(status.contains("\nSeccomp:\t2\n"), "{status}");

    let dig = tool("dig");
    let run = node.run("dig", 0, None, &dig, &["+tries=1", HOST, "A"]);
    run.expect_ok().expect_queries();
    let captured = || -> Vec<Value> {
        fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["kind"] == "query" && e["process"]["pid"] == run.pid)
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(15), || !captured().is_empty()),
        "dig's query (pid {}) was not captured under the profile:\n{}",
        run.pid,
        stderr()
    );
    for e in captured() {
        assert_eq!(e["process"]["exe"], dig.to_str().unwrap(), "{e}");
    }
    trace.signal(libc::SIGINT);
    let exit = trace.wait_timeout(Duration::from_secs(10));
    let said = stderr();
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}\n{said}");
    // Refused syscalls show as warnings (the capability drop) or errors.
    assert!(
        !said.contains("warning") && !said.contains("Operation not permitted"),
        "{said}"
    );
}
