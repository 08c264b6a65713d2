//! Record data in dig's presentation format. Unknown types, and typed data that does not
//! parse, are shown in the RFC 3597 generic form `\# LEN HEX`.

use crate::error::Section;
use crate::name::{push_ddd, read_name};
use crate::types::RecordType;
use std::io::Write;
use std::net::Ipv6Addr;

/// Appends the presentation form of the data of a `rtype` record at `msg[start..end]`.
/// Names inside the data may point anywhere earlier in `msg`, hence the whole message.
pub(crate) fn write_rdata(
    msg: &[u8],
    rtype: RecordType,
    start: usize,
    end: usize,
    section: Section,
    out: &mut Vec<u8>,
) {
    let mark = out.len();
    let mut rd = Rdata {
        msg,
        pos: start,
        end,
        section,
    };
    if write_typed(&mut rd, rtype, out).is_none() {
        out.truncate(mark);
        write_generic(msg.get(start..end).unwrap_or_default(), out);
    }
}

/// RFC 3597 section 5: `\# 4 0A000001`.
fn write_generic(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"\\# ");
    push_u32(out, data.len() as u32);
    if !data.is_empty() {
        out.push(b' ');
        push_hex(out, data);
    }
}

/// `None` when the data does not parse as `rtype` or has bytes left over.
fn write_typed(rd: &mut Rdata<'_>, rtype: RecordType, out: &mut Vec<u8>) -> Option<()> {
    match rtype {
        RecordType::A => push_ipv4(out, rd.bytes(4)?),
        RecordType::AAAA => {
            let ip: [u8; 16] = rd.bytes(16)?.try_into().ok()?;
            write!(out, "{}", Ipv6Addr::from(ip)).ok()?;
        }
        RecordType::NS
        | RecordType::CNAME
        | RecordType::PTR
        | RecordType::DNAME
        | RecordType::MB
        | RecordType::MG
        | RecordType::MR => rd.name(out)?,
        RecordType::MX | RecordType::AFSDB | RecordType::RT | RecordType::KX => {
            rd.u16(out)?;
            out.push(b' ');
            rd.name(out)?;
        }
        RecordType::SOA => {
            rd.name(out)?;
            out.push(b' ');
            rd.name(out)?;
            for _ in 0..5 {
                out.push(b' ');
                push_u32(out, rd.u32()?);
            }
        }
        RecordType::TXT | RecordType::SPF => {
            rd.char_string(out)?;
            while rd.pos < rd.end {
                out.push(b' ');
                rd.char_string(out)?;
            }
        }
        RecordType::HINFO => {
            rd.char_string(out)?;
            out.push(b' ');
            rd.char_string(out)?;
        }
        RecordType::SRV => {
            for _ in 0..3 {
                rd.u16(out)?;
                out.push(b' ');
            }
            rd.name(out)?;
        }
        RecordType::NAPTR => {
            for _ in 0..2 {
                rd.u16(out)?;
                out.push(b' ');
            }
            for _ in 0..3 {
                rd.char_string(out)?;
                out.push(b' ');
            }
            rd.name(out)?;
        }
        RecordType::CAA => {
            push_u32(out, rd.u8()?.into());
            out.push(b' ');
            let tag_len = rd.u8()?;
            let tag = rd.bytes(tag_len.into())?;
            if tag.is_empty() || !tag.iter().all(u8::is_ascii_alphanumeric) {
                return None;
            }
            out.extend_from_slice(tag);
            out.push(b' ');
            push_quoted(out, rd.rest());
        }
        RecordType::DS | RecordType::CDS => {
            rd.u16(out)?;
            for _ in 0..2 {
                out.push(b' ');
                push_u32(out, rd.u8()?.into());
            }
            out.push(b' ');
            push_hex(out, rd.rest_nonempty()?);
        }
        RecordType::DNSKEY | RecordType::CDNSKEY => {
            rd.u16(out)?;
            for _ in 0..2 {
                out.push(b' ');
                push_u32(out, rd.u8()?.into());
            }
            out.push(b' ');
            push_base64(out, rd.rest_nonempty()?);
        }
        RecordType::RRSIG => {
            write!(out, "{}", RecordType(rd.u16_value()?)).ok()?;
            for _ in 0..2 {
                out.push(b' ');
                push_u32(out, rd.u8()?.into());
            }
            out.push(b' ');
            push_u32(out, rd.u32()?);
            for _ in 0..2 {
                out.push(b' ');
                push_timestamp(out, rd.u32()?);
            }
            out.push(b' ');
            rd.u16(out)?;
            out.push(b' ');
            rd.name(out)?;
            out.push(b' ');
            push_base64(out, rd.rest_nonempty()?);
        }
        RecordType::SVCB | RecordType::HTTPS => {
            rd.u16(out)?;
            out.push(b' ');
            rd.name(out)?;
            while rd.pos < rd.end {
                out.push(b' ');
                let key = rd.u16_value()?;
                let len = rd.u16_value()?;
                push_svc_param(out, key, rd.bytes(len.into())?)?;
            }
        }
        _ => return None,
    }
    (rd.pos == rd.end).then_some(())
}

/// Appends one SVCB/HTTPS parameter (RFC 9460 section 7) as `key=value`.
fn push_svc_param(out: &mut Vec<u8>, key: u16, value: &[u8]) -> Option<()> {
    push_svc_key(out, key);
    match key {
        0 if !value.is_empty() && value.len().is_multiple_of(2) => {
            out.push(b'=');
            for (i, k) in value.chunks_exact(2).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_svc_key(out, u16::from_be_bytes([k[0], k[1]]));
            }
        }
        1 if !value.is_empty() => {
            out.extend_from_slice(b"=\"");
            let mut ids = value;
            let mut first = true;
            while let Some((&len, rest)) = ids.split_first() {
                let id = rest.get(..usize::from(len)).filter(|id| !id.is_empty())?;
                if !first {
                    out.push(b',');
                }
                first = false;
                // A comma inside an id is escaped so the list still splits (RFC 9460 A.1).
                for &b in id {
                    if b == b',' {
                        out.extend_from_slice(b"\\\\,");
                    } else {
                        push_string_byte(out, b);
                    }
                }
                ids = &rest[id.len()..];
            }
            out.push(b'"');
        }
        2 if value.is_empty() => {}
        3 if value.len() == 2 => {
            out.push(b'=');
            push_u32(out, u16::from_be_bytes([value[0], value[1]]).into());
        }
        4 if !value.is_empty() && value.len().is_multiple_of(4) => {
            out.push(b'=');
            for (i, ip) in value.chunks_exact(4).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_ipv4(out, ip);
            }
        }
        5 if !value.is_empty() => {
            out.push(b'=');
            push_base64(out, value);
        }
        6 if !value.is_empty() && value.len().is_multiple_of(16) => {
            out.push(b'=');
            for (i, ip) in value.chunks_exact(16).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let ip: [u8; 16] = ip.try_into().ok()?;
                write!(out, "{}", Ipv6Addr::from(ip)).ok()?;
            }
        }
        0..=6 => return None,
        _ if value.is_empty() => {}
        _ => {
            out.push(b'=');
            push_hex(out, value);
        }
    }
    Some(())
}

fn push_svc_key(out: &mut Vec<u8>, key: u16) {
    match key {
        0 => out.extend_from_slice(b"mandatory"),
        1 => out.extend_from_slice(b"alpn"),
        2 => out.extend_from_slice(b"no-default-alpn"),
        3 => out.extend_from_slice(b"port"),
        4 => out.extend_from_slice(b"ipv4hint"),
        5 => out.extend_from_slice(b"ech"),
        6 => out.extend_from_slice(b"ipv6hint"),
        _ => {
            out.extend_from_slice(b"key");
            push_u32(out, key.into());
        }
    }
}

/// A cursor over one record's data; every read stays below `end`.
struct Rdata<'a> {
    msg: &'a [u8],
    pos: usize,
    end: usize,
    section: Section,
}

impl<'a> Rdata<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos + n;
        if end > self.end {
            return None;
        }
        let bytes = self.msg.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    fn u16_value(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a 16-bit number and appends it in decimal.
    fn u16(&mut self, out: &mut Vec<u8>) -> Option<()> {
        push_u32(out, self.u16_value()?.into());
        Some(())
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = self.msg.get(self.pos..self.end).unwrap_or_default();
        self.pos = self.end;
        rest
    }

    fn rest_nonempty(&mut self) -> Option<&'a [u8]> {
        Some(self.rest()).filter(|r| !r.is_empty())
    }

    /// A name that starts, and ends where it sits, inside the data.
    fn name(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let next = read_name(self.msg, self.pos, self.section, Some(out)).ok()?;
        if next > self.end {
            return None;
        }
        self.pos = next;
        Some(())
    }

    /// An RFC 1035 character-string, quoted.
    fn char_string(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let len = self.u8()?;
        push_quoted(out, self.bytes(len.into())?);
        Some(())
    }
}

/// Appends `"text"` with dig's escapes: `\"`, `\\` and `\DDD` for unprintable bytes.
fn push_quoted(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    text.iter().for_each(|&b| push_string_byte(out, b));
    out.push(b'"');
}

fn push_string_byte(out: &mut Vec<u8>, b: u8) {
    match b {
        b'"' | b'\\' => {
            out.push(b'\\');
            out.push(b);
        }
        0x20..=0x7e => out.push(b),
        _ => push_ddd(out, b),
    }
}

fn push_ipv4(out: &mut Vec<u8>, ip: &[u8]) {
    for (i, &octet) in ip.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_u32(out, octet.into());
    }
}

/// Decimal without going through `core::fmt`, which costs more than the rest of an A record.
fn push_u32(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_hex(out: &mut Vec<u8>, data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in data {
        out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
    }
}

fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 0x3f) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// RRSIG times as dig prints them, `YYYYMMDDHHMMSS` in UTC (RFC 4034 section 3.2).
fn push_timestamp(out: &mut Vec<u8>, secs: u32) {
    // Civil date from days since 1970-01-01 (H. Hinnant's civil_from_days); all terms stay
    // non-negative and within u32 for any u32 time.
    let z = secs / 86_400 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u32::from(month <= 2);
    let rem = secs % 86_400;
    push_padded(out, year, 4);
    for part in [month, day, rem / 3600, rem / 60 % 60, rem % 60] {
        push_padded(out, part, 2);
    }
}

fn push_padded(out: &mut Vec<u8>, n: u32, width: u32) {
    let digits = n.checked_ilog10().unwrap_or(0) + 1;
    for _ in digits..width {
        out.push(b'0');
    }
    push_u32(out, n);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(push: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        push(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn base64(data: &[u8]) -> String {
        text(|out| push_base64(out, data))
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn timestamps() {
        let ts = |secs| text(|out| push_timestamp(out, secs));
        assert_eq!(ts(0), "19700101000000");
        assert_eq!(ts(951_782_400), "20000229000000");
        assert_eq!(ts(1_700_000_000), "20231114221320");
        assert_eq!(ts(u32::MAX), "21060207062815");
    }

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 255, 65_535, u32::MAX] {
            assert_eq!(text(|out| push_u32(out, n)), n.to_string());
        }
    }
}
