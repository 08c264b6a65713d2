//! DNS-over-TCP framing (RFC 1035 section 4.2.2, RFC 7766): turns the captured byte stream of
//! one socket direction, with holes where the capture lost bytes, back into messages.

use std::cmp::Ordering;

/// One framing result, borrowed from the pushed chunk or the framer's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole message, without its length prefix.
    Message(&'a [u8]),
    /// A message of `total_len` bytes whose bytes after `prefix` were lost. Framing is kept:
    /// the rest of the message is skipped by its known length.
    Partial { prefix: &'a [u8], total_len: usize },
    /// `skipped` bytes that could not be framed: a lost or impossible length prefix. The framer
    /// drops the rest of the chunk and expects a length prefix at the start of the next one.
    Desync { skipped: usize },
}

/// Smallest length a prefix may carry: a DNS header.
const MIN_MESSAGE: usize = 12;
/// A buffer grown past this by a large message is released once that message is out, so
/// thousands of idle sockets do not each hold 64 KiB.
pub(crate) const KEEP_CAPACITY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a length prefix; `high` holds its first byte once it has arrived alone.
    Length { high: Option<u8> },
    /// Inside a message of `len` bytes; those seen so far are in the buffer.
    Body { len: usize },
    /// Inside a message already reported as [`Frame::Partial`]; `left` bytes remain to drop.
    Skip { left: usize },
}

const START: State = State::Length { high: None };

/// Frames one (socket, direction) stream. Holds at most one message (65535 bytes) and one
/// length byte.
#[derive(Debug)]
pub struct TcpFramer {
    state: State,
    buf: Vec<u8>,
}

impl Default for TcpFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl TcpFramer {
    pub fn new() -> Self {
        TcpFramer {
            state: START,
            buf: Vec::new(),
        }
    }

    /// Feed one chunk: `data` are the bytes captured, `missing` bytes that followed them in the
    /// stream but were not captured. Frames complete or lost by this chunk go to `out`, in
    /// stream order; a message inside one chunk is handed out without copying.
    pub fn push(&mut self, data: &[u8], missing: usize, out: &mut impl FnMut(Frame<'_>)) {
        let mut data = data;
        while let Some((&first, rest)) = data.split_first() {
            match self.state {
                State::Length { high: None } => match rest.split_first() {
                    Some((&low, rest)) => {
                        data = rest;
                        self.start_body(u16::from_be_bytes([first, low]), &mut data, out);
                    }
                    None => {
                        data = rest;
                        self.state = State::Length { high: Some(first) };
                    }
                },
                State::Length { high: Some(high) } => {
                    data = rest;
                    self.start_body(u16::from_be_bytes([high, first]), &mut data, out);
                }
                State::Body { len } if self.buf.is_empty() && data.len() >= len => {
                    out(Frame::Message(&data[..len]));
                    data = &data[len..];
                    self.state = START;
                }
                State::Body { len } => {
                    let take = (len - self.buf.len()).min(data.len());
                    self.grow_for(take, len);
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() == len {
                        out(Frame::Message(&self.buf));
                        self.reset_buf();
                        self.state = START;
                    }
                }
                State::Skip { left } => {
                    let take = left.min(data.len());
                    data = &data[take..];
                    self.state = match left - take {
                        0 => START,
                        left => State::Skip { left },
                    };
                }
            }
        }
        if missing > 0 {
            self.lose(missing, out);
        }
    }

    /// Handles a length prefix; on an impossible one, drops the rest of `data`.
    fn start_body(&mut self, len: u16, data: &mut &[u8], out: &mut impl FnMut(Frame<'_>)) {
        let len = usize::from(len);
        if len < MIN_MESSAGE {
            out(Frame::Desync {
                skipped: 2 + data.len(),
            });
            *data = &[];
            self.state = START;
        } else {
            self.state = State::Body { len };
        }
    }

    /// `missing` bytes of the stream were not captured.
    fn lose(&mut self, missing: usize, out: &mut impl FnMut(Frame<'_>)) {
        // Bytes of the current message still due; what the hole holds beyond them is the start
        // of the next message, length prefix included, so framing is lost.
        let due = match self.state {
            State::Length { high } => {
                out(Frame::Desync {
                    skipped: usize::from(high.is_some()) + missing,
                });
                self.state = START;
                return;
            }
            State::Body { len } => {
                out(Frame::Partial {
                    prefix: &self.buf,
                    total_len: len,
                });
                let due = len - self.buf.len();
                self.reset_buf();
                due
            }
            State::Skip { left } => left,
        };
        self.state = match missing.cmp(&due) {
            Ordering::Less => State::Skip {
                left: due - missing,
            },
            Ordering::Equal => START,
            Ordering::Greater => {
                out(Frame::Desync {
                    skipped: missing - due,
                });
                START
            }
        };
    }

    /// Makes room for `take` more bytes of a message of `len`. The buffer grows with what has
    /// arrived (doubling, so byte-by-byte chunks stay linear), never past `len`: a length
    /// prefix alone, which a hostile or broken peer may send and then go quiet, reserves
    /// nothing, so thousands of such streams do not each hold 64 KiB.
    fn grow_for(&mut self, take: usize, len: usize) {
        let need = self.buf.len() + take;
        if need > self.buf.capacity() {
            let target = need.max((self.buf.capacity() * 2).min(len));
            self.buf.reserve_exact(target - self.buf.len());
        }
    }

    /// Bytes held for a message not yet complete (its length prefix included), or 0 at a
    /// message boundary. A stream whose peer promised more than it sent (and closed) stays in
    /// this state: the count says how many bytes such streams hold.
    pub fn held(&self) -> usize {
        self.in_flight().0
    }

    /// Bytes the buffer has reserved: what a stream costs in memory (at most twice what it
    /// holds, or 4 KiB).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn reset_buf(&mut self) {
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    /// Bytes taken from the stream but not yet reported in a frame (length prefix included),
    /// and bytes reported in a [`Frame::Partial`] that the stream still owes. For the
    /// accounting check in [`crate::fuzzing`].
    pub(crate) fn in_flight(&self) -> (usize, usize) {
        match self.state {
            State::Length { high } => (usize::from(high.is_some()), 0),
            State::Body { .. } => (2 + self.buf.len(), 0),
            State::Skip { left } => (0, left),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Message(Vec<u8>),
        Partial(Vec<u8>, usize),
        Desync(usize),
    }

    fn push(framer: &mut TcpFramer, data: &[u8], missing: usize) -> Vec<Owned> {
        let mut frames = Vec::new();
        framer.push(data, missing, &mut |frame| {
            frames.push(match frame {
                Frame::Message(m) => Owned::Message(m.to_vec()),
                Frame::Partial { prefix, total_len } => Owned::Partial(prefix.to_vec(), total_len),
                Frame::Desync { skipped } => Owned::Desync(skipped),
            })
        });
        frames
    }

    /// A message body of `len` bytes, distinguishable by `tag`.
    fn body(len: usize, tag: u8) -> Vec<u8> {
        (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn prefix_in_its_own_chunk() {
        let m = body(29, 1);
        let mut f = TcpFramer::new();
        assert_eq!(push(&mut f, &[0, 29], 0), []);
        assert_eq!(push(&mut f, &m, 0), [Owned::Message(m.clone())]);
        // Even one byte at a time.
        assert_eq!(push(&mut f, &[0], 0), []);
        assert_eq!(push(&mut f, &[29], 0), []);
        assert_eq!(push(&mut f, &m, 0), [Owned::Message(m)]);
        assert_eq!(f.in_flight(), (0, 0));
    }

    #[test]
    fn two_messages_and_a_half_in_one_chunk() {
        let (a, b, c) = (body(12, 1), body(40, 2), body(20, 3));
        let mut chunk = [framed(&a), framed(&b), framed(&c)].concat();
        let tail = chunk.split_off(chunk.len() - 10);
        let mut f = TcpFramer::new();
        assert_eq!(
            push(&mut f, &chunk, 0),
            [Owned::Message(a), Owned::Message(b)]
        );
        assert_eq!(push(&mut f, &tail, 0), [Owned::Message(c)]);
    }

    #[test]
    fn message_across_three_chunks() {
        let m = body(300, 9);
        let stream = framed(&m);
        let mut f = TcpFramer::new();
        assert_eq!(push(&mut f, &stream[..1], 0), []);
        assert_eq!(push(&mut f, &stream[1..150], 0), []);
        assert_eq!(f.in_flight(), (150, 0));
        assert_eq!(push(&mut f, &stream[150..], 0), [Owned::Message(m)]);
    }

    #[test]
    fn loss_inside_a_message_keeps_framing() {
        let (a, b) = (body(100, 1), body(50, 2));
        let stream = framed(&a);
        let mut f = TcpFramer::new();
        // The rest of `a` is lost exactly.
        let frames = push(&mut f, &stream[..10], stream.len() - 10);
        assert_eq!(frames, [Owned::Partial(a[..8].to_vec(), 100)]);
        assert_eq!(push(&mut f, &framed(&b), 0), [Owned::Message(b.clone())]);

        // A hole in the middle of `a`; its tail arrives with `b`.
        let frames = push(&mut f, &stream[..10], 30);
        assert_eq!(frames, [Owned::Partial(a[..8].to_vec(), 100)]);
        assert_eq!(f.in_flight(), (0, 62));
        let next = [&stream[40..60], &[][..]].concat();
        assert_eq!(push(&mut f, &next, 2), []);
        assert_eq!(f.in_flight(), (0, 40));
        let next = [&stream[62..], &framed(&b)[..]].concat();
        assert_eq!(push(&mut f, &next, 0), [Owned::Message(b)]);
    }

    #[test]
    fn capture_limit_on_a_large_message() {
        // The probe copies 4096 bytes of a 5000-byte write: prefix plus 4094 body bytes.
        let (big, next) = (body(4998, 5), body(33, 6));
        let stream = framed(&big);
        let mut f = TcpFramer::new();
        let frames = push(&mut f, &stream[..4096], 904);
        assert_eq!(frames, [Owned::Partial(big[..4094].to_vec(), 4998)]);
        assert!(f.buf.capacity() <= KEEP_CAPACITY);
        assert_eq!(push(&mut f, &framed(&next), 0), [Owned::Message(next)]);
    }

    #[test]
    fn loss_reaching_into_the_next_prefix_desyncs() {
        let (a, b) = (body(20, 1), body(20, 2));
        let mut f = TcpFramer::new();
        let frames = push(&mut f, &framed(&a)[..10], 12 + 5);
        assert_eq!(
            frames,
            [Owned::Partial(a[..8].to_vec(), 20), Owned::Desync(5)]
        );
        assert_eq!(push(&mut f, &framed(&b), 0), [Owned::Message(b.clone())]);

        // Lost where a prefix was due.
        assert_eq!(push(&mut f, &[], 7), [Owned::Desync(7)]);
        assert_eq!(push(&mut f, &[0], 7), [Owned::Desync(8)]);
        // Lost beyond a skipped tail.
        push(&mut f, &framed(&a)[..5], 3);
        assert_eq!(push(&mut f, &[], 20), [Owned::Desync(6)]);
        assert_eq!(push(&mut f, &framed(&b), 0), [Owned::Message(b)]);
    }

    #[test]
    fn impossible_lengths_desync_the_rest_of_the_chunk() {
        let m = body(12, 4);
        let mut f = TcpFramer::new();
        for len in [0u8, 5, 11] {
            let chunk = [&[0, len][..], &framed(&m)].concat();
            assert_eq!(push(&mut f, &chunk, 0), [Owned::Desync(chunk.len())]);
            assert_eq!(push(&mut f, &framed(&m), 0), [Owned::Message(m.clone())]);
        }
        // A prefix split over two chunks counts both bytes.
        assert_eq!(push(&mut f, &[0], 0), []);
        assert_eq!(push(&mut f, &[3, 9, 9], 0), [Owned::Desync(4)]);
    }

    /// Regression: a prefix promising 65535 bytes reserved them all at once, so a peer that
    /// sends prefixes and a few bytes on thousands of connections (then closes them) made
    /// dnslens hold 64 KiB per stream for bytes that never came.
    #[test]
    fn lying_length_prefix_reserves_only_what_arrived() {
        let mut f = TcpFramer::new();
        assert_eq!(push(&mut f, &[0xff, 0xff], 0), []);
        assert_eq!(f.buf.capacity(), 0);
        assert_eq!(push(&mut f, &body(20, 1), 0), []);
        assert!(f.buf.capacity() < 64, "{}", f.buf.capacity());
        assert_eq!(f.held(), 22);
        // Byte by byte, the buffer doubles: linear work, at most twice what arrived.
        let mut f = TcpFramer::new();
        push(&mut f, &[0x13, 0x88], 0);
        for i in 0..3000u32 {
            push(&mut f, &[i as u8], 0);
            assert!(
                f.buf.capacity() <= 2 * f.buf.len().max(8),
                "{}",
                f.buf.capacity()
            );
        }
        assert_eq!(f.held(), 3002);
        let rest = body(2000, 3);
        assert_eq!(push(&mut f, &rest, 0).len(), 1);
        assert_eq!(f.held(), 0);
    }

    #[test]
    fn buffer_is_bounded_and_released() {
        let m = body(65_535, 7);
        let stream = framed(&m);
        let mut f = TcpFramer::new();
        let mut frames = Vec::new();
        for chunk in stream.chunks(1000) {
            frames.extend(push(&mut f, chunk, 0));
            assert!(f.buf.capacity() <= 65_535);
        }
        assert_eq!(frames, [Owned::Message(m)]);
        assert_eq!(f.buf.capacity(), 0);
    }
}
