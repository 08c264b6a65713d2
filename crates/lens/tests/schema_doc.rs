//! docs/schema.md is the interface: every field the schema writes must be documented there, and
//! every field documented there must be written. The lines checked are the golden capture's
//! (tests/golden/expected.jsonl: queries, responses, unanswered queries, connects, an alert)
//! and samples (a lookup and a forwarder's upstream query among them) that fill what a capture without a cluster leaves null (a named pod with its
//! workload and labels, a named container, an alert with every evidence field). Evidence fields
//! are documented with their detectors, in docs/detectors.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use dnslens_lens::alert::{Alert, Detector, Evidence, Severity};
use dnslens_lens::container::Runtime;
use dnslens_lens::lookup::{LookupConfig, Lookups};
use dnslens_lens::model::{sample, Container, Pod, Served};
use dnslens_lens::pods::{PodInfo, Workload};
use dnslens_lens::schema;
use serde_json::Value;

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of the first table after `heading`: the field names of the first cell (several,
/// comma-separated, for a row that says "as in events"), and the row's whole text.
fn table(doc: &str, heading: &str) -> Vec<(Vec<String>, String)> {
    let start = doc
        .lines()
        .position(|l| l == heading)
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    doc.lines()
        .skip(start)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default();
            let names = first
                .split(',')
                .map(|n| n.trim().trim_matches('`').to_string())
                .collect();
            (names, row.to_string())
        })
        .collect()
}

/// Every key path a line writes (`process.pid`, `answers.ttl`), but not inside maps whose keys
/// are data (`pod.labels`, `served.pod.labels`, `evidence.qtypes`) nor inside `evidence`, which is checked apart.
fn paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                if !(path.ends_with("pod.labels") || path == "evidence") {
                    paths(value, &path, out);
                }
                out.insert(path);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| paths(v, prefix, out)),
        _ => {}
    }
}

/// Whether a table documents `path`: a row of that name, rows of its fields (`process` by
/// `process.pid`, ...), or a row of an enclosing object whose text names the last part (`flags`
/// names `qr`; `answers` names `ttl`).
fn documented(rows: &[(Vec<String>, String)], path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let fields = format!("{path}.");
    rows.iter().any(|(names, text)| {
        names.iter().any(|name| {
            name == path
                || name.starts_with(&fields)
                || (path.starts_with(&format!("{name}.")) && text.contains(&format!("`{last}`")))
        })
    })
}

/// The rows of a table whose "as in events" row names `names`, replaced by the events' rows.
fn with_event_rows(
    rows: Vec<(Vec<String>, String)>,
    events: &[(Vec<String>, String)],
) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    for (names, text) in rows {
        if names.len() == 1 {
            out.push((names, text));
            continue;
        }
        for name in names {
            let prefix = format!("{name}.");
            out.extend(
                events
                    .iter()
                    .filter(|(n, _)| n[0] == name || n[0].starts_with(&prefix))
                    .cloned(),
            );
        }
    }
    out
}

fn named_pod() -> Pod {
    Pod {
        uid: Arc::from("6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"),
        info: Some(Arc::new(PodInfo {
            uid: "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b".into(),
            name: "web-7d4b9f-xk2p1".into(),
            namespace: "shop".into(),
            node: None,
            pod_ip: None,
            service_account: None,
            labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
            workload: Some(Workload {
                kind: "Deployment".into(),
                name: "web".into(),
            }),
            containers: BTreeMap::new(),
        })),
    }
}

/// Lines by kind: the golden capture's and the samples'.
fn lines_by_kind() -> BTreeMap<String, Vec<Value>> {
    let mut lines: Vec<String> = repo_file("tests/golden/expected.jsonl")
        .lines()
        .map(str::to_string)
        .collect();
    let mut query = sample::query(7, "example.com", 1, 1_000);
    query.who.pod = Some(named_pod());
    query.who.container = Some(Container {
        id: Arc::from("ab".repeat(32).as_str()),
        runtime: Runtime::Containerd,
        name: Some("app".into()),
    });
    query.who.host = Some(false);
    let response = sample::response(&query, 0, &["93.184.215.14"], 2_000);
    let mut upstream = sample::query(8, "example.com", 1, 1_500);
    upstream.served = vec![Served {
        pid: 10,
        name: "getent".into(),
        pod: Some(named_pod()),
    }];
    let mut connect = sample::connect("93.184.215.14:443", 3_000);
    connect.who = query.who.clone();
    let mut evidence = Evidence {
        workload: Some("shop/Deployment/web".into()),
        domain: Some("example.com".into()),
        examples: vec!["a.example.com".into()],
        exe: Some("/usr/bin/dig".into()),
        reason: Some("deleted".into()),
        cluster_only: Some(true),
        configured: vec!["10.96.0.10".into()],
        address: Some("93.184.215.14:443".into()),
        transport: Some("tcp".into()),
        server: Some("8.8.8.8:53".into()),
        ..Evidence::default()
    };
    evidence.qtypes.insert("A".into(), 1);
    for n in [
        &mut evidence.queries,
        &mut evidence.distinct_names,
        &mut evidence.long_or_random,
        &mut evidence.failed_lookups,
        &mut evidence.distinct_failed,
        &mut evidence.ok_responses,
        &mut evidence.random_domains,
        &mut evidence.after_ms,
    ] {
        *n = Some(1);
    }
    evidence.rate_per_s = Some(1.5);
    let alert = Alert {
        detector: Detector::Tunneling,
        severity: Severity::High,
        summary: "dig (pid 123) in pod shop/web-7d4b9f-xk2p1 ...".into(),
        count: 1,
        window_s: 10,
        evidence,
        time_ns: query.time_ns,
        who: query.who.clone(),
    };
    let mut out = Vec::new();
    schema::write_event_line(&mut out, &query);
    schema::write_event_line(&mut out, &response);
    schema::write_event_line(&mut out, &upstream);
    schema::write_connect_line(&mut out, &connect);
    schema::write_alert_line(&mut out, &alert);
    // An alert from a replayed server's dnstap: its client known by address alone.
    let mut replayed = alert.clone();
    replayed.who.client = Some("10.0.0.7".parse().unwrap());
    schema::write_alert_line(&mut out, &replayed);
    let mut lookups = Lookups::new(LookupConfig::default(), Box::new(|_| None));
    lookups.event(&query, &mut |_| {});
    lookups.event(&response, &mut |l| schema::write_lookup_line(&mut out, l));
    lines.extend(String::from_utf8(out).unwrap().lines().map(str::to_string));

    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in lines {
        let value: Value = serde_json::from_str(&line).unwrap();
        let kind = value["kind"].as_str().unwrap().to_string();
        by_kind.entry(kind).or_default().push(value);
    }
    by_kind
}

fn written(lines: &[Value]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    lines.iter().for_each(|l| paths(l, "", &mut out));
    out
}

fn check(what: &str, rows: &[(Vec<String>, String)], written: &BTreeSet<String>) {
    let undocumented: Vec<&String> = written.iter().filter(|p| !documented(rows, p)).collect();
    assert!(
        undocumented.is_empty(),
        "{what}: written but not in docs/schema.md: {undocumented:?}"
    );
    let unwritten: Vec<&String> = rows
        .iter()
        .flat_map(|(names, _)| names)
        .filter(|name| !written.contains(*name))
        .collect();
    assert!(
        unwritten.is_empty(),
        "{what}: in docs/schema.md but never written: {unwritten:?}"
    );
}

#[test]
fn every_written_field_is_documented_and_every_documented_field_is_written() {
    let doc = repo_file("docs/schema.md");
    let by_kind = lines_by_kind();
    assert_eq!(
        by_kind.keys().collect::<Vec<_>>(),
        [
            "alert",
            "connect",
            "lookup",
            "query",
            "response",
            "unanswered"
        ],
        "every kind of line is checked"
    );

    let events = table(&doc, "## Event fields");
    let event_lines: Vec<Value> = ["query", "response", "unanswered"]
        .iter()
        .flat_map(|k| by_kind[*k].clone())
        .collect();
    check("events", &events, &written(&event_lines));

    let connects = with_event_rows(table(&doc, "## Connect records"), &events);
    check("connects", &connects, &written(&by_kind["connect"]));

    let alerts = with_event_rows(table(&doc, "## Alert lines"), &events);
    check("alerts", &alerts, &written(&by_kind["alert"]));

    let lookups = with_event_rows(table(&doc, "## Lookup lines"), &events);
    check("lookups", &lookups, &written(&by_kind["lookup"]));
}

#[test]
fn every_evidence_field_is_documented_with_its_detectors() {
    // Each detector's fields with it; `workload`, which every alert has, with the alert lines.
    let doc = repo_file("docs/detectors.md") + &repo_file("docs/schema.md");
    let by_kind = lines_by_kind();
    let mut fields = BTreeSet::new();
    for alert in &by_kind["alert"] {
        fields.extend(alert["evidence"].as_object().unwrap().keys().cloned());
    }
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "evidence fields not in docs/detectors.md: {missing:?}"
    );
    // The sample alert fills every field the Evidence struct has.
    let source = repo_file("crates/lens/src/alert.rs");
    let body = source
        .split("pub struct Evidence {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("struct Evidence in crates/lens/src/alert.rs");
    let declared: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub ")?.split(':').next())
        .map(str::to_string)
        .collect();
    assert_eq!(fields, declared, "the sample fills every evidence field");
}
