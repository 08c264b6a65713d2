//! Values written as text in flags and in the agent's config file: a span of time, a size, a
//! fraction, an address. Each is parsed by one `FromStr`, which clap calls through
//! [`UnitParser`] (an error names the flag and the value as given) and serde through
//! `Deserialize` (an error is [`refused`], which the config file names by file, line and key).
//! The syntax is dnslens's own, not a crate's: sizes are binary (`16m` is 16 MiB) and a bare
//! number of seconds or a fraction of a second (`1.5s`) is a duration.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::bail;
use clap::builder::{TypedValueParser, ValueParserFactory};
use serde::de::{self, Deserialize, Deserializer};

/// Starts the message of a value a unit's parser refused in a config file, ahead of the value
/// as written: what sets it apart from the TOML parser's own errors (a wrong type), for
/// [`refused_value`] to take out.
const REFUSED: char = '\u{1f}';

/// The error of a value that was read but refused: `shown` is the value as written.
pub fn refused<E: de::Error>(shown: impl fmt::Display, why: impl fmt::Display) -> E {
    E::custom(format_args!("{REFUSED}{shown}: {why}"))
}

/// `VALUE: WHY` when a deserialize error's `message` is [`refused`]'s.
pub fn refused_value(message: &str) -> Option<&str> {
    message.strip_prefix(REFUSED)
}

/// A span of time longer than zero: `10s`, `500ms`, `2m`, `1h30m`, `1.5s`, `250us`; a bare
/// number is seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Duration> {
        let d = parse_duration(text)?;
        if d.is_zero() {
            bail!("must be longer than zero");
        }
        Ok(Duration(d))
    }
}

/// A number of bytes: `100MiB`, `100M`, `4096`, `512KiB`, `1GiB` (binary units).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<ByteSize> {
        parse_size(text).map(ByteSize)
    }
}

/// The size of the BPF ring buffer: a [`ByteSize`] that is a power of two of 4 KiB to 1 GiB,
/// as the kernel requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingBufferSize(pub u32);

impl FromStr for RingBufferSize {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<RingBufferSize> {
        parse_ring_size(text).map(RingBufferSize)
    }
}

/// A fraction from 0 to 1: of the ordinary events the agent writes.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Fraction(f64);

impl Fraction {
    pub fn new(value: f64) -> anyhow::Result<Fraction> {
        if !(0.0..=1.0).contains(&value) {
            bail!("give the fraction of events to write, from 0 to 1, e.g. 0.1");
        }
        Ok(Fraction(value))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl FromStr for Fraction {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Fraction> {
        match text.trim().parse::<f64>() {
            Ok(value) => Fraction::new(value),
            Err(_) => bail!("not a number: give the fraction of events to write, e.g. 0.1"),
        }
    }
}

/// An address and port to listen on: `127.0.0.1:9253`, `[::]:9253`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address(pub SocketAddr);

impl FromStr for Address {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Address> {
        match text.trim().parse() {
            Ok(address) => Ok(Address(address)),
            Err(_) => bail!(
                "not an address and port: write it like 127.0.0.1:9253, or 0.0.0.0:9253 for \
                 every address"
            ),
        }
    }
}

/// Where `--dnstap` sends: a Frame Streams receiver on a Unix socket or TCP (`dnstap -u`,
/// `fstrm_capture`, Vector, DNS-collector), or a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnstapAddress {
    Unix(PathBuf),
    /// `HOST:PORT`, resolved when connecting.
    Tcp(String),
    File(PathBuf),
}

impl FromStr for DnstapAddress {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<DnstapAddress> {
        let how =
            "write it as unix:/run/dnstap.sock, tcp:HOST:PORT or file:/var/log/dnslens.dnstap";
        let (scheme, rest) = text.trim().split_once(':').unwrap_or(("", ""));
        if rest.is_empty() {
            bail!("not a dnstap address: {how}");
        }
        Ok(match scheme {
            "unix" => DnstapAddress::Unix(PathBuf::from(rest)),
            "file" => DnstapAddress::File(PathBuf::from(rest)),
            "tcp"
                if rest.rsplit_once(':').is_some_and(|(h, p)| {
                    !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)
                }) =>
            {
                DnstapAddress::Tcp(rest.to_string())
            }
            "tcp" => bail!("tcp: needs HOST:PORT, e.g. tcp:127.0.0.1:6000"),
            _ => bail!("unknown scheme {scheme:?}: {how}"),
        })
    }
}

/// `10s`, `500ms`, `2m`, `1h30m`, `1.5s`, `250us`; a bare number is seconds. Zero is one.
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let s = text.trim();
    if s.is_empty() {
        bail!("empty duration: write it like 10s, 500ms or 2m");
    }
    if let Ok(secs) = s.parse::<f64>() {
        return seconds(secs, text);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let unit_end = rest[number_end..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |i| number_end + i);
        let (number, unit) = (&rest[..number_end], rest[number_end..unit_end].trim());
        let value: f64 = number.parse().map_err(|_| {
            anyhow::anyhow!("{text:?} is not a duration: write it like 10s, 500ms or 2m")
        })?;
        let unit_secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => bail!("unknown unit {unit:?} in {text:?}: use ns, us, ms, s, m, h or d"),
        };
        total += value * unit_secs;
        rest = &rest[unit_end..];
    }
    seconds(total, text)
}

fn seconds(secs: f64, text: &str) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow::anyhow!("{text:?} is not a duration of zero or more"))
}

/// `16MiB`, `16M`, `4096`, `512KiB`: binary units; a power of two of 4 KiB to 1 GiB, as the
/// BPF ring buffer requires.
pub fn parse_ring_size(text: &str) -> anyhow::Result<u32> {
    let bytes = parse_size(text)?;
    if !bytes.is_power_of_two() || !(4096..=1 << 30).contains(&bytes) {
        bail!("the ring buffer must be a power of two from 4KiB to 1GiB, e.g. 16MiB");
    }
    Ok(bytes as u32)
}

/// `100MiB`, `100M`, `4096`, `512KiB`, `1GiB`: a number of bytes, binary units.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    let number: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("not a size: write it like 16MiB"))?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => bail!("unknown unit {unit:?}: use KiB, MiB or GiB"),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| anyhow::anyhow!("{text:?} is too large a size"))
}

/// Reads a unit written as a TOML string with its `FromStr`.
fn from_string<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = anyhow::Error>,
{
    let text = String::deserialize(d)?;
    text.parse()
        .map_err(|e| refused(format_args!("{text:?}"), e))
}

/// Reads a size written as a string (`"100MiB"`) or a number of bytes with `FromStr`; either is
/// shown as text when refused.
fn from_size<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = anyhow::Error>,
{
    struct Text;
    impl de::Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a size such as \"100MiB\", or a number of bytes")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    let text = d.deserialize_any(Text)?;
    text.parse()
        .map_err(|e| refused(format_args!("{text:?}"), e))
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_string(d)
    }
}

impl<'de> Deserialize<'de> for DnstapAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_string(d)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_string(d)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_size(d)
    }
}

impl<'de> Deserialize<'de> for RingBufferSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_size(d)
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A whole number is a fraction too: `sample = 1`.
        let value = f64::deserialize(d)?;
        Fraction::new(value).map_err(|e| refused(value, e))
    }
}

/// Ports in a config file: `port = 5353` as the flag is written once, or `port = [5353, 5300]`;
/// 0 is refused, as `--port 0` is.
pub fn ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    struct Ports;
    impl<'de> de::Visitor<'de> for Ports {
        type Value = Vec<u16>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a port or a list of ports")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<u16>, E> {
            let port = u16::try_from(v);
            port.map(|p| vec![p])
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<u16>, E> {
            let port = u16::try_from(v);
            port.map(|p| vec![p])
                .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Vec<u16>, A::Error> {
            Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))
        }
    }
    let ports = d.deserialize_any(Ports)?;
    if ports.contains(&0) {
        return Err(refused(
            format_args!("{ports:?}"),
            "0 is not a port: give the ports DNS is served on",
        ));
    }
    Ok(ports)
}

/// clap's parser of a unit: its `FromStr`, an error naming the flag and the value as given
/// (`--timeout "0s": must be longer than zero`).
#[derive(Clone, Copy, Debug)]
pub struct UnitParser<T>(PhantomData<fn() -> T>);

impl<T> TypedValueParser for UnitParser<T>
where
    T: FromStr<Err = anyhow::Error> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let flag = arg.map_or_else(
            || "the value".to_string(),
            |a| match a.get_long() {
                Some(long) => format!("--{long}"),
                None => a.get_id().to_string(),
            },
        );
        let text = value.to_string_lossy();
        text.parse().map_err(|e: anyhow::Error| {
            // A number reads as itself, other text in quotes.
            let shown = match text.trim().parse::<f64>() {
                Ok(_) => text.to_string(),
                Err(_) => format!("{text:?}"),
            };
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{flag} {shown}: {e:#}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

macro_rules! parsed_by_clap {
    ($($unit:ty),*) => {$(
        impl ValueParserFactory for $unit {
            type Parser = UnitParser<$unit>;
            fn value_parser() -> Self::Parser {
                UnitParser(PhantomData)
            }
        }
    )*};
}

parsed_by_clap!(
    Duration,
    ByteSize,
    RingBufferSize,
    Fraction,
    Address,
    DnstapAddress
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnstap_addresses() {
        let ok = |t: &str| t.parse::<DnstapAddress>().unwrap();
        assert_eq!(
            ok("unix:/run/t.sock"),
            DnstapAddress::Unix("/run/t.sock".into())
        );
        assert_eq!(
            ok("tcp:[::1]:6000"),
            DnstapAddress::Tcp("[::1]:6000".into())
        );
        assert_eq!(ok("file:t.fstrm"), DnstapAddress::File("t.fstrm".into()));
        for bad in [
            "/run/t.sock",
            "unix:",
            "tcp:host",
            "tcp:host:0",
            "udp:1.2.3.4:5",
        ] {
            assert!(bad.parse::<DnstapAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        let ms = |n| std::time::Duration::from_millis(n);
        assert_eq!(parse_duration("10s").unwrap(), ms(10_000));
        assert_eq!(parse_duration("500ms").unwrap(), ms(500));
        assert_eq!(parse_duration("2m").unwrap(), ms(120_000));
        assert_eq!(parse_duration("1h30m").unwrap(), ms(5_400_000));
        assert_eq!(parse_duration("1.5s").unwrap(), ms(1_500));
        assert_eq!(parse_duration("3").unwrap(), ms(3_000));
        assert_eq!(
            parse_duration("250us").unwrap(),
            std::time::Duration::from_micros(250)
        );
        for bad in ["", "s", "10x", "ten seconds", "-1s", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_ring_size("16m").unwrap(), 16 << 20);
        assert_eq!(parse_ring_size("4096").unwrap(), 4096);
        assert_eq!(parse_ring_size("1GiB").unwrap(), 1 << 30);
        for bad in ["", "10MiB", "2KiB", "2GiB", "16 parsecs", "MiB"] {
            assert!(parse_ring_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn units_parse_as_the_docs_write_them() {
        let secs = |s| Duration(std::time::Duration::from_secs(s));
        assert_eq!("10m".parse::<Duration>().unwrap(), secs(600));
        assert_eq!("5s".parse::<Duration>().unwrap(), secs(5));
        let zero = "0s".parse::<Duration>().unwrap_err().to_string();
        assert!(zero.contains("longer than zero"), "{zero}");
        assert_eq!("100MiB".parse::<ByteSize>().unwrap(), ByteSize(100 << 20));
        assert_eq!("4096".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert_eq!(
            "8MiB".parse::<RingBufferSize>().unwrap(),
            RingBufferSize(8 << 20)
        );
        assert_eq!("0.25".parse::<Fraction>().unwrap().get(), 0.25);
        assert!("1.5".parse::<Fraction>().is_err() && "half".parse::<Fraction>().is_err());
        assert_eq!(
            "0.0.0.0:9253".parse::<Address>().unwrap(),
            Address("0.0.0.0:9253".parse().unwrap())
        );
        assert!("localhost".parse::<Address>().is_err());
    }

    #[test]
    fn a_refused_value_is_told_from_a_wrong_type() {
        #[derive(Debug, serde::Deserialize)]
        struct File {
            size: Option<ByteSize>,
            timeout: Option<Duration>,
            #[serde(default, deserialize_with = "ports")]
            port: Vec<u16>,
        }
        let message = |text: &str| {
            toml::from_str::<File>(text)
                .unwrap_err()
                .message()
                .to_string()
        };
        let size = message("size = 5000x");
        assert!(refused_value(&size).is_none(), "TOML's own: {size}");
        assert_eq!(
            refused_value(&message("size = \"10XB\"")),
            Some("\"10XB\": unknown unit \"XB\": use KiB, MiB or GiB")
        );
        assert_eq!(
            refused_value(&message("timeout = \"0s\"")),
            Some("\"0s\": must be longer than zero")
        );
        assert_eq!(
            refused_value(&message("port = [53, 0]")),
            Some("[53, 0]: 0 is not a port: give the ports DNS is served on")
        );
        let wrong = message("timeout = 5");
        assert!(
            refused_value(&wrong).is_none() && wrong.contains("expected a string"),
            "{wrong}"
        );
        let f: File = toml::from_str("size = 4096\ntimeout = \"1m\"\nport = [5353]").unwrap();
        assert_eq!(f.size, Some(ByteSize(4096)));
        assert_eq!(
            f.timeout.map(Duration::get),
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(f.port, [5353]);
    }

    #[test]
    fn flags_name_themselves_and_the_value_in_errors() {
        #[derive(Debug, clap::Parser)]
        struct Flags {
            #[arg(long)]
            timeout: Option<Duration>,
            #[arg(long)]
            sample: Option<Fraction>,
        }
        let error = |args: &[&str]| {
            <Flags as clap::Parser>::try_parse_from(
                std::iter::once("x").chain(args.iter().copied()),
            )
            .unwrap_err()
            .to_string()
        };
        let e = error(&["--timeout", "10x"]);
        assert!(
            e.contains("--timeout \"10x\": unknown unit \"x\" in \"10x\""),
            "{e}"
        );
        let e = error(&["--sample", "1.5"]);
        assert!(e.contains("--sample 1.5: give the fraction"), "{e}");
    }
}
