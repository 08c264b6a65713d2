//! A small DNS message builder for tests and benches, with name compression, so test
//! messages are written as records rather than byte dumps.

use std::collections::HashMap;

pub const QUESTION: usize = 0;
pub const ANSWER: usize = 1;
pub const AUTHORITY: usize = 2;
pub const ADDITIONAL: usize = 3;

/// One piece of record data.
pub enum Part<'a> {
    Name(&'a str),
    U8(u8),
    U16(u16),
    U32(u32),
    Bytes(&'a [u8]),
    /// An RFC 1035 character-string: length byte, then the bytes.
    Str(&'a [u8]),
}

pub struct Builder {
    buf: Vec<u8>,
    counts: [u16; 4],
    names: HashMap<String, u16>,
    compress: bool,
}

impl Builder {
    /// A message with `id` and the 16 flag bits of header bytes 2..4.
    pub fn new(id: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&[0; 8]);
        Builder {
            buf,
            counts: [0; 4],
            names: HashMap::new(),
            compress: true,
        }
    }

    pub fn query(id: u16, name: &str, qtype: u16) -> Self {
        let mut b = Builder::new(id, 0x0100);
        b.question(name, qtype);
        b
    }

    pub fn uncompressed(mut self) -> Self {
        self.compress = false;
        self
    }

    pub fn question(&mut self, name: &str, qtype: u16) -> &mut Self {
        self.name(name);
        self.buf.extend_from_slice(&qtype.to_be_bytes());
        self.buf.extend_from_slice(&1u16.to_be_bytes());
        self.counts[QUESTION] += 1;
        self
    }

    pub fn answer(&mut self, name: &str, rtype: u16, ttl: u32, data: &[Part<'_>]) -> &mut Self {
        self.record(ANSWER, name, rtype, 1, ttl, data)
    }

    pub fn record(
        &mut self,
        section: usize,
        name: &str,
        rtype: u16,
        class: u16,
        ttl: u32,
        data: &[Part<'_>],
    ) -> &mut Self {
        self.name(name);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        for part in data {
            match *part {
                Part::Name(n) => self.name(n),
                Part::U8(v) => self.buf.push(v),
                Part::U16(v) => self.buf.extend_from_slice(&v.to_be_bytes()),
                Part::U32(v) => self.buf.extend_from_slice(&v.to_be_bytes()),
                Part::Bytes(b) => self.buf.extend_from_slice(b),
                Part::Str(s) => {
                    self.buf.push(s.len() as u8);
                    self.buf.extend_from_slice(s);
                }
            }
        }
        let len = (self.buf.len() - len_at - 2) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
        self.counts[section] += 1;
        self
    }

    /// EDNS OPT with `udp_size`, the TTL field's bits, and options `(code, data)`.
    pub fn opt(&mut self, udp_size: u16, ttl: u32, options: &[(u16, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (code, value) in options {
            data.extend_from_slice(&code.to_be_bytes());
            data.extend_from_slice(&(value.len() as u16).to_be_bytes());
            data.extend_from_slice(value);
        }
        self.record(ADDITIONAL, ".", 41, udp_size, ttl, &[Part::Bytes(&data)])
    }

    /// Overrides a header count, e.g. to make it lie.
    pub fn set_count(&mut self, section: usize, count: u16) -> &mut Self {
        self.counts[section] = count;
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        for (i, count) in self.counts.iter().enumerate() {
            out[4 + 2 * i..6 + 2 * i].copy_from_slice(&count.to_be_bytes());
        }
        out
    }

    /// Writes a dotted name (no escapes), pointing at an earlier copy of any suffix.
    fn name(&mut self, name: &str) {
        let name = name.trim_end_matches('.');
        let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
        for i in 0..labels.len() {
            let suffix = labels[i..].join(".").to_ascii_lowercase();
            if self.compress {
                if let Some(&at) = self.names.get(&suffix) {
                    self.buf.extend_from_slice(&(0xc000 | at).to_be_bytes());
                    return;
                }
                if self.buf.len() < 0x4000 {
                    self.names.insert(suffix, self.buf.len() as u16);
                }
            }
            self.buf.push(labels[i].len() as u8);
            self.buf.extend_from_slice(labels[i].as_bytes());
        }
        self.buf.push(0);
    }
}

/// The typical response of the benches: a CNAME and two A records, compressed, with EDNS.
pub fn typical_response() -> Vec<u8> {
    let mut b = Builder::new(0xbeef, 0x8180);
    b.question("www.example.com", 1)
        .answer(
            "www.example.com",
            5,
            300,
            &[Part::Name("www.example.com.cdn.example.net")],
        )
        .answer(
            "www.example.com.cdn.example.net",
            1,
            60,
            &[Part::Bytes(&[93, 184, 216, 34])],
        )
        .answer(
            "www.example.com.cdn.example.net",
            1,
            60,
            &[Part::Bytes(&[93, 184, 216, 35])],
        )
        .opt(1232, 0, &[]);
    b.build()
}

/// The typical query of the benches, with EDNS and a cookie.
pub fn typical_query() -> Vec<u8> {
    let mut b = Builder::query(0xbeef, "www.example.com", 1);
    b.opt(1232, 0, &[(10, &[1, 2, 3, 4, 5, 6, 7, 8])]);
    b.build()
}

/// A large response: 20 A records for one name.
pub fn large_response() -> Vec<u8> {
    let mut b = Builder::new(0x1234, 0x8180);
    b.question("pool.ntp.example.org", 1);
    for i in 0..20u8 {
        b.answer(
            "pool.ntp.example.org",
            1,
            150,
            &[Part::Bytes(&[192, 0, 2, i])],
        );
    }
    b.build()
}

/// A deterministic xorshift generator: property tests without a dependency.
pub struct Rng(pub u64);

impl Rng {
    // Not an Iterator: it never ends, and callers take one value at a time.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
