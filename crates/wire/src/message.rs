//! The message: header, flags and the four sections, decoded in one forward pass. EDNS (the
//! OPT pseudo-record) is lifted out of the additional section into [`Edns`].

use crate::error::{DecodeError, Section};
use crate::name::read_name;
use crate::rdata::write_rdata;
use crate::types::{Rcode, RecordType};

const HEADER_LEN: usize = 12;
/// Smallest question: the root name and QTYPE, QCLASS.
const MIN_QUESTION: usize = 1 + 4;
/// Smallest record: the root name and TYPE, CLASS, TTL, RDLENGTH.
const MIN_RECORD: usize = 1 + 10;

/// A decoded DNS message. Names and record data are in presentation form (see the crate docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub flags: Flags,
    /// 12-bit when EDNS carries the extended bits, else the header's 4 bits.
    pub rcode: Rcode,
    pub questions: Vec<Question>,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    /// Without the OPT pseudo-record, which is in [`Message::edns`].
    pub additional: Vec<Record>,
    pub edns: Option<Edns>,
}

impl Message {
    /// QR: the message is a response.
    pub fn is_response(&self) -> bool {
        self.flags.qr
    }

    /// The first question; real traffic carries exactly one.
    pub fn question(&self) -> Option<&Question> {
        self.questions.first()
    }
}

/// The header flags (RFC 1035 4.1.1, RFC 4035 for AD and CD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub qr: bool,
    pub opcode: u8,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub ad: bool,
    pub cd: bool,
}

impl Flags {
    fn from_header(hi: u8, lo: u8) -> Flags {
        Flags {
            qr: hi & 0x80 != 0,
            opcode: (hi >> 3) & 0x0f,
            aa: hi & 0x04 != 0,
            tc: hi & 0x02 != 0,
            rd: hi & 0x01 != 0,
            ra: lo & 0x80 != 0,
            ad: lo & 0x20 != 0,
            cd: lo & 0x10 != 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: RecordType,
    pub qclass: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: RecordType,
    pub class: u16,
    pub ttl: u32,
    /// Presentation form, e.g. `"10 mail.example.com"`; RFC 3597 `\# LEN HEX` when unknown.
    pub data: String,
}

/// The EDNS OPT pseudo-record (RFC 6891).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    /// Option code and length of each option, in order.
    pub options: Vec<(u16, usize)>,
}

/// The id, flags and question count, for paths that need no more than the fixed header.
pub fn peek_header(bytes: &[u8]) -> Option<(u16, Flags, u16)> {
    let header = bytes.get(..HEADER_LEN)?;
    Some((
        u16::from_be_bytes([header[0], header[1]]),
        Flags::from_header(header[2], header[3]),
        u16::from_be_bytes([header[4], header[5]]),
    ))
}

/// Decodes one DNS message (without the TCP length prefix). Bytes after the last record are
/// ignored.
///
/// A message whose header, counts, names or record framing are broken is an error; a record
/// whose typed data does not parse keeps its place with the data in RFC 3597 generic form.
/// Work is linear in `bytes.len()` and nothing is allocated from the header counts alone.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode_keeping(bytes, Keep::All)
}

/// [`decode`] for a view that shows the question and a response's answers only: the same checks,
/// the same errors and the same EDNS, but the answers of a query and the authority and
/// additional records are framed and skipped rather than formatted (a 64 KiB message of crafted
/// records formats to megabytes of text, only to be dropped).
pub fn decode_brief(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode_keeping(bytes, Keep::Brief)
}

/// Which records [`decode_keeping`] formats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    All,
    /// A response's answers; nothing else.
    Brief,
}

fn decode_keeping(bytes: &[u8], keep: Keep) -> Result<Message, DecodeError> {
    let (id, flags, _) = peek_header(bytes).ok_or(DecodeError::ShortHeader { len: bytes.len() })?;
    let count = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
    let counts = [count(4), count(6), count(8), count(10)];
    check_counts(bytes.len(), counts)?;
    let all = keep == Keep::All;

    let mut d = Decoder {
        msg: bytes,
        pos: HEADER_LEN,
        scratch: Vec::with_capacity(256),
    };
    let mut questions = Vec::with_capacity(counts[0].into());
    for _ in 0..counts[0] {
        questions.push(d.question()?);
    }
    let answers = d.records(Section::Answer, counts[1], all || flags.qr)?;
    let authority = d.records(Section::Authority, counts[2], all)?;

    let mut additional = Vec::with_capacity(if all { counts[3].into() } else { 0 });
    let mut edns = None;
    let mut extended_rcode = 0;
    for _ in 0..counts[3] {
        let start = d.pos;
        let raw = d.record_header(Section::Additional, all)?;
        if raw.rtype == RecordType::OPT {
            if edns.is_some() {
                return Err(DecodeError::DuplicateOpt { offset: start });
            }
            extended_rcode = (raw.ttl >> 24) as u16;
            edns = Some(Edns {
                udp_size: raw.class,
                version: (raw.ttl >> 16) as u8,
                dnssec_ok: raw.ttl & 0x8000 != 0,
                options: edns_options(bytes, raw.data_start, d.pos)?,
            });
        } else if all {
            additional.push(d.finish_record(Section::Additional, raw));
        }
    }

    Ok(Message {
        id,
        flags,
        rcode: Rcode(extended_rcode << 4 | u16::from(bytes[3] & 0x0f)),
        questions,
        answers,
        authority,
        additional,
        edns,
    })
}

/// Refuses counts that the bytes cannot hold; after this, capacities from counts are bounded
/// by the message length.
fn check_counts(len: usize, counts: [u16; 4]) -> Result<(), DecodeError> {
    let sections = [
        (Section::Question, MIN_QUESTION),
        (Section::Answer, MIN_RECORD),
        (Section::Authority, MIN_RECORD),
        (Section::Additional, MIN_RECORD),
    ];
    let mut need = HEADER_LEN;
    for ((section, min), count) in sections.into_iter().zip(counts) {
        need += usize::from(count) * min;
        if need > len {
            return Err(DecodeError::TooManyRecords { section, count });
        }
    }
    Ok(())
}

/// `(code, length)` of each option in the OPT data at `bytes[start..end]`.
fn edns_options(bytes: &[u8], start: usize, end: usize) -> Result<Vec<(u16, usize)>, DecodeError> {
    let malformed = || DecodeError::BadRdata {
        rtype: RecordType::OPT,
        offset: start,
    };
    let mut data = bytes.get(start..end).ok_or_else(malformed)?;
    let mut options = Vec::with_capacity(data.len() / 4);
    while let [c0, c1, l0, l1, rest @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        data = rest.get(len..).ok_or_else(malformed)?;
        options.push((u16::from_be_bytes([*c0, *c1]), len));
    }
    if data.is_empty() {
        Ok(options)
    } else {
        Err(malformed())
    }
}

/// The fixed fields of a record whose data is `msg[data_start..]` up to the decoder position.
struct RawRecord {
    name: String,
    rtype: RecordType,
    class: u16,
    ttl: u32,
    data_start: usize,
}

struct Decoder<'a> {
    msg: &'a [u8],
    pos: usize,
    /// Reused text buffer: each output string is copied out at its exact size.
    scratch: Vec<u8>,
}

impl Decoder<'_> {
    fn take_scratch(&mut self) -> String {
        // The writers emit only ASCII, so the lossy fallback is never taken; `from_utf8` has
        // the faster check, and the clone is the one exact-size allocation of the string.
        let text = String::from_utf8(self.scratch.clone())
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        self.scratch.clear();
        text
    }

    fn name(&mut self, section: Section) -> Result<String, DecodeError> {
        self.pos = read_name(self.msg, self.pos, section, Some(&mut self.scratch))?;
        Ok(self.take_scratch())
    }

    fn fixed<const N: usize>(&mut self, section: Section) -> Result<[u8; N], DecodeError> {
        let end = self.pos + N;
        let bytes = self
            .msg
            .get(self.pos..end)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError::Truncated {
                section,
                offset: self.msg.len(),
            })?;
        self.pos = end;
        Ok(bytes)
    }

    fn question(&mut self) -> Result<Question, DecodeError> {
        let name = self.name(Section::Question)?;
        let [t0, t1, c0, c1] = self.fixed(Section::Question)?;
        Ok(Question {
            name,
            qtype: RecordType(u16::from_be_bytes([t0, t1])),
            qclass: u16::from_be_bytes([c0, c1]),
        })
    }

    /// The section's records; with `keep` false they are checked and skipped, none kept.
    fn records(
        &mut self,
        section: Section,
        count: u16,
        keep: bool,
    ) -> Result<Vec<Record>, DecodeError> {
        let mut records = Vec::with_capacity(if keep { count.into() } else { 0 });
        for _ in 0..count {
            let raw = self.record_header(section, keep)?;
            if keep {
                records.push(self.finish_record(section, raw));
            }
        }
        Ok(records)
    }

    /// Reads a record up to and past its data, leaving the data unformatted; the owner name is
    /// checked in any case, and kept only when `named`.
    fn record_header(&mut self, section: Section, named: bool) -> Result<RawRecord, DecodeError> {
        let name = if named {
            self.name(section)?
        } else {
            // Checked, not formatted: a crafted owner name formats to ~1 KB of escapes.
            self.pos = read_name(self.msg, self.pos, section, None)?;
            String::new()
        };
        let [t0, t1, c0, c1, l0, l1, l2, l3, r0, r1] = self.fixed(section)?;
        let data_start = self.pos;
        let data_end = data_start + usize::from(u16::from_be_bytes([r0, r1]));
        if data_end > self.msg.len() {
            return Err(DecodeError::Truncated {
                section,
                offset: self.msg.len(),
            });
        }
        self.pos = data_end;
        Ok(RawRecord {
            name,
            rtype: RecordType(u16::from_be_bytes([t0, t1])),
            class: u16::from_be_bytes([c0, c1]),
            ttl: u32::from_be_bytes([l0, l1, l2, l3]),
            data_start,
        })
    }

    fn finish_record(&mut self, section: Section, raw: RawRecord) -> Record {
        write_rdata(
            self.msg,
            raw.rtype,
            raw.data_start,
            self.pos,
            section,
            &mut self.scratch,
        );
        Record {
            name: raw.name,
            rtype: raw.rtype,
            class: raw.class,
            ttl: raw.ttl,
            data: self.take_scratch(),
        }
    }
}
