//! Arbitrary records through decode -> correlate -> enrich: no panic, bounded tables, and every
//! event's JSON line reads back (`dnslens_lens::fuzzing::fuzz_records`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dnslens_lens::fuzzing::fuzz_records(data);
});
