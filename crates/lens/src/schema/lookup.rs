//! The JSON form of a lookup (docs/schema.md, "Lookup lines"): what the application asked, how
//! it ended and each query sent for it, then whom it belongs to, as on every other line.

use dnslens_abi::Named;

use super::write::{
    write_attribution, write_code, write_int, write_opt_int, write_socket_addr, write_str,
};
use crate::clock::Rfc3339;
use crate::lookup::via::Via;
use crate::lookup::{Attempt, Lookup};

/// One lookup as a JSON object and a newline.
pub fn write_lookup_line(out: &mut Vec<u8>, l: &Lookup) {
    write_lookup(out, l);
    out.push(b'\n');
}

fn write_lookup(out: &mut Vec<u8>, l: &Lookup) {
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(&Rfc3339(l.time_ns).bytes());
    out.extend_from_slice(b"\",\"kind\":\"lookup\",\"name\":");
    write_str(out, &l.name);
    out.extend_from_slice(b",\"answer_name\":");
    match &l.answer_name {
        Some(name) => write_str(out, name),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"qtypes\":[");
    for (i, qtype) in l.qtypes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_code(out, qtype.name(), "TYPE", qtype.0);
    }
    out.extend_from_slice(b"],\"outcome\":\"");
    out.extend_from_slice(l.outcome.name().as_bytes());
    out.extend_from_slice(b"\",\"latency_us\":");
    write_int(out, l.latency_us);
    out.extend_from_slice(b",\"queries\":");
    write_int(out, l.queries);
    out.extend_from_slice(b",\"timeouts\":");
    write_int(out, l.timeouts);
    out.extend_from_slice(b",\"attempts\":[");
    for (i, attempt) in l.attempts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_attempt(out, attempt);
    }
    out.extend_from_slice(b"],\"via\":");
    match &l.via {
        Some(via) => write_via(out, via),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"source\":\"");
    out.extend_from_slice(l.source.name().as_bytes());
    out.push(b'"');
    write_attribution(out, &l.who);
    out.push(b'}');
}

fn write_via(out: &mut Vec<u8>, via: &Via) {
    out.extend_from_slice(b"{\"process\":{\"pid\":");
    write_int(out, via.pid);
    out.extend_from_slice(b",\"name\":");
    write_str(out, &via.name);
    out.extend_from_slice(b"},\"upstream\":");
    match via.upstream {
        Some(addr) => {
            out.push(b'"');
            write_socket_addr(out, addr);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"upstream_latency_us\":");
    write_opt_int(out, via.upstream_latency_us);
    out.extend_from_slice(b",\"cache\":\"");
    let cache: &str = via.cache.into();
    out.extend_from_slice(cache.as_bytes());
    out.extend_from_slice(b"\"}");
}

fn write_attempt(out: &mut Vec<u8>, a: &Attempt) {
    out.extend_from_slice(b"{\"qname\":");
    write_str(out, &a.qname);
    out.extend_from_slice(b",\"qtype\":");
    write_code(out, a.qtype.name(), "TYPE", a.qtype.0);
    out.extend_from_slice(b",\"server\":\"");
    write_socket_addr(out, a.server);
    out.extend_from_slice(b"\",\"transport\":\"");
    out.extend_from_slice(a.transport.name().as_bytes());
    out.extend_from_slice(b"\",\"rcode\":");
    match a.rcode {
        Some(rcode) => write_code(out, rcode.name(), "RCODE", rcode.0),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"latency_us\":");
    write_opt_int(out, a.latency_us);
    out.push(b'}');
}

/// The JSON of a lookup as text.
pub fn lookup_to_string(l: &Lookup) -> String {
    let mut out = Vec::new();
    write_lookup(&mut out, l);
    String::from_utf8(out).expect("the writer produces UTF-8")
}
