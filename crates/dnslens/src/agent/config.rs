//! The agent's config file (`dnslens agent --config FILE`): TOML whose keys are the agent's long
//! flags with `_` for `-`. Unknown keys and values of the wrong type are refused with the file,
//! line and key; each value keeps its position, so a value refused later (a size that is not a
//! size) is named by line too.
//!
//! tests/deploy.rs reads the ConfigMap's agent.toml with this very parser.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// The file as written: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub metrics_address: Option<Spanned<String>>,
    pub output: Option<Spanned<PathBuf>>,
    pub rotate_size: Option<Spanned<SizeText>>,
    pub rotate_keep: Option<Spanned<u32>>,
    pub sample: Option<Spanned<f64>>,
    pub timeout: Option<Spanned<String>>,
    pub no_detect: Option<Spanned<bool>>,
    pub port: Option<Spanned<Vec<u16>>>,
    pub duration: Option<Spanned<String>>,
    pub ring_buffer_size: Option<Spanned<SizeText>>,
    pub capture: Option<Spanned<String>>,
    pub detect_config: Option<Spanned<PathBuf>>,
    pub baseline: Option<Spanned<PathBuf>>,
    pub node_name: Option<Spanned<String>>,
    pub kubeconfig: Option<Spanned<PathBuf>>,
    pub no_kubernetes: Option<Spanned<bool>>,
}

/// Every key the file may have, in the order of the flags (the parser's own errors list them).
pub const KEYS: &[&str] = &[
    "metrics_address",
    "output",
    "rotate_size",
    "rotate_keep",
    "sample",
    "timeout",
    "no_detect",
    "port",
    "duration",
    "ring_buffer_size",
    "capture",
    "detect_config",
    "baseline",
    "node_name",
    "kubeconfig",
    "no_kubernetes",
];

/// A size as text (`"100MiB"`), or a bare number of bytes, which is kept as its digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeText(pub String);

impl<'de> Deserialize<'de> for SizeText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SizeText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"100MiB\", or a number of bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SizeText, E> {
                Ok(SizeText(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SizeText, E> {
                Ok(SizeText(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Why the file could not be used: the file, the line and column, and the TOML parser's words
/// (which name the key).
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "agent config {}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for FileError {}

/// A parsed file with its text, to name the line of a value.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub text: String,
    pub file: AgentFile,
}

impl Loaded {
    pub fn read(path: &Path) -> Result<Loaded, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read it: {e}; give --config an existing TOML file"),
        })?;
        let file = parse(&text, path)?;
        Ok(Loaded {
            path: path.to_path_buf(),
            text,
            file,
        })
    }

    /// `FILE:LINE: key`, for a value of `key` found at `span`.
    pub fn origin(&self, key: &str, span: std::ops::Range<usize>) -> String {
        let (line, _) = line_column(&self.text, span.start);
        format!("agent config {}:{line}: {key}", self.path.display())
    }

    /// A relative path in the file is taken from the file's directory, as Prometheus takes its
    /// rule files, so the file means the same whatever the agent's working directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() && path != Path::new("-") => dir.join(path),
            _ => path.to_path_buf(),
        }
    }
}

/// Parses the text of an agent config; `origin` names it in errors.
pub fn parse(text: &str, origin: &Path) -> Result<AgentFile, FileError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
        FileError {
            path: origin.to_path_buf(),
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    })
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
"#,
            Path::new("agent.toml"),
        )
        .unwrap();
        assert_eq!(KEYS.len(), 16, "every key is set above");
        assert_eq!(f.rotate_size.unwrap().into_inner().0, "100MiB");
        assert_eq!(f.ring_buffer_size.unwrap().into_inner().0, "16777216");
        assert_eq!(f.port.unwrap().into_inner(), vec![5353, 5300]);
        assert_eq!(f.sample.unwrap().into_inner(), 0.1);
        assert_eq!(f.rotate_keep.unwrap().into_inner(), 3);
        assert!(f.no_kubernetes.unwrap().into_inner());
        // A whole number is a fraction too.
        assert_eq!(
            parse("sample = 1", Path::new("a"))
                .unwrap()
                .sample
                .unwrap()
                .into_inner(),
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
        let e = error("port = 5353\n");
        assert!(
            e.contains(":1:8") && e.contains("expected a sequence"),
            "{e}"
        );
        let e = error("rotate_size = true\n");
        assert!(e.contains("a size such as"), "{e}");
        let e = error("output = \n");
        assert!(e.contains("agent.toml:1:"), "{e}");
        let e = error("[output]\npath = \"x\"\n");
        assert!(e.contains("agent.toml:1:"), "{e}");
    }

    #[test]
    fn values_know_their_line_and_relative_paths_follow_the_file() {
        let text = "output = \"-\"\nrotate_size = \"10XB\"\n".to_string();
        let file = parse(&text, Path::new("/etc/dnslens/agent.toml")).unwrap();
        let size = file.rotate_size.as_ref().unwrap();
        let loaded = Loaded {
            path: PathBuf::from("/etc/dnslens/agent.toml"),
            text,
            file: AgentFile::default(),
        };
        assert_eq!(
            loaded.origin("rotate_size", size.span()),
            "agent config /etc/dnslens/agent.toml:2: rotate_size"
        );
        assert_eq!(
            loaded.resolve(Path::new("detect.toml")),
            Path::new("/etc/dnslens/detect.toml")
        );
        assert_eq!(loaded.resolve(Path::new("/x/y")), Path::new("/x/y"));
        assert_eq!(loaded.resolve(Path::new("-")), Path::new("-"));
    }

    #[test]
    fn keys_list_every_field() {
        for key in KEYS {
            // Each key is known: a table there is refused for its type, not as unknown.
            let e = error(&format!("{key} = {{}}\n"));
            assert!(!e.contains("unknown field"), "{key}: {e}");
        }
    }
}
