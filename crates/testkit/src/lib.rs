//! Test fixtures that several crates' tests and benches share, so that none of them includes
//! another crate's source file: a fake Kubernetes API server ([`fake_apiserver`]: crates/cluster's
//! tests and dnslens's end-to-end suites), a DNS message builder ([`dns`]: crates/wire's tests
//! and benches) and hostile HTTP clients ([`http_attacks`]). Only dev-dependencies name this
//! crate, and it names no crate of the workspace, so a crate's tests never see a second copy of
//! its own types.

pub mod dns;
pub mod fake_apiserver;
pub mod http_attacks;
