//! The real resolvers the tests run, and the small ones built at test time from
//! `tests/resolvers/` (a static musl C program and a pure-Go program). Each is returned as the
//! canonical path of the executed file, so the expected `process.name` is its file name.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{repo_root, run_ok, which};

/// Python's `socket.getaddrinfo` (glibc underneath) on each argument; exits 2 if one failed.
pub const PYTHON_GETADDRINFO: &str = r#"
import socket, sys
status = 0
for name in sys.argv[1:]:
    try:
        addrs = sorted({ai[4][0] for ai in socket.getaddrinfo(name, None)})
        print(name, " ".join(addrs))
    except socket.gaierror as e:
        print(name, "error", e)
        status = 2
sys.exit(status)
"#;

/// Node's c-ares resolver: `node -e NODE_CARES SERVER [txt:]NAME...`; exits 2 if one failed.
pub const NODE_CARES: &str = r#"
const dns = require('dns');
const [server, ...names] = process.argv.slice(1);
const r = new dns.promises.Resolver({ timeout: 2000, tries: 2 });
r.setServers([server]);
(async () => {
  let status = 0;
  for (const arg of names) {
    const txt = arg.startsWith('txt:');
    const name = txt ? arg.slice(4) : arg;
    try {
      const res = txt ? await r.resolveTxt(name) : await r.resolve4(name);
      console.log(arg, JSON.stringify(res));
    } catch (e) {
      console.log(arg, 'error', e.code);
      status = 2;
    }
  }
  process.exit(status);
})();
"#;

/// A tool from PATH, panicking with the install hint if it is missing.
pub fn tool(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| panic!("{name} not found: run scripts/install-deps.sh"))
}

/// The Python interpreter: Debian's if installed (the one CI installs), else the first on PATH,
/// resolved through wrappers such as pyenv shims to the real executable.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let candidate =
                fs::canonicalize("/usr/bin/python3").unwrap_or_else(|_| tool("python3"));
            let out = run_ok(Command::new(&candidate).args([
                "-c",
                "import os, sys; print(os.path.realpath(sys.executable))",
            ]));
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

/// Where test-time builds go: kept between runs under target/, so rebuilds are quick.
fn build_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dnslens-e2e");
    fs::create_dir_all(&dir).expect("create build dir");
    dir
}

/// Writes `out` through a temporary name and a rename, so concurrent test processes never see
/// a half-written binary.
fn build_into(out: &Path, build: impl FnOnce(&Path)) -> PathBuf {
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    build(&tmp);
    fs::rename(&tmp, out).expect("rename build output");
    out.to_path_buf()
}

/// A copy of a test-built binary where an ordinary install would be, outside every temporary
/// directory whatever the checkout's path (CI may clone under /tmp, and the detectors flag
/// programs run from there): under the tests' state directory in /run, named with the test's
/// tag, removed on drop.
pub struct Installed(PathBuf);

impl Installed {
    pub fn new(bin: &Path, tag: &str) -> Installed {
        let dir = Path::new(super::STATE_DIR).join("bin");
        fs::create_dir_all(&dir).expect("create the installed-binaries dir");
        let name = bin
            .file_name()
            .expect("a binary's file name")
            .to_string_lossy();
        Installed(build_into(&dir.join(format!("{tag}-{name}")), |tmp| {
            fs::copy(bin, tmp).expect("copy the binary");
        }))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// `tests/resolvers/musl_resolve.c` built with `musl-gcc -static`: getaddrinfo through musl's
/// stub resolver (sendto/recvfrom).
pub fn musl_resolve() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = repo_root().join("tests/resolvers/musl_resolve.c");
        build_into(&build_dir().join("musl_resolve"), |tmp| {
            run_ok(
                Command::new(tool("musl-gcc"))
                    .args(["-static", "-O2", "-Wall", "-o"])
                    .arg(tmp)
                    .arg(&src),
            );
        })
    })
    .clone()
}

/// `tests/resolvers/goresolve` built with `CGO_ENABLED=0`: Go's own resolver (connected UDP
/// sockets, write/read). Standard library only; nothing is downloaded (GOPROXY=off).
pub fn goresolve() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = build_dir();
        let src = repo_root().join("tests/resolvers/goresolve");
        build_into(&dir.join("goresolve"), |tmp| {
            run_ok(
                Command::new(tool("go"))
                    .args(["build", "-o"])
                    .arg(tmp)
                    .arg("main.go")
                    .current_dir(&src)
                    .env("CGO_ENABLED", "0")
                    .env("GOCACHE", dir.join("gocache"))
                    .env("GOPATH", dir.join("gopath"))
                    .env("GOPROXY", "off")
                    .env("GOFLAGS", "")
                    .env("GO111MODULE", "off")
                    .env("GOTOOLCHAIN", "local"),
            );
        })
    })
    .clone()
}
