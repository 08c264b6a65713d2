//! `dnslens top` on the real kernel, driven in tmux as a person would: a Python workload in a
//! pod cgroup of the test node resolves through glibc (the namespace's resolv.conf, dnsmasq in
//! the node) 20 times a second; the screen (`capture-pane`) must show the pod's row at a
//! plausible rate, `g` must show the process, the sort keys must move the header's marker and
//! reorder the rows, and `q` must end dnslens with status 0 and the terminal restored (cooked
//! mode, main screen, cursor shown).
//!
//! Needs root (skipped without it, a failure in CI) and tmux. Everything is named with the
//! test's unique tag: the tmux server has a socket of its own (`-L`), killed on drop with what
//! it runs, whatever happened.

mod node;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use node::cgroup::{Driver, Hierarchies, PodCgroup};
use node::dnsmasq::HOST;
use node::net::{comm_of, Node};
use node::resolvers::python;
use node::{have_root, have_tool, run_ok, unique_tag};

/// Resolves NAME (A only: one query per lookup) RATE times a second for SECONDS through
/// glibc's getaddrinfo; prints how many lookups succeeded.
const PACED_LOOKUPS: &str = r#"
import socket, sys, time
name, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
start, done, ok = time.monotonic(), 0, 0
while time.monotonic() - start < seconds:
    try:
        socket.getaddrinfo(name, None, socket.AF_INET)
        ok += 1
    except OSError:
        pass
    done += 1
    delay = start + done / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print("resolved", ok, "of", done)
"#;

const WIDTH: u16 = 120;
const HEIGHT: u16 = 30;

/// What the pane's shell prints when dnslens has exited, before its status.
const EXITED: &str = "dnslens exited with status";
/// The line the pane's shell prints last, after the exit status: the terminal's modes.
const TERMINAL: &str = "terminal: ";

/// A tmux server of this test's own (no configuration read), running one shell command in a
/// detached session of a fixed size. The server, and with it anything still running in it,
/// is killed on drop.
struct Tmux {
    socket: String,
    /// The server's socket file, which kill-server leaves.
    socket_path: String,
}

impl Tmux {
    fn start(tag: &str, command: &str) -> Tmux {
        let mut tmux = Tmux {
            socket: tag.to_string(),
            socket_path: String::new(),
        };
        let (width, height) = (WIDTH.to_string(), HEIGHT.to_string());
        run_ok(&mut tmux.command(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            tag,
            "-x",
            &width,
            "-y",
            &height,
            command,
        ]));
        tmux.socket_path = tmux.format("#{socket_path}");
        tmux
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("tmux");
        // -u: the screen holds UTF-8 (the sort marker) whatever the test's locale.
        cmd.args(["-u", "-L", &self.socket])
            .args(args)
            .env_remove("TMUX");
        cmd
    }

    fn output(&self, args: &[&str]) -> String {
        let out: Output = run_ok(&mut self.command(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.output(&["capture-pane", "-p", "-t", &self.socket])
    }

    /// The main screen with its scrolled-off lines (the view's alternate screen has none).
    fn history(&self) -> String {
        self.output(&["capture-pane", "-p", "-J", "-S", "-", "-t", &self.socket])
    }

    fn keys(&self, keys: &str) {
        self.output(&["send-keys", "-t", &self.socket, keys]);
    }

    fn format(&self, format: &str) -> String {
        let out = self.output(&["display-message", "-p", "-t", &self.socket, format]);
        out.trim().to_string()
    }

    /// Polls the screen every 100 ms until `ok` holds, `timeout` at most; panics with `what`
    /// and the last screen if it never does.
    fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                !screen.contains(TERMINAL) && Instant::now() < deadline,
                "{what}: not on screen within {timeout:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command(&["kill-server"]).output();
        if !self.socket_path.is_empty() {
            let _ = std::fs::remove_file(&self.socket_path);
        }
    }
}

/// The queries a second on the row whose name column reads `name` (the first figure after
/// it), if the row is on the screen.
fn rate_of(screen: &str, name: &str) -> Option<f64> {
    screen.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        words.position(|w| w.trim_start_matches('>') == name)?;
        words.find_map(|w| w.parse().ok())
    })
}

/// The header line of the table.
fn header(screen: &str) -> &str {
    screen
        .lines()
        .find(|l| l.contains("Q/S") && l.contains("TOTAL"))
        .unwrap_or("")
}

/// The process names of the table's rows, top to bottom (process view, at least WIDE columns:
/// a marker column, PID in 7, a space, PROCESS in 15).
fn process_names(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip_while(|l| !l.contains("PROCESS"))
        .skip(1)
        .take_while(|l| !l.starts_with('┌'))
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.chars()
                .skip(9)
                .take(15)
                .collect::<String>()
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn root_top_in_tmux_shows_a_pods_rate_switches_grouping_and_sort_and_restores_the_terminal() {
    if !have_root() || !have_tool("tmux") {
        return;
    }
    let started = Instant::now();
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let (tag, _) = unique_tag();
    let dnslens = Path::new(env!("CARGO_BIN_EXE_dnslens"));
    // The shell waits for dnslens and says how it ended and whether the terminal is back in
    // cooked mode (tmux's own reaping of a pane's process can miss a child's exit: its
    // utempter helper briefly takes SIGCHLD). Should this test be killed before its guards
    // run, `timeout` stops dnslens and the pane ends after 10 minutes.
    let tmux = Tmux::start(
        &tag,
        &format!(
            "timeout --foreground 120 '{}' top --no-kubernetes --interval 1s; \
             echo \"{EXITED} $?\"; \
             modes=$(stty -a | tr ' ;' '\\n\\n'); \
             echo \"$modes\" | grep -qx icanon && echo \"$modes\" | grep -qx echo && \
             echo 'terminal: cooked' || echo 'terminal: raw'; exec sleep 600",
            dnslens.display()
        ),
    );
    tmux.wait_for("the view", Duration::from_secs(60), |s| {
        s.starts_with("dnslens top  by pod")
    });

    let python = python();
    let name = comm_of(&python);
    std::thread::scope(|scope| {
        let workload = scope.spawn(|| {
            let args = ["-c", PACED_LOOKUPS, HOST, "20", "12"];
            node.run("paced-lookups", 0, Some(&pod), &python, &args)
        });

        // Over the window (10 s, or since dnslens started), 20 lookups a second.
        let screen = tmux.wait_for("the pod's row at 10-40 q/s", Duration::from_secs(20), |s| {
            rate_of(s, &pod.pod_uid).is_some_and(|q| (10.0..=40.0).contains(&q))
        });
        assert!(header(&screen).contains("POD") && header(&screen).contains("Q/S▼"));

        tmux.keys("g");
        let screen = tmux.wait_for("the process view", Duration::from_secs(5), |s| {
            s.starts_with("dnslens top  by process")
                && rate_of(s, &name).is_some_and(|q| (10.0..=40.0).contains(&q))
        });
        // Wide enough for the POD column: the process is placed in its pod.
        let row = screen.lines().find(|l| l.contains(&name)).unwrap_or("");
        assert!(row.contains(&pod.pod_uid[..20]), "{row}\n{screen}");

        tmux.keys(">");
        tmux.wait_for(
            "sorted by NX% (largest first)",
            Duration::from_secs(5),
            |s| header(s).contains("NX%▼") && !header(s).contains("Q/S▼"),
        );
        tmux.keys("r");
        tmux.wait_for("NX% reversed", Duration::from_secs(5), |s| {
            header(s).contains("NX%▲")
        });
        tmux.keys("<");
        tmux.keys("<");
        let screen = tmux.wait_for("sorted by name", Duration::from_secs(5), |s| {
            header(s).contains("PROCESS▲")
        });
        let names = process_names(&screen);
        let mut sorted = names.clone();
        sorted.sort();
        assert!(
            names.contains(&name) && names == sorted,
            "{names:?}\n{screen}"
        );

        let run = workload.join().expect("workload thread");
        run.expect_ok().expect_output("resolved").expect_queries();
    });

    tmux.keys("q");
    let quit = Instant::now();
    // Generous: detaching the hooks waits for the kernel, slow when the host is busy.
    // The shell says the exit status, then the terminal's modes: wait for the last line.
    let screen = tmux.wait_for("dnslens's exit", Duration::from_secs(30), |s| {
        s.contains(TERMINAL)
    });
    let exit = quit.elapsed();
    assert!(screen.contains(&format!("{EXITED} 0\n")), "{screen}");
    // Out of raw mode, back on the main screen, the cursor shown: the announcement before the
    // view and the counters after it, no trace of the view.
    assert!(screen.contains("terminal: cooked"), "{screen}");
    assert_eq!(
        tmux.format("#{alternate_on} #{cursor_flag}"),
        "0 1",
        "{screen}"
    );
    let history = tmux.history();
    assert!(
        // The end's line says what was lost, in one line or, after a loss, in the counters.
        history.contains("dnslens: tracing DNS") && history.contains(" lost"),
        "{history}"
    );
    assert!(!history.contains("Q/S"), "{history}");
    println!(
        "top in tmux: {:?} in all, exit {exit:?} after q",
        started.elapsed()
    );
}
