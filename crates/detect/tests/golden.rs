//! Golden test: raw ring-buffer records of a real capture (tests/golden/capture.bin, made by
//! scripts/record-golden.sh) through decode -> correlate -> enrich -> detect, written as the
//! JSON lines `dnslens trace --json --connects` writes, must equal tests/golden/expected.jsonl
//! byte for byte. A refactor that changes one byte of the output fails here. After a deliberate
//! change of the output: `GOLDEN_BLESS=1 cargo test -p dnslens-detect --test golden`, and read
//! the diff.

use std::path::{Path, PathBuf};

use dnslens_detect::{Config, Detectors, FakeProcesses};
use dnslens_lens::cgroup::CgroupMounts;
use dnslens_lens::clock::WallClock;
use dnslens_lens::{schema, Observed, Pipeline, PipelineConfig};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// The records of a capture file: each a little-endian u32 length, then the bytes.
fn records(file: &[u8]) -> Vec<&[u8]> {
    let mut records = Vec::new();
    let mut rest = file;
    while !rest.is_empty() {
        let (len, tail) = rest.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let (record, tail) = tail.split_at(len);
        records.push(record);
        rest = tail;
    }
    records
}

/// The JSON lines of the capture: events, connects and alerts in the order they leave.
fn output(capture: &[u8]) -> Vec<u8> {
    // Nothing of this host is read: no /proc (exe paths come from the exec records), no cgroup
    // mounts (paths come from the names the kernel stamped), a fixed wall clock.
    let nowhere = std::env::temp_dir().join(format!("dnslens-golden-{}", std::process::id()));
    let mut pipeline = Pipeline::new(
        PipelineConfig {
            proc_root: nowhere.join("proc"),
            cgroup_mounts: CgroupMounts::default(),
            node: Some("golden-node".into()),
            ..PipelineConfig::default()
        },
        WallClock::with_offset(1_795_690_495_000_000_000),
    );
    let mut detectors = Detectors::with_view(Config::default(), Box::new(FakeProcesses::default()));
    let mut out = Vec::new();
    let mut alerts = Vec::new();
    let mut last_mono = 0;
    let write_alerts = |out: &mut Vec<u8>, alerts: &mut Vec<_>| {
        for alert in alerts.drain(..) {
            schema::write_alert_line(out, &alert);
        }
    };
    for record in records(capture) {
        pipeline.record(record, &mut |observed| match observed {
            Observed::Dns(event, _) => {
                last_mono = last_mono.max(event.mono_ns);
                schema::write_event_line(&mut out, event);
                detectors.event(event, &mut |a| alerts.push(a));
            }
            // Resends and libc calls are the lookup stage's: no message of their own.
            Observed::Resend(_) | Observed::Libc(_) => {}
            Observed::Connect(connect) => {
                last_mono = last_mono.max(connect.mono_ns);
                schema::write_connect_line(&mut out, connect);
                detectors.connect(connect, &mut |a| alerts.push(a));
            }
        });
        write_alerts(&mut out, &mut alerts);
    }
    // Past every timeout: the unanswered queries, then what the detectors still hold.
    let end = last_mono + 60_000_000_000;
    pipeline.expire(end, &mut |event| {
        schema::write_event_line(&mut out, event);
        detectors.event(event, &mut |a| alerts.push(a));
    });
    detectors.tick(end, &mut |a| alerts.push(a));
    detectors.finish(&mut |a| alerts.push(a));
    write_alerts(&mut out, &mut alerts);
    out
}

#[test]
fn a_recorded_capture_gives_the_same_json_lines() {
    let dir = golden_dir();
    let capture = std::fs::read(dir.join("capture.bin")).expect("tests/golden/capture.bin");
    let got = output(&capture);
    let expected_path = dir.join("expected.jsonl");
    if std::env::var_os("GOLDEN_BLESS").is_some() {
        std::fs::write(&expected_path, &got).unwrap();
    }
    let expected = std::fs::read(&expected_path).expect("tests/golden/expected.jsonl");
    if got != expected {
        let (got, expected) = (
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
        );
        for (n, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
            assert_eq!(g, e, "line {} differs", n + 1);
        }
        assert_eq!(got.lines().count(), expected.lines().count(), "line count");
        panic!("output differs from tests/golden/expected.jsonl");
    }
    // The capture holds what the output is meant to cover.
    for needle in [
        "\"kind\":\"query\"",
        "\"kind\":\"response\"",
        "\"kind\":\"unanswered\"",
        "\"kind\":\"connect\"",
        "\"kind\":\"alert\"",
        "\"transport\":\"tcp\"",
        "\"rcode\":\"NXDOMAIN\"",
        "\"pod\":{\"uid\":\"6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b\"",
        "\"host\":true",
    ] {
        assert!(
            got.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "the capture has no {needle}"
        );
    }
}

#[test]
fn the_output_does_not_depend_on_the_run() {
    let capture = std::fs::read(golden_dir().join("capture.bin")).unwrap();
    assert_eq!(output(&capture), output(&capture));
}
