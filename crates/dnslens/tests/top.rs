//! `dnslens top` on the real kernel, driven in tmux as a person would: a Python workload in a
//! pod cgroup of the test node resolves through glibc (the namespace's resolv.conf, dnsmasq in
//! the node) 20 times a second; the screen (`capture-pane`) must show the pod's row at a
//! plausible rate, with as many lookups a second of one query each, `g` must show the process, the sort keys must move the header's marker and
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

/// The figure under `title` on the row whose name column reads `name`. Every figure is one word
/// (`-` for none), so the row's words and the header's line up from the right.
fn figure(screen: &str, name: &str, title: &str) -> Option<String> {
    let titles: Vec<&str> = header(screen)
        .split_whitespace()
        .map(|w| w.trim_end_matches(['▼', '▲']))
        .collect();
    let from_right = titles.len() - titles.iter().position(|&t| t == title)?;
    let row = screen.lines().find(|line| {
        line.split_whitespace()
            .any(|w| w.trim_start_matches('>') == name)
    })?;
    let words: Vec<&str> = row.split_whitespace().collect();
    Some(words.get(words.len().checked_sub(from_right)?)?.to_string())
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

/// Starts `dnslens top` in a tmux session of its own and waits for the view. The shell waits
/// for dnslens and says how it ended and whether the terminal is back in cooked mode (tmux's
/// own reaping of a pane's process can miss a child's exit: its utempter helper briefly takes
/// SIGCHLD). Should the test be killed before its guards run, `timeout` stops dnslens and the
/// pane ends after 10 minutes.
fn start_top() -> Tmux {
    let (tag, _) = unique_tag();
    let dnslens = Path::new(env!("CARGO_BIN_EXE_dnslens"));
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
    tmux
}

/// Presses `q` and waits for dnslens's exit, which must be successful; returns the screen.
fn quit_top(tmux: &Tmux) -> String {
    tmux.keys("q");
    // Generous: detaching the hooks waits for the kernel, slow when the host is busy.
    // The shell says the exit status, then the terminal's modes: wait for the last line.
    let screen = tmux.wait_for("dnslens's exit", Duration::from_secs(30), |s| {
        s.contains(TERMINAL)
    });
    assert!(screen.contains(&format!("{EXITED} 0\n")), "{screen}");
    screen
}

#[test]
fn root_top_in_tmux_shows_a_pods_rate_switches_grouping_and_sort_and_restores_the_terminal() {
    if !have_root() || !have_tool("tmux") {
        return;
    }
    let started = Instant::now();
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let tmux = start_top();

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
        // Issue 16: as many lookups, of one query each (A only), with their p99.
        let number = |s: &str, title| figure(s, &pod.pod_uid, title)?.parse::<f64>().ok();
        let screen = tmux.wait_for(
            "the pod's lookups at 10-40 a second, 1 query each",
            Duration::from_secs(10),
            |s| {
                number(s, "LK/S").is_some_and(|l| (10.0..=40.0).contains(&l))
                    && number(s, "Q/LK").is_some_and(|q| (0.9..=1.1).contains(&q))
            },
        );
        let p99 = figure(&screen, &pod.pod_uid, "LKP99").unwrap_or_default();
        assert!(
            ["us", "ms"].iter().any(|unit| p99.ends_with(unit)),
            "lookup p99 {p99:?}:\n{screen}"
        );
        println!(
            "top in tmux: the pod's row {}",
            screen
                .lines()
                .find(|l| l.contains(&pod.pod_uid))
                .unwrap_or("")
                .trim_end()
        );

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

    let quit = Instant::now();
    let screen = quit_top(&tmux);
    let exit = quit.elapsed();
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

/// The table row marked selected (`>`), by its name, and whether it is the table's first row.
fn selected_row(screen: &str) -> Option<(String, bool)> {
    let rows: Vec<&str> = screen
        .lines()
        .skip_while(|l| *l != header(screen))
        .skip(1)
        .take_while(|l| !l.starts_with('┌'))
        .collect();
    let at = rows.iter().position(|l| l.starts_with('>'))?;
    let name = rows[at].trim_start_matches('>').split_whitespace().next()?;
    Some((name.to_string(), at == 0))
}

/// Issue 14: `?` shows what the keys and columns mean and closes again, `a` shows the alerts in
/// full, the row shown selected (the busiest, chosen by no key) stays selected when `r`
/// reverses the order (it used to give way to the new first row), and on exit top says nothing
/// of events printed (it prints none).
#[test]
fn root_top_in_tmux_help_key_and_the_selection_kept_across_a_sort() {
    if !have_root() || !have_tool("tmux") {
        return;
    }
    let node = Node::start(1);
    let (busy, quiet) = (
        PodCgroup::new(Driver::Systemd, Hierarchies::Both),
        PodCgroup::new(Driver::Systemd, Hierarchies::Both),
    );
    let tmux = start_top();

    tmux.keys("?");
    tmux.wait_for("the help", Duration::from_secs(5), |s| {
        s.contains("help: ? or Esc closes")
            && s.contains("NX%     of the responses, the share that was NXDOMAIN")
            && s.contains("over the last 10 s")
            && header(s).is_empty()
    });
    tmux.keys("?");
    tmux.wait_for("the table again", Duration::from_secs(5), |s| {
        !s.contains("help: ?") && header(s).contains("POD")
    });
    tmux.keys("a");
    tmux.wait_for("the alerts in full", Duration::from_secs(5), |s| {
        s.contains("newest first: ↑ ↓ scroll, Esc closes")
    });
    tmux.keys("Escape");
    tmux.wait_for("the table after Esc", Duration::from_secs(5), |s| {
        !s.contains("newest first") && header(s).contains("POD")
    });

    let python = python();
    std::thread::scope(|scope| {
        let workloads = [(&busy, "20"), (&quiet, "4")].map(|(pod, rate)| {
            let python = &python;
            let node = &node;
            scope.spawn(move || {
                let args = ["-c", PACED_LOOKUPS, HOST, rate, "12"];
                node.run("paced-lookups", 0, Some(pod), python, &args)
            })
        });
        let screen = tmux.wait_for("both pods' rows", Duration::from_secs(20), |s| {
            rate_of(s, &busy.pod_uid).is_some_and(|q| q >= 10.0)
                && rate_of(s, &quiet.pod_uid).is_some_and(|q| q > 0.0)
        });
        let (selected, first) = selected_row(&screen).expect("a row is selected");
        assert!(
            first,
            "the first row is selected until one is chosen:\n{screen}"
        );
        tmux.keys("r");
        let screen = tmux.wait_for("Q/S reversed", Duration::from_secs(5), |s| {
            header(s).contains("Q/S▲")
        });
        let (after, first) = selected_row(&screen).expect("a row is selected");
        assert_eq!(after, selected, "the selection moved:\n{screen}");
        assert!(!first, "the busiest row is no longer first:\n{screen}");
        for run in workloads {
            let run = run.join().expect("workload thread");
            run.expect_ok().expect_output("resolved").expect_queries();
        }
    });

    quit_top(&tmux);
    let history = tmux.history();
    // What it captured, not what it printed: it prints no events.
    assert!(history.contains(" captured, "), "{history}");
    assert!(!history.contains("printed"), "{history}");
}
