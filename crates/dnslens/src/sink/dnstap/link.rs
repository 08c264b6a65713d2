//! Where the dnstap thread writes: a Frame Streams receiver on a Unix or TCP socket
//! (bidirectional: READY/ACCEPT/START, STOP/FINISH at the end) or a file (START, frames, STOP),
//! rotated by size between frames, each file a whole stream.

use std::io::{self, BufWriter, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use dnslens_dnstap::fstrm::{self, Control};

use crate::sink::rotate::{Numbered, Rotation};
use crate::units::DnstapAddress;

/// How long a write or the receiver's answer may take before the link counts as lost: a
/// receiver that stopped reading must not hold frames forever.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An open stream: frames go in through [`Link::send`].
pub(super) enum Link {
    Socket(BufWriter<Stream>),
    File(FrameFile),
}

impl Link {
    /// Connects (and shakes hands) or opens the file.
    pub fn open(address: &DnstapAddress, rotation: Option<Rotation>) -> anyhow::Result<Link> {
        let stream = match address {
            DnstapAddress::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Stream::Unix(s)
            }
            DnstapAddress::Tcp(host_port) => {
                let s = TcpStream::connect(host_port.as_str())?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            DnstapAddress::File(path) => {
                return Ok(Link::File(FrameFile::open(path, rotation)?));
            }
        };
        let mut stream = stream;
        fstrm::handshake(&mut stream)?;
        Ok(Link::Socket(BufWriter::with_capacity(64 << 10, stream)))
    }

    /// One data frame; buffered until [`Link::flush`].
    pub fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 4);
        fstrm::data(payload, &mut frame);
        match self {
            Link::Socket(s) => s.write_all(&frame),
            Link::File(f) => f.write_frame(&frame),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Socket(s) => s.flush(),
            Link::File(f) => f.flush(),
        }
    }

    /// Ends the stream: STOP, and on a socket the receiver's FINISH.
    pub fn close(self) -> anyhow::Result<()> {
        match self {
            Link::Socket(s) => {
                let mut stream = s.into_inner().map_err(|e| e.into_error())?;
                fstrm::stop(&mut stream)?;
            }
            Link::File(mut f) => f.stop()?,
        }
        Ok(())
    }
}

/// A Frame Streams file: START first, STOP last; rotated between frames.
pub(super) struct FrameFile {
    file: Numbered,
    /// Frames not yet written: written at [`FrameFile::flush`] or once they fill [`BUFFER`].
    out: Vec<u8>,
    rotation: Option<Rotation>,
}

/// Bytes gathered before a write.
const BUFFER: usize = 64 << 10;

impl FrameFile {
    /// A file is one stream, which cannot be appended to: an old file is rotated away (or
    /// replaced, without rotation).
    fn open(path: &Path, rotation: Option<Rotation>) -> io::Result<FrameFile> {
        let mut file = Numbered::open(path, rotation.is_none())?;
        if let Some(r) = rotation.filter(|_| file.size() > 0) {
            file.rotate(r.keep)?;
        }
        let mut out = Vec::with_capacity(BUFFER);
        out.extend_from_slice(&fstrm::control(Control::Start, true));
        Ok(FrameFile {
            file,
            out,
            rotation,
        })
    }

    fn size(&self) -> u64 {
        self.file.size() + self.out.len() as u64
    }

    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        if let Some(r) = self.rotation {
            let start = fstrm::control(Control::Start, true).len() as u64;
            if self.size() > start && self.size() + frame.len() as u64 > r.size {
                self.stop()?;
                self.file.rotate(r.keep)?;
                self.out
                    .extend_from_slice(&fstrm::control(Control::Start, true));
            }
        }
        self.out.extend_from_slice(frame);
        if self.out.len() >= BUFFER {
            self.file.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.write_all(&self.out)?;
        self.out.clear();
        self.file.flush()
    }

    fn stop(&mut self) -> io::Result<()> {
        self.out
            .extend_from_slice(&fstrm::control(Control::Stop, false));
        self.flush()
    }
}
