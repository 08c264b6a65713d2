//! Test fixtures that several crates' tests and benches share, so that none of them includes
//! another crate's source file: a fake Kubernetes API server ([`fake_apiserver`]: crates/cluster's
//! tests and dnslens's end-to-end suites), a DNS message builder ([`dns`]: crates/wire's tests
//! and benches), hostile HTTP clients ([`http_attacks`]) and the rule for tests that need root
//! ([`have_root`]). Only dev-dependencies name this
//! crate, and it names no crate of the workspace, so a crate's tests never see a second copy of
//! its own types.

pub mod dns;
pub mod fake_apiserver;
pub mod http_attacks;

/// Whether a test that needs root may run. Without root it prints why and returns false, so the
/// test passes as skipped; with `CI` set, not being root is a failure: CI runs as root and must
/// not skip silently.
pub fn have_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "this test needs root and CI is set: CI must run the suite as root"
    );
    println!("skipped: needs root");
    false
}
