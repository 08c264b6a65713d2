//! `detect --input` of a dnstap file (a DNS server's own, or `--dnstap file:`): the server's
//! CLIENT_QUERY and CLIENT_RESPONSE messages become client events, each client known only by
//! its address (the query address), so the detectors judge every client address as a process.
//! Other message types are counted and skipped. One frame is held at a time (at most
//! [`fstrm::MAX_FRAME`] bytes), so a file of any size or content reads in bounded memory.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context;
use dnslens_detect::Alert;
use dnslens_dnstap::{fstrm, Dnstap, MessageType, Reader, SocketProtocol};
use dnslens_lens::model::{Attribution, Decoded, KernelIds, Moved, ProcessInfo};
use dnslens_lens::text::Printable;
use dnslens_lens::DnsEvent;
use dnslens_probe::{Direction, Syscall, Transport};
use prost::Message as _;

use super::{Detection, BAD_LINES_SHOWN};

/// What a dnstap input held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DnstapCounts {
    pub messages: u64,
    /// CLIENT_QUERY and CLIENT_RESPONSE messages, each an event.
    pub events: u64,
    /// Other message types (a resolver's upstream side, a stub's).
    pub other: u64,
    /// Messages that do not decode (protobuf, addresses or DNS message).
    pub bad: u64,
}

/// Whether `prefix`, the first bytes of an input, start a Frame Streams file.
pub fn is_dnstap(prefix: &[u8]) -> bool {
    fstrm::starts_stream(prefix)
}

/// Reads every message of `input` into the detectors; `alert` takes what they raise and says
/// whether to go on. A damaged stream ends the input with an error naming where.
pub fn feed(
    input: impl Read,
    name: &str,
    detection: &mut Detection,
    alert: &mut impl FnMut(Alert),
    counts: &mut DnstapCounts,
) -> anyhow::Result<()> {
    let mut reader = Reader::new(input);
    while let Some(frame) = reader.next_frame().with_context(|| {
        format!(
            "{name}: not a dnstap file, or damaged after {} messages",
            counts.messages
        )
    })? {
        counts.messages += 1;
        match client_event(&frame) {
            Ok(Some(event)) => {
                counts.events += 1;
                detection.event(&event, alert);
            }
            Ok(None) => counts.other += 1,
            Err(why) => {
                counts.bad += 1;
                if counts.bad <= BAD_LINES_SHOWN {
                    say!(
                        "dnslens: {name}: message {}: {}; skipped",
                        counts.messages,
                        Printable(&why)
                    );
                }
            }
        }
    }
    Ok(())
}

/// The client event of one dnstap payload: `None` for what is not a server's client message.
fn client_event(payload: &[u8]) -> Result<Option<DnsEvent>, String> {
    let tap = Dnstap::decode(payload).map_err(|e| format!("not a dnstap message: {e}"))?;
    let Some(m) = tap.message else {
        return Ok(None);
    };
    let query = match MessageType::try_from(m.r#type) {
        Ok(MessageType::ClientQuery) => true,
        Ok(MessageType::ClientResponse) => false,
        _ => return Ok(None),
    };
    let (bytes, sec, nsec) = match query {
        true => (m.query_message, m.query_time_sec, m.query_time_nsec),
        false => (
            m.response_message,
            m.response_time_sec,
            m.response_time_nsec,
        ),
    };
    let bytes = bytes.ok_or("no DNS message")?;
    let address = |bytes: &Option<Vec<u8>>, port: Option<u32>, end: &str| {
        let ip = bytes.as_deref().and_then(ip);
        let ip = ip.ok_or_else(|| format!("no {end} address of 4 or 16 bytes"))?;
        Ok::<_, String>(SocketAddr::new(ip, port.unwrap_or(0) as u16))
    };
    let client = address(&m.query_address, m.query_port, "query")?;
    let server = address(&m.response_address, m.response_port, "response")
        .unwrap_or_else(|_| SocketAddr::new(unspecified(client.ip()), 0));
    let time_ns = |sec: Option<u64>, nsec: Option<u32>| {
        sec.unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(nsec.unwrap_or(0)))
    };
    let at = time_ns(sec, nsec);
    let message = dnslens_wire::decode_brief(&bytes).map_err(|e| format!("DNS message: {e}"))?;
    if message.is_response() == query {
        return Err("a query type holding a response, or the reverse".into());
    }
    // As the client moved it: the query sent, the response received.
    let (src, dst, syscall, direction) = match query {
        true => (client, server, Syscall::Sendto, Direction::Send),
        false => (server, client, Syscall::Recvfrom, Direction::Recv),
    };
    let moved = Moved {
        time_ns: at,
        mono_ns: at,
        transport: match m.socket_protocol.map(SocketProtocol::try_from) {
            Some(Ok(SocketProtocol::Tcp)) => Transport::Tcp,
            _ => Transport::Udp,
        },
        src,
        dst,
        syscall,
        direction,
    };
    let decoded = Decoded {
        message,
        size: bytes.len() as u32,
        truncated: false,
    };
    let mut event = DnsEvent::of_message(decoded, moved, attribution(client.ip()));
    if !query && m.query_time_sec.is_some() {
        let asked = time_ns(m.query_time_sec, m.query_time_nsec);
        event.latency_us = at.checked_sub(asked).map(|ns| ns / 1000);
    }
    Ok(Some(event))
}

/// A client known by its address alone. The detectors tell processes apart by pid and start
/// time: a start time from the address (never 0, which matches any) makes each address one.
fn attribution(client: IpAddr) -> Attribution {
    let mut hasher = DefaultHasher::new();
    client.hash(&mut hasher);
    let ids = KernelIds {
        process_start_ns: hasher.finish() | 1,
        ..KernelIds::default()
    };
    let mut who = Attribution::unenriched(ProcessInfo::default(), 0, 0, ids);
    who.client = Some(client);
    who
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match <[u8; 4]>::try_from(bytes) {
        Ok(v4) => Some(v4.into()),
        Err(_) => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
    }
}

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Detect, Learn};
    use dnslens_detect::Config;
    use dnslens_dnstap::fstrm::Control;
    use dnslens_dnstap::{Message, SocketFamily};
    use dnslens_testkit::dns::Builder;

    const SEC: u64 = 1_000_000_000;
    const SERVER: [u8; 4] = [10, 0, 0, 53];

    /// A server's message about `client`: its query of `name`, or the NXDOMAIN response.
    fn served(client: [u8; 4], id: u16, name: &str, query: bool, at: u64) -> Vec<u8> {
        let (kind, bytes) = match query {
            true => (
                MessageType::ClientQuery,
                Builder::query(id, name, 1).build(),
            ),
            false => {
                let mut b = Builder::new(id, 0x8183);
                b.question(name, 1);
                (MessageType::ClientResponse, b.build())
            }
        };
        let mut m = Message {
            r#type: kind as i32,
            socket_family: Some(SocketFamily::Inet as i32),
            query_address: Some(client.to_vec()),
            query_port: Some(40000),
            response_address: Some(SERVER.to_vec()),
            response_port: Some(53),
            ..Message::default()
        };
        let (sec, nsec) = (Some(at / SEC), Some((at % SEC) as u32));
        match query {
            true => {
                (m.query_time_sec, m.query_time_nsec, m.query_message) = (sec, nsec, Some(bytes))
            }
            false => {
                (m.response_time_sec, m.response_time_nsec) = (sec, nsec);
                m.response_message = Some(bytes);
            }
        }
        Dnstap {
            message: Some(m),
            r#type: dnslens_dnstap::proto::DnstapType::Message as i32,
            ..Dnstap::default()
        }
        .encode_to_vec()
    }

    fn file(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = fstrm::control(Control::Start, true);
        for p in payloads {
            fstrm::data(p, &mut out);
        }
        out.extend_from_slice(&fstrm::control(Control::Stop, false));
        out
    }

    fn replay(bytes: &[u8]) -> (anyhow::Result<()>, Vec<Alert>, DnstapCounts) {
        let mut detection = Detection::replay(Detect {
            config: Config::default(),
            baseline: None,
            baseline_path: None,
            learn: Learn::Off,
        });
        let (mut alerts, mut counts) = (Vec::new(), DnstapCounts::default());
        let fed = feed(
            bytes,
            "t.dnstap",
            &mut detection,
            &mut |a| alerts.push(a),
            &mut counts,
        );
        detection.finish(&mut |a| alerts.push(a)).unwrap();
        (fed, alerts, counts)
    }

    #[test]
    fn a_servers_client_messages_are_judged_per_client_address() {
        let dga = [10, 0, 0, 7];
        let quiet = [10, 0, 0, 8];
        let mut payloads = Vec::new();
        for (i, label) in super::super::tests::random_labels(12).iter().enumerate() {
            let at = (i as u64 + 1) * SEC;
            let name = format!("{label}.com");
            payloads.push(served(dga, i as u16, &name, true, at));
            payloads.push(served(dga, i as u16, &name, false, at + 1000));
            payloads.push(served(quiet, i as u16, "www.example.com", true, at));
        }
        let mut other = Dnstap::decode(&payloads[0][..]).unwrap();
        other.message.as_mut().unwrap().r#type = MessageType::ResolverQuery as i32;
        payloads.push(other.encode_to_vec());
        payloads.push(b"\x0a\xffgarbage".to_vec());
        let (fed, alerts, counts) = replay(&file(&payloads));
        fed.unwrap();
        assert_eq!(
            counts,
            DnstapCounts {
                messages: 38,
                events: 36,
                other: 1,
                bad: 1
            }
        );
        let dgas: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.detector == dnslens_detect::Detector::Dga)
            .collect();
        assert_eq!(dgas.len(), 1, "{alerts:?}");
        assert!(
            dgas[0].summary.contains("client 10.0.0.7"),
            "{}",
            dgas[0].summary
        );
        assert_eq!(dgas[0].who.client, Some(IpAddr::from(dga)));
        let line: serde_json::Value = serde_json::from_str(&dgas[0].to_json_line()).unwrap();
        assert_eq!(line["client"], "10.0.0.7", "{line}");
        assert!(
            alerts
                .iter()
                .all(|a| a.who.client != Some(IpAddr::from(quiet))),
            "{alerts:?}"
        );
    }

    #[test]
    fn hostile_files_end_with_an_error_that_says_where() {
        let good = served([10, 0, 0, 7], 1, "a.example", true, SEC);
        let mut huge = file(std::slice::from_ref(&good));
        huge.truncate(huge.len() - 12);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut cut = file(&[good.clone(), good]);
        cut.truncate(cut.len() - 20);
        for (bytes, want) in [
            (huge, "damaged after 1 messages"),
            (cut, "damaged after 1 messages"),
            (
                b"\0\0\0\0\0\0\xff\xff\0\0\0\x02".to_vec(),
                "not a dnstap file",
            ),
        ] {
            let (fed, _, _) = replay(&bytes);
            let e = format!("{:#}", fed.unwrap_err());
            assert!(e.contains(want), "{e}");
        }
    }
}
