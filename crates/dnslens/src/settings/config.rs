//! The agent's config file (`dnslens agent --config FILE`): TOML whose keys are the agent's long
//! flags with `_` for `-`, read into the very structs the flags fill ([`AgentArgs`]), so a flag
//! is a key with nothing to keep in step by hand. An unknown key, a value of the wrong type and
//! a value its unit refuses (a size that is not a size) are named by file, line and key.
//!
//! Each group of flags is read from the whole text: serde's `flatten` would lose the values'
//! positions, and so the lines of errors. tests/deploy.rs reads the ConfigMap's agent.toml with
//! this very parser.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::de::DeserializeOwned;
use toml::de::DeTable;

use crate::flags::AgentArgs;
use crate::units::{self, DnstapAddress};

/// Why the file could not be used: the file, the line (and column, for what the TOML parser
/// refused) and the words that name the key.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    /// `None` when the file could not be read.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "agent config {}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(column) = self.column {
            write!(f, ":{column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

/// Every key the file may have: the agent's flags but `--config`, in their order.
pub fn keys() -> Vec<String> {
    AgentArgs::augment_args(clap::Command::new("agent"))
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|&long| long != "config")
        .map(|long| long.replace('-', "_"))
        .collect()
}

/// Reads the file: its settings, relative paths taken from the file's directory.
pub fn read(path: &Path) -> Result<AgentArgs, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        path: path.to_path_buf(),
        line: None,
        column: None,
        message: format!("cannot read it: {e}; give --config an existing TOML file"),
    })?;
    let mut args = parse(&text, path)?;
    let d = &mut args.detectors;
    for p in [
        &mut args.agent.output,
        &mut args.agent.metrics_tls_cert,
        &mut args.agent.metrics_tls_key,
        &mut args.agent.metrics_token_file,
        &mut d.detect_config,
        &mut d.baseline,
        &mut args.kubernetes.kubeconfig,
    ] {
        if let Some(p) = p.as_mut() {
            *p = resolve(path, p);
        }
    }
    if let Some(DnstapAddress::Unix(p) | DnstapAddress::File(p)) = &mut args.dnstap.dnstap {
        *p = resolve(path, p);
    }
    Ok(args)
}

/// A relative path in the file is taken from the file's directory, as Prometheus takes its
/// rule files, so the file means the same whatever the agent's working directory.
pub fn resolve(file: &Path, path: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if path.is_relative() && path != Path::new("-") => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// Parses the text of an agent config, values as written; `origin` names it in errors.
pub fn parse(text: &str, origin: &Path) -> Result<AgentArgs, FileError> {
    let table = DeTable::parse(text).map_err(|e| toml_error(text, origin, &e))?;
    let keys = keys();
    for (key, _) in table.get_ref() {
        if !keys.iter().any(|k| k == key.get_ref().as_ref()) {
            let expected: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
            return Err(FileError {
                message: format!(
                    "unknown field `{}`, expected one of {}",
                    key.get_ref(),
                    expected.join(", ")
                ),
                ..at(text, origin, key.span().start, true)
            });
        }
    }
    Ok(AgentArgs {
        config: None,
        agent: read_group(text, origin, &table)?,
        capture: read_group(text, origin, &table)?,
        dnstap: read_group(text, origin, &table)?,
        detectors: read_group(text, origin, &table)?,
        kubernetes: read_group(text, origin, &table)?,
    })
}

/// One group of the flags, from the whole text (keys of other groups are ignored here: every
/// key was checked above).
fn read_group<T: DeserializeOwned>(
    text: &str,
    origin: &Path,
    table: &toml::Spanned<DeTable<'_>>,
) -> Result<T, FileError> {
    toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start);
        let refused = units::refused_value(e.message());
        // The key whose value holds the error.
        let key = table
            .get_ref()
            .iter()
            .find(|(_, v)| v.span().contains(&start) || v.span().start == start);
        match (refused, key) {
            (Some(value), Some((key, _))) => FileError {
                message: format!("{} = {value}", key.get_ref()),
                ..at(text, origin, start, false)
            },
            _ => toml_error(text, origin, &e),
        }
    })
}

fn toml_error(text: &str, origin: &Path, e: &toml::de::Error) -> FileError {
    FileError {
        message: e.message().trim_end().to_string(),
        ..at(text, origin, e.span().map_or(0, |s| s.start), true)
    }
}

/// An error at byte `at` of the text, without its message yet.
fn at(text: &str, origin: &Path, at: usize, column: bool) -> FileError {
    let (line, col) = line_column(text, at);
    FileError {
        path: origin.to_path_buf(),
        line: Some(line),
        column: column.then_some(col),
        message: String::new(),
    }
}

/// 1-based line and column of byte `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{ByteSize, RingBufferSize};

    fn error(text: &str) -> String {
        parse(text, Path::new("/etc/dnslens/agent.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_key_parses() {
        let f = parse(
            r#"
metrics_address = "0.0.0.0:9253"
metrics_tls_cert = "tls.crt"
metrics_tls_key = "tls.key"
metrics_token_file = "/etc/dnslens/token"
output = "/var/log/dnslens/events.jsonl"
rotate_size = "100MiB"
rotate_keep = 3
sample = 0.1
timeout = "2s"
no_detect = false
port = [5353, 5300]
duration = "1h"
ring_buffer_size = 16777216
capture = "sockets"
detect_config = "detect.toml"
baseline = "/var/lib/dnslens/baseline.json"
node_name = "node-1"
kubeconfig = "/etc/kube.conf"
no_kubernetes = true
dnstap = "file:events.fstrm"
dnstap_rotate_size = "1GiB"
dnstap_rotate_keep = 2
"#,
            Path::new("agent.toml"),
        )
        .unwrap();
        assert_eq!(keys().len(), 22, "every key is set above");
        assert_eq!(
            f.dnstap.dnstap,
            Some(DnstapAddress::File("events.fstrm".into())),
            "as written; read() takes it from the file's directory"
        );
        assert_eq!(f.agent.rotate_size, Some(ByteSize(100 << 20)));
        assert_eq!(f.capture.ring_buffer_size, Some(RingBufferSize(16777216)));
        assert_eq!(f.capture.ports, vec![5353, 5300]);
        // One port, as the flag is given once.
        let one = parse("port = 5300\n", Path::new("a")).unwrap();
        assert_eq!(one.capture.ports, vec![5300]);
        assert!(error("port = 0\n").contains("0 is not a port"));
        assert_eq!(f.agent.sample.unwrap().get(), 0.1);
        assert_eq!(f.agent.rotate_keep.unwrap(), 3);
        assert!(f.kubernetes.no_kubernetes);
        // A whole number is a fraction too.
        assert_eq!(
            parse("sample = 1", Path::new("a"))
                .unwrap()
                .agent
                .sample
                .unwrap()
                .get(),
            1.0
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_file_line_and_key() {
        let e = error("output = \"-\"\n\nrotate_sise = \"1MiB\"\n");
        assert!(
            e.starts_with("agent config /etc/dnslens/agent.toml:3:1: unknown field `rotate_sise`"),
            "{e}"
        );
        assert!(
            e.contains("expected one of `metrics_address`"),
            "the keys are listed: {e}"
        );
        let e = error("sample = \"half\"\n");
        assert!(
            e.contains("agent.toml:1:10") && e.contains("expected f64"),
            "{e}"
        );
        let e = error("port = \"dns\"\n");
        assert!(
            e.contains(":1:8") && e.contains("expected a port or a list of ports"),
            "{e}"
        );
        let e = error("port = 70000\n");
        assert!(e.contains("expected a port or a list of ports"), "{e}");
        let e = error("rotate_size = true\n");
        assert!(e.contains("a size such as"), "{e}");
        let e = error("output = \n");
        assert!(e.contains("agent.toml:1:"), "{e}");
        let e = error("[output]\npath = \"x\"\n");
        assert!(e.contains("agent.toml:1:"), "{e}");
    }

    #[test]
    fn values_know_their_line_and_relative_paths_follow_the_file() {
        let e = error("output = \"-\"\nrotate_size = \"10XB\"\n");
        assert!(
            e.starts_with("agent config /etc/dnslens/agent.toml:2: rotate_size = \"10XB\""),
            "{e}"
        );
        let file = Path::new("/etc/dnslens/agent.toml");
        assert_eq!(
            resolve(file, Path::new("detect.toml")),
            Path::new("/etc/dnslens/detect.toml")
        );
        assert_eq!(resolve(file, Path::new("/x/y")), Path::new("/x/y"));
        assert_eq!(resolve(file, Path::new("-")), Path::new("-"));
    }

    #[test]
    fn keys_list_every_field() {
        for key in keys() {
            // Each key is known, and read by a group: a table there is refused for its type,
            // neither as unknown nor ignored.
            let e = error(&format!("{key} = {{}}\n"));
            assert!(!e.contains("unknown field"), "{key}: {e}");
        }
    }
}
