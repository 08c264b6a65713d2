//! dnslens-dnstap: the dnstap protobuf messages (dnstap.proto of the dnstap project, field
//! numbers as published) and Frame Streams, the framing dnstap travels in: control frames, the
//! bidirectional handshake of a sender, and a reader of files and streams.
//!
//! The message types are written by hand with prost's derive, from the published field numbers:
//! no protoc at build time. Frame Streams is written by hand too: the one kept crate for it
//! (`framestream`) only writes unidirectional streams and reads none, and dnstap-utils' codec
//! needs tokio-util; the protocol is a few big-endian length words.
//!
//! Generic over `Read`/`Write`: the sockets, the thread and the files are the binary's.

#![forbid(unsafe_code)]

pub mod fstrm;
pub mod proto;

pub use fstrm::{FrameError, Reader, CONTENT_TYPE};
pub use proto::{Dnstap, Message, MessageType, SocketFamily, SocketProtocol};
