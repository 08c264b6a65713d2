//! Arbitrary bytes into the decoder; a decoded message must pass the invariant checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dnslens_wire::fuzzing::fuzz_decode(data));
