//! `dnslens agent`'s settings: its flags over its config file ([`super::config`]), over the
//! defaults. A value from the file that is refused is named by file, line and key.

use anyhow::bail;
use dnslens_lens::filter::Filter;

use super::{config, Learn, Settings};
use crate::flags::{AgentArgs, AgentOptions};
use crate::sink::agent::{AgentOutput, Sampler};
use crate::sink::http::{AccessFiles, TlsFiles};
use crate::sink::Output;
use crate::units::{self, Address, Fraction};

pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9253";
/// `--timeout`'s default, as `trace`'s.
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The agent's settings: flags over the config file, over the defaults. A value from the file
/// that is refused is named by file, line and key ([`config`]).
pub fn settings(args: &AgentArgs) -> anyhow::Result<Settings> {
    let args = match &args.config {
        Some(path) => args.clone().or(config::read(path)?),
        None => args.clone(),
    };
    let AgentOptions {
        metrics_address,
        metrics_tls_cert,
        metrics_tls_key,
        metrics_token_file,
        output,
        rotate_size,
        rotate_keep,
        sample,
        timeout,
        no_detect,
    } = args.agent;
    let metrics_address = match metrics_address {
        Some(Address(address)) => address,
        None => DEFAULT_METRICS_ADDRESS
            .parse()
            .expect("the default address"),
    };
    let tls = match (metrics_tls_cert, metrics_tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (Some(_), None) => {
            bail!("--metrics-tls-cert needs --metrics-tls-key: the certificate's key")
        }
        (None, Some(_)) => {
            bail!("--metrics-tls-key needs --metrics-tls-cert: the key's certificate")
        }
    };
    let path = output.filter(|p| p.as_os_str() != "-");
    let rotation = super::rotation(
        rotate_size,
        rotate_keep,
        path.is_some(),
        "--output PATH (stdout is not rotated)",
    )?;
    let detect = match no_detect {
        true => None,
        false => Some(super::detect(&args.detectors, Learn::Off)?),
    };
    Ok(Settings {
        probe: super::probe_config(&args.capture)?,
        filter: Filter::default(),
        duration: args.capture.duration.map(units::Duration::get),
        timeout: timeout.map_or(DEFAULT_TIMEOUT, units::Duration::get),
        output: Output::Agent(AgentOutput {
            metrics_address,
            access: AccessFiles {
                tls,
                token: metrics_token_file,
            },
            path,
            rotation,
            sample: Sampler::new(sample.map_or(1.0, Fraction::get)),
        }),
        pcapng: None,
        kubernetes: super::kubernetes(&args.kubernetes),
        detect,
        // The agent's end is a SIGTERM in a pod's log: every counter, for the record.
        verbose: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{Cli, Command};
    use crate::sink::rotate::Rotation;
    use clap::Parser;
    use dnslens_probe::CaptureMode;
    use std::path::PathBuf;
    use std::time::Duration;

    fn args(argv: &[&str]) -> AgentArgs {
        let cli = Cli::try_parse_from(["dnslens", "agent"].iter().chain(argv)).unwrap();
        match cli.command {
            Command::Agent(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn agent(s: &Settings) -> &AgentOutput {
        match &s.output {
            Output::Agent(a) => a,
            other => panic!("{other:?}"),
        }
    }

    /// A config file in a fresh directory, removed with it.
    struct ConfigFile(PathBuf);

    impl ConfigFile {
        fn new(name: &str, text: &str) -> ConfigFile {
            let dir =
                std::env::temp_dir().join(format!("dnslens-agent-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("agent.toml");
            std::fs::write(&path, text).unwrap();
            ConfigFile(path)
        }

        fn arg(&self) -> &str {
            self.0.to_str().unwrap()
        }

        fn dir(&self) -> &std::path::Path {
            self.0.parent().unwrap()
        }
    }

    impl Drop for ConfigFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.dir());
        }
    }

    /// The error of the flags `argv`: refused by clap (a value of the wrong form) or by the
    /// settings.
    fn error(argv: &[&str]) -> String {
        let e = match Cli::try_parse_from(["dnslens", "agent"].iter().chain(argv)) {
            Err(e) => anyhow::Error::from(e),
            Ok(_) => settings(&args(argv)).unwrap_err(),
        };
        format!("{e:#}")
    }

    #[test]
    fn defaults() {
        let s = settings(&args(&["--no-kubernetes"])).unwrap();
        let a = agent(&s);
        assert_eq!(a.metrics_address, "127.0.0.1:9253".parse().unwrap());
        assert_eq!(a.access, AccessFiles::default());
        assert_eq!((a.path.as_ref(), a.rotation), (None, None));
        assert_eq!(a.sample, Sampler::new(1.0));
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.probe, dnslens_probe::ProbeConfig::default());
        assert!(s.detect.is_some() && !s.kubernetes.enabled && s.filter.is_empty());
        assert_eq!(
            settings(&args(&["--output", "-"]))
                .map(|s| agent(&s).path.clone())
                .unwrap(),
            None
        );
    }

    #[test]
    fn the_file_fills_what_flags_leave_out_and_flags_win() {
        let f = ConfigFile::new(
            "merge",
            "metrics_address = \"0.0.0.0:9999\"\nmetrics_tls_cert = \"tls.crt\"\n\
             metrics_tls_key = \"tls.key\"\nmetrics_token_file = \"token\"\n\
             output = \"events.jsonl\"\nrotate_size = \"1MiB\"\n\
             sample = 0.25\ntimeout = \"2s\"\nport = [5353]\ncapture = \"syscall-exit\"\n\
             ring_buffer_size = \"8MiB\"\nno_kubernetes = true\nno_detect = true\n",
        );
        let s = settings(&args(&["--config", f.arg()])).unwrap();
        let a = agent(&s);
        assert_eq!(a.metrics_address, "0.0.0.0:9999".parse().unwrap());
        assert_eq!(
            a.access,
            AccessFiles {
                tls: Some(TlsFiles {
                    cert: f.dir().join("tls.crt"),
                    key: f.dir().join("tls.key"),
                }),
                token: Some(f.dir().join("token")),
            }
        );
        assert_eq!(
            a.path.as_deref(),
            Some(f.dir().join("events.jsonl").as_path())
        );
        assert_eq!(
            a.rotation,
            Some(Rotation {
                size: 1 << 20,
                keep: 5
            })
        );
        assert_eq!(a.sample, Sampler::new(0.25));
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.probe.ports, vec![53, 5353]);
        assert_eq!(s.probe.capture, CaptureMode::SyscallExit);
        assert_eq!(s.probe.ring_buffer_bytes, 8 << 20);
        assert!(!s.kubernetes.enabled && s.detect.is_none());

        let s = settings(&args(&[
            "--config",
            f.arg(),
            "--metrics-address",
            "127.0.0.1:1",
            "--output",
            "/tmp/x.jsonl",
            "--rotate-keep",
            "2",
            "--sample",
            "1",
            "--port",
            "5300",
            "--capture",
            "sockets",
        ]))
        .unwrap();
        let a = agent(&s);
        assert_eq!(a.metrics_address, "127.0.0.1:1".parse().unwrap());
        assert_eq!(
            a.path.as_deref(),
            Some(std::path::Path::new("/tmp/x.jsonl"))
        );
        assert_eq!(
            a.rotation,
            Some(Rotation {
                size: 1 << 20,
                keep: 2
            })
        );
        assert_eq!(a.sample, Sampler::new(1.0));
        assert_eq!(s.probe.ports, vec![53, 5300]);
        assert_eq!(s.probe.capture, CaptureMode::Sockets);
    }

    #[test]
    fn bad_values_name_the_flag_or_the_file_line_and_key() {
        let e = error(&["--metrics-address", "localhost"]);
        assert!(
            e.contains("--metrics-address \"localhost\"") && e.contains("127.0.0.1:9253"),
            "{e}"
        );
        let e = error(&["--output", "/tmp/x", "--rotate-size", "10XB"]);
        assert!(
            e.contains("--rotate-size \"10XB\"") && e.contains("unknown unit"),
            "{e}"
        );
        let e = error(&["--metrics-tls-cert", "/tls.crt"]);
        assert!(
            e.contains("--metrics-tls-cert needs --metrics-tls-key"),
            "{e}"
        );
        let e = error(&["--metrics-tls-key", "/tls.key"]);
        assert!(
            e.contains("--metrics-tls-key needs --metrics-tls-cert"),
            "{e}"
        );
        let e = error(&["--rotate-size", "1MiB"]);
        assert!(e.contains("give --output PATH"), "{e}");
        let e = error(&["--output", "/tmp/x", "--rotate-keep", "3"]);
        assert!(e.contains("--rotate-keep needs --rotate-size"), "{e}");
        let e = error(&["--sample", "1.5"]);
        assert!(
            e.contains("--sample 1.5") && e.contains("from 0 to 1"),
            "{e}"
        );
        let e = error(&["--timeout", "0s"]);
        assert!(e.contains("longer than zero"), "{e}");

        let bad = ConfigFile::new("bad", "output = \"/tmp/x\"\n\nrotate_size = \"10XB\"\n");
        let e = error(&["--config", bad.arg()]);
        assert!(
            e.contains(&format!(
                "agent config {}:3: rotate_size = \"10XB\"",
                bad.arg()
            )) && e.contains("unknown unit"),
            "{e}"
        );
        let unknown = ConfigFile::new("unknown", "# the agent\nsampel = 0.5\n");
        let e = error(&["--config", unknown.arg()]);
        assert!(
            e.contains(&format!(
                "agent config {}:2:1: unknown field `sampel`",
                unknown.arg()
            )),
            "{e}"
        );
        for (name, text, want) in [
            (
                "sample",
                "sample = 2\n",
                ":1: sample = 2: give the fraction",
            ),
            (
                "address",
                "metrics_address = \"9253\"\n",
                ":1: metrics_address = \"9253\"",
            ),
            (
                "mode",
                "capture = \"kprobes\"\n",
                ":1: capture = \"kprobes\": not a capture mode: one of auto, sockets",
            ),
            ("port", "\nport = [0]\n", ":2: port = [0]: 0 is not a port"),
            (
                "ring",
                "ring_buffer_size = 5000\n",
                ":1: ring_buffer_size = \"5000\"",
            ),
            ("timeout", "timeout = \"soon\"\n", ":1: timeout = \"soon\""),
        ] {
            let f = ConfigFile::new(name, text);
            let e = error(&["--config", f.arg()]);
            assert!(
                e.contains(&format!("agent config {}{want}", f.arg())),
                "{name}: {e}"
            );
        }
        let e = error(&["--config", "/nonexistent/agent.toml"]);
        assert!(
            e.contains("agent config /nonexistent/agent.toml") && e.contains("cannot read"),
            "{e}"
        );
        let detect = ConfigFile::new("detect", "detect_config = \"missing.toml\"\n");
        let e = error(&["--config", detect.arg()]);
        assert!(
            e.contains(&detect.dir().join("missing.toml").display().to_string()),
            "{e}"
        );
    }
}
