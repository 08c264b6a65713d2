//! Arbitrary bytes as a chopped, lossy TCP capture; every stream byte must be accounted for.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dnslens_wire::fuzzing::fuzz_tcp_framer(data));
