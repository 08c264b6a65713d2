//! The dnstap messages dnslens writes and reads, as dnstap.proto (proto2) numbers them. Only
//! `Dnstap` and `Message` are here: `Policy` and the HTTP protocol are neither written nor read,
//! and prost skips unknown fields when decoding.

/// The top-level union: identity and version of the writer, `extra`, and one message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dnstap {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub identity: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub version: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub extra: Option<Vec<u8>>,
    #[prost(message, optional, tag = "14")]
    pub message: Option<Message>,
    /// Always `DnstapType::Message` (1), the one type defined.
    #[prost(enumeration = "DnstapType", required, tag = "15")]
    pub r#type: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DnstapType {
    Message = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SocketFamily {
    Inet = 1,
    Inet6 = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SocketProtocol {
    Udp = 1,
    Tcp = 2,
    Dot = 3,
    Doh = 4,
    DnsCryptUdp = 5,
    DnsCryptTcp = 6,
    Doq = 7,
}

/// Which end of which arrow of dnstap.proto's diagram the message was seen at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MessageType {
    AuthQuery = 1,
    AuthResponse = 2,
    ResolverQuery = 3,
    ResolverResponse = 4,
    ClientQuery = 5,
    ClientResponse = 6,
    ForwarderQuery = 7,
    ForwarderResponse = 8,
    StubQuery = 9,
    StubResponse = 10,
    ToolQuery = 11,
    ToolResponse = 12,
    UpdateQuery = 13,
    UpdateResponse = 14,
}

impl MessageType {
    /// Whether the message is a query (the `query_*` fields hold it), not a response.
    pub fn is_query(self) -> bool {
        (self as i32) % 2 == 1
    }
}

/// A wire-format DNS message with its addresses and times. The query's initiator is the
/// `query_*` end, the responder the `response_*` end, whichever message this is.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(enumeration = "MessageType", required, tag = "1")]
    pub r#type: i32,
    #[prost(enumeration = "SocketFamily", optional, tag = "2")]
    pub socket_family: Option<i32>,
    #[prost(enumeration = "SocketProtocol", optional, tag = "3")]
    pub socket_protocol: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub query_address: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub response_address: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "6")]
    pub query_port: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub response_port: Option<u32>,
    #[prost(uint64, optional, tag = "8")]
    pub query_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "9")]
    pub query_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "10")]
    pub query_message: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "11")]
    pub query_zone: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "12")]
    pub response_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "13")]
    pub response_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "14")]
    pub response_message: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn field_numbers_are_dnstap_protos() {
        let tap = Dnstap {
            identity: Some(b"n".to_vec()),
            r#type: DnstapType::Message as i32,
            message: Some(Message {
                r#type: MessageType::StubQuery as i32,
                query_port: Some(53),
                query_time_nsec: Some(7),
                ..Message::default()
            }),
            ..Dnstap::default()
        };
        let bytes = tap.encode_to_vec();
        // identity: field 1, wire type 2; message: field 14, wire type 2; type: field 15 varint.
        assert_eq!(&bytes[..3], &[0x0a, 1, b'n']);
        assert_eq!(bytes[3], 14 << 3 | 2);
        assert_eq!(&bytes[bytes.len() - 2..], &[15 << 3, 1]);
        // Inside: type 1 = 9, query_port 6 = 53, query_time_nsec 9 as fixed32.
        let inner = &bytes[5..bytes.len() - 2];
        assert_eq!(inner, &[8, 9, 6 << 3, 53, 9 << 3 | 5, 7, 0, 0, 0]);
        assert_eq!(Dnstap::decode(&bytes[..]).unwrap(), tap);
    }

    #[test]
    fn queries_are_the_odd_types() {
        assert!(MessageType::StubQuery.is_query());
        assert!(MessageType::ForwarderQuery.is_query());
        assert!(!MessageType::ClientResponse.is_query());
        assert!(!MessageType::ToolResponse.is_query());
    }
}
