//! Builds bpf/dnslens.bpf.o with clang when clang is present, else takes the committed object.
//! The flags are read from bpf/Makefile, their one definition, so CI can compare the two.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let bpf_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bpf");
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("dnslens.bpf.o");
    for file in [
        "dnslens.bpf.c",
        "dnslens.h",
        "vmlinux_min.h",
        "dnslens.bpf.o",
    ] {
        println!("cargo:rerun-if-changed={}", bpf_dir.join(file).display());
    }
    println!("cargo:rerun-if-env-changed=CLANG");

    let makefile = std::fs::read_to_string(bpf_dir.join("Makefile")).expect("read bpf/Makefile");
    let cflags: Vec<&str> = makefile
        .lines()
        .find_map(|line| line.strip_prefix("CFLAGS := "))
        .expect("bpf/Makefile defines CFLAGS := ...")
        .split_whitespace()
        .collect();
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let built = Command::new(&clang)
        .current_dir(&bpf_dir)
        .args(&cflags)
        .args(["-c", "dnslens.bpf.c", "-o"])
        .arg(&out)
        .status();
    match built {
        Ok(status) if status.success() => strip(&out),
        Ok(status) => panic!("{clang} failed to build bpf/dnslens.bpf.c ({status})"),
        Err(e) => {
            println!(
                "cargo:warning=no clang ({e}): using the committed bpf/dnslens.bpf.o; install clang to rebuild it"
            );
            std::fs::copy(bpf_dir.join("dnslens.bpf.o"), &out).expect("copy bpf/dnslens.bpf.o");
        }
    }
}

/// Drops DWARF (keeping BTF), as bpf/Makefile does, so the object matches the committed one.
fn strip(object: &Path) {
    for strip in [
        "llvm-strip",
        "llvm-strip-14",
        "llvm-strip-15",
        "llvm-strip-16",
    ] {
        if let Ok(status) = Command::new(strip).arg("-g").arg(object).status() {
            assert!(status.success(), "{strip} -g failed");
            return;
        }
    }
    println!("cargo:warning=no llvm-strip: the BPF object keeps its DWARF");
}
