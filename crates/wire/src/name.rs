//! Domain names: the bounded, loop-free walk over (compressed) wire names, and their
//! presentation form as dig prints it: case kept, no trailing dot, the root is `.`, special
//! bytes escaped as `\.` and unprintable ones as `\DDD`.

use crate::error::{DecodeError, Section};

/// RFC 1035 section 2.3.4: the wire form of a name, root octet included.
const MAX_NAME_OCTETS: usize = 255;
/// A 255-octet name has at most 127 labels, so no encoder needs more pointers than that.
const MAX_POINTERS: usize = 127;

/// Reads the name at `start`, appends its presentation form to `out` (`None` only checks it),
/// and returns the offset just past the name where it sits (past its first pointer, if
/// compressed).
///
/// A pointer must land below every byte of the name read so far, which rules out loops, and a
/// name follows at most [`MAX_POINTERS`] of them: the work per name is bounded by 255 octets.
pub(crate) fn read_name(
    msg: &[u8],
    start: usize,
    section: Section,
    mut out: Option<&mut Vec<u8>>,
) -> Result<usize, DecodeError> {
    let mut written = false;
    let mut pos = start;
    // Lowest offset of this name read so far: pointers must land strictly below it.
    let mut lowest = start;
    let mut resume = None;
    let mut octets = 1;
    let mut pointers = 0;
    loop {
        let len = *msg.get(pos).ok_or(DecodeError::Truncated {
            section,
            offset: pos,
        })?;
        match len {
            0 => {
                if let (Some(out), false) = (out, written) {
                    out.push(b'.');
                }
                return Ok(resume.unwrap_or(pos + 1));
            }
            1..=63 => {
                let end = pos + 1 + usize::from(len);
                let label = msg.get(pos + 1..end).ok_or(DecodeError::Truncated {
                    section,
                    offset: msg.len(),
                })?;
                octets += 1 + usize::from(len);
                if octets > MAX_NAME_OCTETS {
                    return Err(DecodeError::NameTooLong { offset: start });
                }
                if let Some(out) = out.as_deref_mut() {
                    if written {
                        out.push(b'.');
                    }
                    push_label(out, label);
                }
                written = true;
                pos = end;
            }
            64..=127 => return Err(DecodeError::LabelTooLong { offset: pos, len }),
            128..=191 => {
                return Err(DecodeError::BadLabelType {
                    offset: pos,
                    byte: len,
                })
            }
            192..=255 => {
                let low = *msg.get(pos + 1).ok_or(DecodeError::Truncated {
                    section,
                    offset: pos + 1,
                })?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                let offset = pos;
                if target >= msg.len() {
                    return Err(DecodeError::PointerOutOfRange { offset, target });
                }
                if target > pos {
                    return Err(DecodeError::PointerForward { offset, target });
                }
                if target >= lowest {
                    return Err(DecodeError::PointerLoop { offset, target });
                }
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(DecodeError::TooManyPointers { offset: start });
                }
                resume.get_or_insert(pos + 2);
                pos = target;
                lowest = target;
            }
        }
    }
}

/// Appends one label, escaping like dig so that the text splits back into the same labels.
fn push_label(out: &mut Vec<u8>, label: &[u8]) {
    // Most labels need no escape: copy them whole.
    if label.iter().all(|&b| is_plain(b)) {
        out.extend_from_slice(label);
        return;
    }
    for &b in label {
        match b {
            b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                out.extend_from_slice(&[b'\\', b])
            }
            0x21..=0x7e => out.push(b),
            _ => push_ddd(out, b),
        }
    }
}

/// Bytes common in hostnames that never need an escape.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*' | b'/')
}

/// Appends `\DDD`, the decimal escape of a byte.
pub(crate) fn push_ddd(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'\\', b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(msg: &[u8], start: usize) -> Result<(String, usize), DecodeError> {
        let mut out = Vec::new();
        read_name(msg, start, Section::Answer, Some(&mut out))
            .map(|next| (String::from_utf8(out).unwrap(), next))
    }

    #[test]
    fn plain_root_and_escaped() {
        assert_eq!(
            name(b"\x03www\x07Example\x03com\x00", 0),
            Ok(("www.Example.com".into(), 17))
        );
        assert_eq!(name(b"\x00", 0), Ok((".".into(), 1)));
        assert_eq!(
            name(b"\x03a.b\x02\x00 \x00", 0),
            Ok((r"a\.b.\000\032".into(), 8))
        );
        assert_eq!(name(b"\x03\"\\\xff\x00", 0), Ok((r#"\"\\\255"#.into(), 5)));
    }

    #[test]
    fn pointer_resumes_after_first_pointer() {
        let msg = b"\x03com\x00\x07example\xc0\x00";
        assert_eq!(name(msg, 5), Ok(("example.com".into(), 15)));
    }

    #[test]
    fn pointer_rules() {
        let out_of_range = b"\x01a\xc0\x09";
        assert_eq!(
            name(out_of_range, 0),
            Err(DecodeError::PointerOutOfRange {
                offset: 2,
                target: 9
            })
        );
        let forward = b"\xc0\x02\x00";
        assert_eq!(
            name(forward, 0),
            Err(DecodeError::PointerForward {
                offset: 0,
                target: 2
            })
        );
        let this = b"\xc0\x00";
        assert_eq!(
            name(this, 0),
            Err(DecodeError::PointerLoop {
                offset: 0,
                target: 0
            })
        );
        let back_into_self = b"\x01a\xc0\x00";
        assert_eq!(
            name(back_into_self, 0),
            Err(DecodeError::PointerLoop {
                offset: 2,
                target: 0
            })
        );
        // Pointer k sits at 2k+1 and targets pointer k-1 (pointer 0 targets the root at 0):
        // a legal chain, refused past 127 jumps.
        let mut chain = vec![0, 0xc0, 0];
        for k in 1..128u16 {
            chain.extend_from_slice(&(0xc000 | (2 * k - 1)).to_be_bytes());
        }
        assert_eq!(name(&chain, 253), Ok((".".into(), 255)));
        assert_eq!(
            name(&chain, 255),
            Err(DecodeError::TooManyPointers { offset: 255 })
        );
    }

    #[test]
    fn label_and_name_limits() {
        assert_eq!(
            name(b"\x40", 0),
            Err(DecodeError::LabelTooLong { offset: 0, len: 64 })
        );
        assert_eq!(
            name(b"\x80", 0),
            Err(DecodeError::BadLabelType {
                offset: 0,
                byte: 0x80
            })
        );
        let mut long = Vec::new();
        for _ in 0..4 {
            long.push(63);
            long.extend_from_slice(&[b'x'; 63]);
        }
        long.push(0);
        assert_eq!(name(&long, 0), Err(DecodeError::NameTooLong { offset: 0 }));
        // 3 x 64 + 62 + 1 = 255 octets: the longest legal name.
        long.truncate(3 * 64);
        long.push(61);
        long.extend_from_slice(&[b'y'; 61]);
        long.push(0);
        assert_eq!(long.len(), 255);
        assert_eq!(name(&long, 0).map(|(n, _)| n.len()), Ok(3 * 64 + 61));
    }

    #[test]
    fn truncated() {
        for msg in [&b""[..], b"\x03ww", b"\x03www", b"\xc0"] {
            assert!(
                matches!(name(msg, 0), Err(DecodeError::Truncated { .. })),
                "{msg:?}"
            );
        }
    }
}
