//! Record types and response codes: numeric newtypes with dig's mnemonics for display and
//! parsing (`"AAAA"`, `"NXDOMAIN"`), and the RFC 3597 `TYPEn` / `RCODEn` forms for the rest.

use std::fmt;
use std::str::FromStr;

/// A text that names no record type or response code.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("unknown {what} {input:?}: expected a mnemonic such as {example}, a number, or the {prefix}N form")]
pub struct ParseCodeError {
    what: &'static str,
    example: &'static str,
    prefix: &'static str,
    input: String,
}

/// Defines the mnemonic constants of a code newtype, its `Display` and its `FromStr`.
macro_rules! codes {
    ($ty:ident, $what:literal, $prefix:literal, $example:literal, { $($name:ident = $value:literal,)* }) => {
        impl $ty {
            $(pub const $name: $ty = $ty($value);)*

            const NAMED: &'static [(&'static str, u16)] = &[$((stringify!($name), $value),)*];

            /// The mnemonic, if this value has one.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, concat!($prefix, "{}"), self.0),
                }
            }
        }

        /// Case-insensitive mnemonic, or the numeric form (`TYPE65280`, `RCODE23`, `65280`).
        impl FromStr for $ty {
            type Err = ParseCodeError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if let Some(&(_, value)) = Self::NAMED.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
                    return Ok($ty(value));
                }
                // `TYPE65280`, or the bare number as users also type it.
                let digits = match s.get(..$prefix.len()) {
                    Some(p) if p.eq_ignore_ascii_case($prefix) => &s[$prefix.len()..],
                    _ => s,
                };
                let numeric = Some(digits)
                    .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|digits| digits.parse().ok());
                numeric.map($ty).ok_or_else(|| ParseCodeError {
                    what: $what,
                    example: $example,
                    prefix: $prefix,
                    input: s.to_owned(),
                })
            }
        }
    };
}

/// A resource record type (RFC 1035 TYPE / QTYPE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordType(pub u16);

codes!(RecordType, "record type", "TYPE", "AAAA", {
    A = 1,
    NS = 2,
    CNAME = 5,
    SOA = 6,
    MB = 7,
    MG = 8,
    MR = 9,
    NULL = 10,
    WKS = 11,
    PTR = 12,
    HINFO = 13,
    MINFO = 14,
    MX = 15,
    TXT = 16,
    RP = 17,
    AFSDB = 18,
    RT = 21,
    SIG = 24,
    KEY = 25,
    AAAA = 28,
    LOC = 29,
    SRV = 33,
    NAPTR = 35,
    KX = 36,
    CERT = 37,
    DNAME = 39,
    OPT = 41,
    APL = 42,
    DS = 43,
    SSHFP = 44,
    IPSECKEY = 45,
    RRSIG = 46,
    NSEC = 47,
    DNSKEY = 48,
    DHCID = 49,
    NSEC3 = 50,
    NSEC3PARAM = 51,
    TLSA = 52,
    SMIMEA = 53,
    HIP = 55,
    CDS = 59,
    CDNSKEY = 60,
    OPENPGPKEY = 61,
    CSYNC = 62,
    ZONEMD = 63,
    SVCB = 64,
    HTTPS = 65,
    SPF = 99,
    NID = 104,
    L32 = 105,
    L64 = 106,
    LP = 107,
    EUI48 = 108,
    EUI64 = 109,
    TKEY = 249,
    TSIG = 250,
    IXFR = 251,
    AXFR = 252,
    ANY = 255,
    URI = 256,
    CAA = 257,
});

/// A response code: the header's 4 bits, widened to 12 by the EDNS extended bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rcode(pub u16);

codes!(Rcode, "response code", "RCODE", "NXDOMAIN", {
    NOERROR = 0,
    FORMERR = 1,
    SERVFAIL = 2,
    NXDOMAIN = 3,
    NOTIMP = 4,
    REFUSED = 5,
    YXDOMAIN = 6,
    YXRRSET = 7,
    NXRRSET = 8,
    NOTAUTH = 9,
    NOTZONE = 10,
    DSOTYPENI = 11,
    BADVERS = 16,
    BADKEY = 17,
    BADTIME = 18,
    BADMODE = 19,
    BADNAME = 20,
    BADALG = 21,
    BADTRUNC = 22,
    BADCOOKIE = 23,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_type_display_and_parse() {
        assert_eq!(RecordType(1).to_string(), "A");
        assert_eq!(RecordType(65).to_string(), "HTTPS");
        assert_eq!(RecordType(64).to_string(), "SVCB");
        assert_eq!(RecordType(255).to_string(), "ANY");
        assert_eq!(RecordType(65280).to_string(), "TYPE65280");
        assert_eq!("aaaa".parse(), Ok(RecordType::AAAA));
        assert_eq!("Https".parse(), Ok(RecordType::HTTPS));
        assert_eq!("TYPE123".parse(), Ok(RecordType(123)));
        assert_eq!("type1".parse(), Ok(RecordType::A));
        assert_eq!("65280".parse(), Ok(RecordType(65280)));
        for bad in [
            "65536",
            "-1",
            "",
            "TYPE",
            "TYPE65536",
            "TYPE-1",
            "TYPE+1",
            "AAA",
            "TYPEé",
            "é",
        ] {
            assert!(bad.parse::<RecordType>().is_err(), "{bad:?}");
        }
        for &(name, value) in RecordType::NAMED {
            assert_eq!(name.parse(), Ok(RecordType(value)));
            assert_eq!(RecordType(value).to_string(), name);
        }
    }

    #[test]
    fn rcode_display_and_parse() {
        assert_eq!(Rcode(0).to_string(), "NOERROR");
        assert_eq!(Rcode(3).to_string(), "NXDOMAIN");
        assert_eq!(Rcode(16).to_string(), "BADVERS");
        assert_eq!(Rcode(24).to_string(), "RCODE24");
        assert_eq!("nxdomain".parse(), Ok(Rcode::NXDOMAIN));
        assert_eq!("RCODE23".parse(), Ok(Rcode(23)));
        assert_eq!("3".parse(), Ok(Rcode::NXDOMAIN));
        let err = "nope".parse::<Rcode>().unwrap_err();
        assert!(err.to_string().contains("RCODEN"), "{err}");
        for &(name, value) in Rcode::NAMED {
            assert_eq!(name.parse(), Ok(Rcode(value)));
        }
    }
}
