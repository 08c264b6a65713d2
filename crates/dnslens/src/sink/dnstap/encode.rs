//! One DNS event as one dnstap message: its type from the role, the wire bytes, times,
//! addresses, and the attribution as JSON in `extra` (written by the schema's own code).

use std::net::{IpAddr, SocketAddr};

use dnslens_dnstap::proto::DnstapType;
use dnslens_dnstap::{Dnstap, Message, MessageType, SocketFamily, SocketProtocol};
use dnslens_lens::bounded::Lru;
use dnslens_lens::{schema, DnsEvent, Kind, Role};
use dnslens_probe::Transport;
use prost::Message as _;

/// Processes whose own queries are TOOL_QUERY/TOOL_RESPONSE, by name: DNS debugging tools
/// (docs/shipping.md lists them).
pub const TOOLS: &[&str] = &[
    "dig", "kdig", "nslookup", "host", "drill", "delv", "q", "doggo",
];
/// Server processes remembered, to tell a forwarder's upstream queries from a stub's.
const SERVERS: usize = 4096;

/// Turns events into dnstap payloads.
pub struct Encoder {
    identity: Vec<u8>,
    version: Vec<u8>,
    /// (pid, process start) of processes seen serving DNS.
    servers: Lru<(u32, u64), ()>,
}

impl Encoder {
    /// `identity`: the node name, or the hostname.
    pub fn new(identity: &str) -> Self {
        Encoder {
            identity: identity.as_bytes().to_vec(),
            version: format!("dnslens {}", env!("CARGO_PKG_VERSION")).into_bytes(),
            servers: Lru::new(SERVERS),
        }
    }

    /// Learns from `event` whether its process serves DNS: every event passes here, shown or
    /// not, as the detectors see them.
    pub fn learn(&mut self, event: &DnsEvent) {
        if event.role == Role::Server {
            self.servers.insert(key(event), ());
        }
    }

    /// The dnstap message of `event`, whose message is `wire`, or `None` for an unanswered
    /// query.
    pub fn encode(&mut self, event: &DnsEvent, wire: &[u8]) -> Option<Vec<u8>> {
        let kind = self.message_type(event)?;
        let query = kind.is_query();
        // The initiator is the query's sender: the response's receiver.
        let (initiator, responder) = if query {
            (event.src, event.dst)
        } else {
            (event.dst, event.src)
        };
        let (family, initiator_ip, responder_ip) = addresses(initiator, responder);
        let (sec, nsec) = split(event.time_ns);
        let mut m = Message {
            r#type: kind as i32,
            socket_family: Some(family as i32),
            socket_protocol: Some(match event.transport {
                Transport::Udp => SocketProtocol::Udp,
                Transport::Tcp => SocketProtocol::Tcp,
            } as i32),
            query_address: Some(initiator_ip),
            response_address: Some(responder_ip),
            query_port: Some(u32::from(initiator.port())),
            response_port: Some(u32::from(responder.port())),
            ..Message::default()
        };
        if query {
            (m.query_time_sec, m.query_time_nsec) = (Some(sec), Some(nsec));
            m.query_message = Some(wire.to_vec());
        } else {
            (m.response_time_sec, m.response_time_nsec) = (Some(sec), Some(nsec));
            m.response_message = Some(wire.to_vec());
            if let Some(latency) = event.latency_us {
                let (sec, nsec) = split(event.time_ns.saturating_sub(latency * 1000));
                (m.query_time_sec, m.query_time_nsec) = (Some(sec), Some(nsec));
            }
        }
        let mut extra = Vec::with_capacity(512);
        schema::write_attribution_object(&mut extra, event);
        let tap = Dnstap {
            identity: Some(self.identity.clone()),
            version: Some(self.version.clone()),
            extra: Some(extra),
            message: Some(m),
            r#type: DnstapType::Message as i32,
        };
        Some(tap.encode_to_vec())
    }

    fn message_type(&mut self, event: &DnsEvent) -> Option<MessageType> {
        let response = match event.kind {
            Kind::Query => false,
            Kind::Response => true,
            Kind::Unanswered => return None,
        };
        let (query, answer) = match event.role {
            Role::Server => (MessageType::ClientQuery, MessageType::ClientResponse),
            Role::Client if self.servers.peek(&key(event)).is_some() => {
                (MessageType::ForwarderQuery, MessageType::ForwarderResponse)
            }
            Role::Client if TOOLS.contains(&event.who.process.name.as_str()) => {
                (MessageType::ToolQuery, MessageType::ToolResponse)
            }
            Role::Client => (MessageType::StubQuery, MessageType::StubResponse),
        };
        Some(if response { answer } else { query })
    }
}

fn key(event: &DnsEvent) -> (u32, u64) {
    (event.who.process.pid, event.who.ids.process_start_ns)
}

/// Wall-clock ns as dnstap's seconds and nanoseconds.
fn split(ns: u64) -> (u64, u32) {
    (ns / 1_000_000_000, (ns % 1_000_000_000) as u32)
}

/// The family and both addresses' bytes: IPv4 when both are (mapped ones included), else IPv6.
fn addresses(a: SocketAddr, b: SocketAddr) -> (SocketFamily, Vec<u8>, Vec<u8>) {
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    let v6 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    match (v4(a.ip()), v4(b.ip())) {
        (Some(x), Some(y)) => (SocketFamily::Inet, x.octets().to_vec(), y.octets().to_vec()),
        _ => (
            SocketFamily::Inet6,
            v6(a.ip()).octets().to_vec(),
            v6(b.ip()).octets().to_vec(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnslens_lens::model::{sample, Served, TaskName};

    fn decode(bytes: &[u8]) -> (Dnstap, Message) {
        let tap = Dnstap::decode(bytes).unwrap();
        let m = tap.message.clone().unwrap();
        (tap, m)
    }

    const WIRE: &[u8] = b"\x12\x34wire";

    /// `e` sent by a process that is no tool (the samples' is dig).
    fn stub(mut e: DnsEvent) -> DnsEvent {
        e.who.process.name = TaskName::new("app");
        e
    }

    #[test]
    fn a_stub_query_and_its_response_decode_with_their_fields() {
        let mut enc = Encoder::new("node-1");
        let q = stub(sample::query(1, "example.com", 1, 1_000_000_000));
        let mut r = stub(sample::response(&q, 3, &[], 1_000_000_000 + 2_500_000));
        r.latency_us = Some(2_500);
        let (tap, m) = decode(&enc.encode(&q, WIRE).unwrap());
        assert_eq!(tap.identity.as_deref(), Some(&b"node-1"[..]));
        assert!(tap.version.as_deref().unwrap().starts_with(b"dnslens 0."));
        assert_eq!(m.r#type, MessageType::StubQuery as i32);
        assert_eq!(m.socket_family, Some(SocketFamily::Inet as i32));
        assert_eq!(m.socket_protocol, Some(SocketProtocol::Udp as i32));
        assert_eq!(m.query_message.as_deref(), Some(WIRE));
        assert_eq!(m.response_message, None);
        let ip = |a: SocketAddr| match a.ip() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(_) => panic!("v4"),
        };
        assert_eq!(m.query_address, Some(ip(q.src)));
        assert_eq!(m.query_port, Some(u32::from(q.src.port())));
        assert_eq!(m.response_port, Some(u32::from(q.dst.port())));
        assert_eq!(m.query_time_sec, Some(q.time_ns / 1_000_000_000));
        assert_eq!(m.query_time_nsec, Some((q.time_ns % 1_000_000_000) as u32));
        let extra: serde_json::Value = serde_json::from_slice(&tap.extra.unwrap()).unwrap();
        assert_eq!(extra["process"]["pid"], q.who.process.pid);
        assert_eq!(extra["socket"], q.who.socket);
        assert!(
            extra.get("pod").is_some() && extra.get("host").is_some(),
            "{extra}"
        );

        let (_, m) = decode(&enc.encode(&r, WIRE).unwrap());
        assert_eq!(m.r#type, MessageType::StubResponse as i32);
        assert_eq!(m.response_message.as_deref(), Some(WIRE));
        // The initiator is still the stub, the query's time from the latency.
        assert_eq!(m.query_address, Some(ip(q.src)));
        assert_eq!(m.response_time_sec, Some(r.time_ns / 1_000_000_000));
        assert_eq!(m.query_time_sec, m.response_time_sec);
        assert_eq!(m.query_time_nsec, Some((q.time_ns % 1_000_000_000) as u32));
    }

    #[test]
    fn types_come_from_role_tool_and_forwarding() {
        let mut enc = Encoder::new("n");
        let kind = |enc: &mut Encoder, e: &DnsEvent| decode(&enc.encode(e, WIRE).unwrap()).1.r#type;
        let mut dig = stub(sample::query(1, "a.example", 1, 0));
        dig.who.process.name = TaskName::new("dig");
        assert_eq!(kind(&mut enc, &dig), MessageType::ToolQuery as i32);

        let mut served = stub(sample::query(2, "b.example", 1, 0));
        served.role = Role::Server;
        assert_eq!(kind(&mut enc, &served), MessageType::ClientQuery as i32);
        // The same process's own query, once it is known to serve: its upstream side.
        let mut upstream = stub(sample::query(3, "b.example", 1, 0));
        upstream.who = served.who.clone();
        assert_eq!(kind(&mut enc, &upstream), MessageType::StubQuery as i32);
        enc.learn(&served);
        assert_eq!(
            kind(&mut enc, &upstream),
            MessageType::ForwarderQuery as i32
        );
        // Its extra names the clients it asks for.
        upstream.served = vec![Served {
            pid: 7,
            name: TaskName::new("getent"),
            pod: None,
        }];
        let (tap, _) = decode(&enc.encode(&upstream, WIRE).unwrap());
        let extra: serde_json::Value = serde_json::from_slice(&tap.extra.unwrap()).unwrap();
        assert_eq!(extra["served"][0]["pid"], 7, "{extra}");
        assert_eq!(extra["served"][0]["name"], "getent", "{extra}");

        let mut lost = stub(sample::query(4, "c.example", 1, 0));
        lost.kind = Kind::Unanswered;
        assert!(
            enc.encode(&lost, WIRE).is_none(),
            "an unanswered query is no message"
        );
    }

    #[test]
    fn ipv6_and_tcp() {
        let mut enc = Encoder::new("n");
        let mut q = stub(sample::query(1, "a.example", 1, 0));
        q.src = "[fd00::2]:40000".parse().unwrap();
        q.dst = "[fd00::1]:53".parse().unwrap();
        q.transport = Transport::Tcp;
        let (_, m) = decode(&enc.encode(&q, WIRE).unwrap());
        assert_eq!(m.socket_family, Some(SocketFamily::Inet6 as i32));
        assert_eq!(m.socket_protocol, Some(SocketProtocol::Tcp as i32));
        assert_eq!(m.query_address.unwrap().len(), 16);
    }
}
