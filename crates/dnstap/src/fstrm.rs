//! Frame Streams (fstrm): data frames are a big-endian u32 length and the payload; a length of
//! 0 escapes a control frame (its own length, its type, then fields: type, length, bytes). A
//! file is START, data, STOP. A socket sender first says READY with its content types, reads
//! the receiver's ACCEPT, then says START; at the end STOP, and waits for FINISH.

use std::io::{self, Read, Write};

/// The content type of dnstap payloads.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";
/// The longest data frame read: a dnstap message holds at most two 64 KiB DNS messages and
/// its attribution.
pub const MAX_FRAME: usize = 256 << 10;
/// The longest control frame read (libfstrm's limit).
const MAX_CONTROL: usize = 512;
const FIELD_CONTENT_TYPE: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Accept = 1,
    Start = 2,
    Stop = 3,
    Ready = 4,
    Finish = 5,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A control frame other than the one the protocol expects here.
    #[error("Frame Streams: expected {expected:?}, got control frame type {got}")]
    Unexpected { expected: Control, got: u32 },
    /// The peer does not take dnstap.
    #[error("Frame Streams: the peer does not accept content type protobuf:dnstap.Dnstap")]
    ContentType,
    /// A length past the limits: not Frame Streams, or hostile.
    #[error("Frame Streams: a {what} frame of {len} bytes (at most {max})")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A data frame where a control frame must come first.
    #[error("Frame Streams: the stream does not start with a control frame")]
    NoStart,
}

/// A control frame of `kind`, with the dnstap content type field when `content_type`.
pub fn control(kind: Control, content_type: bool) -> Vec<u8> {
    let field = if content_type {
        8 + CONTENT_TYPE.len()
    } else {
        0
    };
    let mut frame = Vec::with_capacity(12 + field);
    frame.extend_from_slice(&0u32.to_be_bytes());
    frame.extend_from_slice(&(4 + field as u32).to_be_bytes());
    frame.extend_from_slice(&(kind as u32).to_be_bytes());
    if content_type {
        frame.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        frame.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        frame.extend_from_slice(CONTENT_TYPE);
    }
    frame
}

/// Appends a data frame holding `payload` (not empty) to `out`.
pub fn data(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A control frame as read: its type and its content types.
#[derive(Debug, PartialEq, Eq)]
pub struct ControlFrame {
    pub kind: u32,
    pub content_types: Vec<Vec<u8>>,
}

impl ControlFrame {
    fn expect(self, expected: Control) -> Result<ControlFrame, FrameError> {
        if self.kind != expected as u32 {
            return Err(FrameError::Unexpected {
                expected,
                got: self.kind,
            });
        }
        Ok(self)
    }

    /// Whether the frame names dnstap, or names no type (which any content type may follow).
    fn takes_dnstap(&self) -> bool {
        self.content_types.is_empty() || self.content_types.iter().any(|t| t == CONTENT_TYPE)
    }
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut word = [0; 4];
    r.read_exact(&mut word)?;
    Ok(u32::from_be_bytes(word))
}

/// Reads one control frame whose escape word was read already.
fn read_control_body(r: &mut impl Read) -> Result<ControlFrame, FrameError> {
    let len = read_u32(r)? as usize;
    if !(4..=MAX_CONTROL).contains(&len) {
        return Err(FrameError::TooLong {
            what: "control",
            len,
            max: MAX_CONTROL,
        });
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let kind = u32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
    let mut content_types = Vec::new();
    let mut rest = &body[4..];
    while rest.len() >= 8 {
        let field = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
        let n = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
        let Some(value) = rest.get(8..8 + n) else {
            break;
        };
        if field == FIELD_CONTENT_TYPE {
            content_types.push(value.to_vec());
        }
        rest = &rest[8 + n..];
    }
    Ok(ControlFrame {
        kind,
        content_types,
    })
}

/// Reads one control frame (escape word included).
pub fn read_control(r: &mut impl Read) -> Result<ControlFrame, FrameError> {
    if read_u32(r)? != 0 {
        return Err(FrameError::NoStart);
    }
    read_control_body(r)
}

/// The sender's half of the bidirectional handshake on a connected socket: READY, the
/// receiver's ACCEPT naming dnstap, START.
pub fn handshake<S: Read + Write>(stream: &mut S) -> Result<(), FrameError> {
    stream.write_all(&control(Control::Ready, true))?;
    let accept = read_control(stream)?.expect(Control::Accept)?;
    if !accept.takes_dnstap() {
        return Err(FrameError::ContentType);
    }
    stream.write_all(&control(Control::Start, true))?;
    Ok(())
}

/// The sender's end of a bidirectional stream: STOP, then the receiver's FINISH.
pub fn stop<S: Read + Write>(stream: &mut S) -> Result<(), FrameError> {
    stream.write_all(&control(Control::Stop, false))?;
    read_control(stream)?.expect(Control::Finish)?;
    Ok(())
}

/// Whether `prefix` (at least 12 bytes of a file) starts a Frame Streams file: the escape word
/// and a START control frame.
pub fn starts_stream(prefix: &[u8]) -> bool {
    prefix.len() >= 12
        && prefix[..4] == [0; 4]
        && prefix[8..12] == (Control::Start as u32).to_be_bytes()
}

/// The data frames of a unidirectional stream (a file, or what a receiver reads after the
/// handshake): START naming dnstap first, then frames until STOP or the end.
pub struct Reader<R: Read> {
    inner: R,
    started: bool,
    stopped: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            started: false,
            stopped: false,
        }
    }

    /// The next data frame's payload; `None` at STOP or at the end of the input.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if !self.started {
            let start = read_control(&mut self.inner)?.expect(Control::Start)?;
            if !start.takes_dnstap() {
                return Err(FrameError::ContentType);
            }
            self.started = true;
        }
        while !self.stopped {
            let len = match read_u32(&mut self.inner) {
                Ok(len) => len as usize,
                // A file cut short (a writer killed) still gives what it holds.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            if len == 0 {
                let frame = read_control_body(&mut self.inner)?;
                self.stopped = frame.kind == Control::Stop as u32;
                continue;
            }
            if len > MAX_FRAME {
                return Err(FrameError::TooLong {
                    what: "data",
                    len,
                    max: MAX_FRAME,
                });
            }
            let mut payload = vec![0; len];
            self.inner.read_exact(&mut payload)?;
            return Ok(Some(payload));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::thread;

    #[test]
    fn control_frames_are_as_libfstrm_writes_them() {
        assert_eq!(
            control(Control::Stop, false),
            [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3]
        );
        let start = control(Control::Start, true);
        assert_eq!(&start[4..8], &(4 + 8 + 22u32).to_be_bytes());
        assert_eq!(&start[12..20], &[0, 0, 0, 1, 0, 0, 0, 22]);
        assert_eq!(&start[20..], CONTENT_TYPE);
        assert!(starts_stream(&start));
        assert!(!starts_stream(b"{\"time\":\"2026-"));
    }

    #[test]
    fn a_file_reads_back_frame_by_frame_and_a_cut_file_gives_what_it_holds() {
        let mut file = control(Control::Start, true);
        data(b"one", &mut file);
        data(b"two", &mut file);
        let cut = file.clone();
        file.extend_from_slice(&control(Control::Stop, false));
        data(b"after stop", &mut file);
        for (bytes, want) in [(file, 2), (cut, 2)] {
            let mut reader = Reader::new(&bytes[..]);
            let mut frames = Vec::new();
            while let Some(f) = reader.next_frame().unwrap() {
                frames.push(f);
            }
            assert_eq!(frames.len(), want);
            assert_eq!(frames, [b"one".to_vec(), b"two".to_vec()]);
        }
    }

    #[test]
    fn hostile_lengths_and_other_content_types_are_refused() {
        let mut huge = control(Control::Start, true);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let e = Reader::new(&huge[..]).next_frame().unwrap_err();
        assert!(matches!(e, FrameError::TooLong { what: "data", .. }), "{e}");
        let mut other = vec![0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4];
        other.extend_from_slice(b"json");
        let e = Reader::new(&other[..]).next_frame().unwrap_err();
        assert!(matches!(e, FrameError::ContentType), "{e}");
        let e = Reader::new(&[0, 0, 0, 9, 1][..]).next_frame().unwrap_err();
        assert!(matches!(e, FrameError::NoStart), "{e}");
    }

    /// A receiver as `dnstap -u` is: it answers READY with ACCEPT, reads START, frames and
    /// STOP, and answers FINISH.
    fn receiver(mut s: UnixStream, accept_dnstap: bool) -> Result<Vec<Vec<u8>>, FrameError> {
        let ready = read_control(&mut s)?.expect(Control::Ready)?;
        assert_eq!(ready.content_types, [CONTENT_TYPE.to_vec()]);
        if accept_dnstap {
            s.write_all(&control(Control::Accept, true))?;
        } else {
            let mut accept = vec![0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 4];
            accept.extend_from_slice(b"json");
            s.write_all(&accept)?;
            return Ok(Vec::new());
        }
        let mut reader = Reader::new(&mut s);
        let mut frames = Vec::new();
        while let Some(f) = reader.next_frame()? {
            frames.push(f);
        }
        s.write_all(&control(Control::Finish, false))?;
        Ok(frames)
    }

    #[test]
    fn the_bidirectional_handshake_and_its_end() {
        let (mut sender, peer) = UnixStream::pair().unwrap();
        let peer = thread::spawn(move || receiver(peer, true));
        handshake(&mut sender).unwrap();
        let mut frames = Vec::new();
        data(b"a", &mut frames);
        data(b"bc", &mut frames);
        sender.write_all(&frames).unwrap();
        stop(&mut sender).unwrap();
        assert_eq!(
            peer.join().unwrap().unwrap(),
            [b"a".to_vec(), b"bc".to_vec()]
        );

        let (mut sender, peer) = UnixStream::pair().unwrap();
        let peer = thread::spawn(move || receiver(peer, false));
        let e = handshake(&mut sender).unwrap_err();
        assert!(matches!(e, FrameError::ContentType), "{e}");
        peer.join().unwrap().unwrap();
    }
}
