//! dnslens: which process, container and pod resolved which domain, captured with eBPF.
//!
//! The binary's library, in layers that depend one way: [`flags`] (the command line as typed)
//! -> [`settings`] (checked; with the agent's config file) -> [`run`] (the capture loop),
//! [`agent`] and [`detect`] (the replay) -> [`sink`] (every output format). `whois` reads one
//! process. `main.rs` only parses the flags, dispatches and prints the error; tests and
//! benches link to this library.

/// `eprintln!` that never panics: a reader of stderr that went away (`dnslens trace 2>&1 |
/// head`) must not end the run with a panic.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod agent;
mod cluster;
pub mod detect;
pub mod flags;
mod libc_hooks;
pub mod losses;
mod privileges;
pub mod run;
pub mod settings;
pub mod sink;
mod stop;
pub mod units;
pub mod whois;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The modules in layers: each may use only those after it, so no two import each other.
    const LAYERS: &[&str] = &[
        "agent",
        "whois",
        "run",
        "privileges",
        "libc_hooks",
        "detect",
        "cluster",
        "settings",
        "flags",
        "sink",
        "losses",
        "stop",
        "units",
    ];

    /// Every `crate::module` each file under `dir` names, with the file's own top module.
    fn uses(dir: &Path, top: Option<&str>, found: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let own = top.map_or(name.clone(), str::to_string);
            if path.is_dir() {
                uses(&path, Some(&own), found);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices("crate::") {
                let used: String = text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.push((own.clone(), used));
            }
        }
    }

    #[test]
    fn modules_depend_one_way() {
        let mut found = Vec::new();
        uses(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            None,
            &mut found,
        );
        let layer = |m: &str| LAYERS.iter().position(|l| *l == m);
        for (module, used) in found {
            if module == used || matches!(module.as_str(), "lib" | "main") {
                continue;
            }
            let (Some(from), Some(to)) = (layer(&module), layer(&used)) else {
                panic!("{module} uses crate::{used}: put both in LAYERS");
            };
            assert!(from < to, "{module} uses crate::{used}, a layer above it");
        }
    }
}
