//! The records fuzz target (`dnslens_lens::fuzzing::fuzz_records`) on stable: the golden
//! capture's records as they are, then its DNS payloads cut, flipped, spliced and framed in
//! records of every kind, and plain noise. The fuzz project runs the same body for longer
//! (fuzz/README.md).

use std::path::Path;

use dnslens_abi::{EventHeader, RECORD_DNS};
use dnslens_lens::fuzzing::fuzz_records;
use dnslens_testkit::dns::Rng;

/// The golden capture's records (tests/golden/capture.bin: a u32 length, then the bytes).
fn golden_records() -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/capture.bin");
    let file = std::fs::read(&path).expect("tests/golden/capture.bin");
    let mut records = Vec::new();
    let mut rest = &file[..];
    while let [a, b, c, d, tail @ ..] = rest {
        let len = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
        records.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    records
}

/// A chunk of the fuzz input: control byte, u16 length, bytes.
fn chunk(out: &mut Vec<u8>, control: u8, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(u16::MAX.into())];
    out.push(control);
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

#[test]
fn the_golden_capture_passes_as_it_is() {
    let mut input = Vec::new();
    for record in golden_records() {
        // Records are longer than a chunk may be only past 64 KiB: none of these.
        chunk(&mut input, 0, &record);
    }
    assert_eq!(
        fuzz_records(&input),
        45 - 1,
        "the golden lines, less the alert"
    );
}

#[test]
fn mutated_payloads_and_noise_neither_panic_nor_grow() {
    let header_len = std::mem::size_of::<EventHeader>();
    let payloads: Vec<Vec<u8>> = golden_records()
        .into_iter()
        .filter(|r| r.len() > header_len && r[..4] == RECORD_DNS.to_ne_bytes())
        .map(|r| r[header_len..].to_vec())
        .collect();
    assert!(payloads.len() > 20, "the golden capture has DNS payloads");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut events = 0;
    for _ in 0..2_000 {
        let mut input = Vec::new();
        for _ in 0..1 + rng.below(24) {
            let mut bytes = payloads[rng.below(payloads.len())].clone();
            match rng.below(5) {
                0 => bytes.truncate(rng.below(bytes.len() + 1)),
                1 => {
                    for _ in 0..1 + rng.below(8) {
                        let at = rng.below(bytes.len());
                        bytes[at] ^= 1 << rng.below(8);
                    }
                }
                2 => {
                    let other = &payloads[rng.below(payloads.len())];
                    let at = rng.below(bytes.len());
                    bytes.truncate(at);
                    bytes.extend_from_slice(&other[rng.below(other.len())..]);
                }
                3 => {
                    let len = rng.below(600);
                    bytes = rng.bytes(len);
                }
                _ => {}
            }
            // Mostly well-formed records around the bytes, sometimes the bytes as a record.
            let control = match rng.below(10) {
                0 => 0,
                1 => 0xff,
                _ => 1 + rng.below(0xfe) as u8,
            };
            chunk(&mut input, control, &bytes);
        }
        events += fuzz_records(&input);
    }
    assert!(
        events > 5_000,
        "the inputs reach the pairing: {events} events"
    );
}
