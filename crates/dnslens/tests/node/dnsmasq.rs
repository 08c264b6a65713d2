//! The test zone served by dnsmasq, and the parser of dnsmasq's `log-queries=extra` log, which is
//! the ground truth of which queries reached the server.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

/// Domain answered locally: names under it that are not configured get NXDOMAIN.
pub const DOMAIN: &str = "dnslens.test";
/// A and AAAA through `--host-record`.
pub const HOST: &str = "host.dnslens.test";
pub const HOST_V4: &str = "203.0.113.11";
pub const HOST_V6: &str = "2001:db8::11";
/// A and AAAA through `--address`.
pub const ADDR: &str = "addr.dnslens.test";
pub const ADDR_V4: &str = "203.0.113.10";
pub const ADDR_V6: &str = "2001:db8::10";
/// CNAME to HOST.
pub const ALIAS: &str = "alias.dnslens.test";
pub const TXT: &str = "txt.dnslens.test";
pub const TXT_VALUE: &str = "hello dnslens";
pub const SRV: &str = "_dns._udp.dnslens.test";
/// BIG_COUNT A records: over 1,232 bytes, so the UDP answer is truncated even for clients that
/// offer EDNS (dnsmasq's default edns-packet-max), and clients retry over TCP.
pub const BIG: &str = "big.dnslens.test";
pub const BIG_COUNT: u32 = 100;
/// Not configured: NXDOMAIN.
pub const NX: &str = "nx.dnslens.test";

/// The dnsmasq options that serve the zone above.
pub fn zone_args() -> Vec<String> {
    let mut args = vec![
        format!("--local=/{DOMAIN}/"),
        format!("--host-record={HOST},{HOST_V4},{HOST_V6}"),
        format!("--address=/{ADDR}/{ADDR_V4}"),
        format!("--address=/{ADDR}/{ADDR_V6}"),
        format!("--cname={ALIAS},{HOST}"),
        format!("--txt-record={TXT},{TXT_VALUE}"),
        format!("--srv-host={SRV},{HOST},53,1,2"),
    ];
    args.extend((1..=BIG_COUNT).map(|i| format!("--host-record={BIG},{}", big_addr(i))));
    args
}

/// The i-th (1-based) address of BIG.
pub fn big_addr(i: u32) -> String {
    format!("198.51.100.{i}")
}

/// One `query[TYPE] NAME from ADDR` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogQuery {
    /// The dnsmasq process that logged it: the main process for UDP, a forked child for TCP.
    pub dnsmasq_pid: u32,
    pub serial: u64,
    pub client: SocketAddr,
    pub qtype: String,
    pub qname: String,
    pub line: String,
}

/// One `config NAME is VALUE` / `reply NAME is VALUE` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogAnswer {
    pub dnsmasq_pid: u32,
    pub serial: u64,
    pub name: String,
    pub value: String,
}

/// A parsed dnsmasq log.
#[derive(Clone, Debug, Default)]
pub struct DnsmasqLog {
    pub queries: Vec<LogQuery>,
    pub answers: Vec<LogAnswer>,
    pub lines: Vec<String>,
}

impl DnsmasqLog {
    pub fn parse(text: &str) -> DnsmasqLog {
        let mut log = DnsmasqLog::default();
        for line in text.lines() {
            log.lines.push(line.to_string());
            let Some((pid, serial, client, rest)) = split_extra(line) else {
                continue;
            };
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                [q, name, "from", _] if q.starts_with("query[") && q.ends_with(']') => {
                    log.queries.push(LogQuery {
                        dnsmasq_pid: pid,
                        serial,
                        client,
                        qtype: q["query[".len()..q.len() - 1].to_string(),
                        qname: name.to_string(),
                        line: line.to_string(),
                    })
                }
                ["config" | "reply" | "cached", name, "is", value @ ..] => {
                    log.answers.push(LogAnswer {
                        dnsmasq_pid: pid,
                        serial,
                        name: name.to_string(),
                        value: value.join(" "),
                    })
                }
                _ => {}
            }
        }
        log
    }

    /// Whether the query came over TCP: dnsmasq answers TCP in a forked child.
    pub fn is_tcp(&self, q: &LogQuery, main_pid: u32) -> bool {
        q.dnsmasq_pid != main_pid
    }

    fn answers_of<'a>(&'a self, q: &'a LogQuery) -> impl Iterator<Item = &'a LogAnswer> + 'a {
        self.answers
            .iter()
            .filter(move |a| a.dnsmasq_pid == q.dnsmasq_pid && a.serial == q.serial)
    }

    /// The response code dnsmasq gave.
    pub fn rcode(&self, q: &LogQuery) -> &'static str {
        if self.answers_of(q).any(|a| a.value == "NXDOMAIN") {
            "NXDOMAIN"
        } else {
            "NOERROR"
        }
    }

    /// The addresses dnsmasq answered with (for A and AAAA queries).
    pub fn addresses(&self, q: &LogQuery) -> BTreeSet<IpAddr> {
        self.answers_of(q)
            .filter_map(|a| a.value.parse().ok())
            .collect()
    }

    /// The log lines of one query (same process and serial), for failure reports.
    pub fn excerpt(&self, q: &LogQuery) -> String {
        let tag = format!("dnsmasq[{}]: {} ", q.dnsmasq_pid, q.serial);
        let lines: Vec<&str> = self
            .lines
            .iter()
            .filter(|l| l.contains(&tag))
            .map(String::as_str)
            .collect();
        if lines.len() > 6 {
            format!(
                "{}\n  ... ({} more lines)",
                lines[..6].join("\n"),
                lines.len() - 6
            )
        } else {
            lines.join("\n")
        }
    }
}

/// Splits `... dnsmasq[PID]: SERIAL ADDR/PORT REST` (the `extra` format).
fn split_extra(line: &str) -> Option<(u32, u64, SocketAddr, &str)> {
    let start = line.find("dnsmasq[")? + "dnsmasq[".len();
    let (pid, rest) = line[start..].split_once("]: ")?;
    let (serial, rest) = rest.split_once(' ')?;
    let (client, rest) = rest.split_once(' ')?;
    let (addr, port) = client.rsplit_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    Some((
        pid.parse().ok()?,
        serial.parse().ok()?,
        SocketAddr::new(addr, port.parse().ok()?),
        rest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_extra_query_and_answer_lines() {
        let text = "\
Nov 26 11:00:40 dnsmasq[4802]: started, version 2.90 cachesize 150
Nov 26 11:00:43 dnsmasq[4802]: 4 10.213.7.2/48823 query[A] nx.dnslens.test from 10.213.7.2
Nov 26 11:00:43 dnsmasq[4802]: 4 10.213.7.2/48823 config nx.dnslens.test is NXDOMAIN
Nov 26 11:00:43 dnsmasq[4890]: 7 fd00:d1e5:7::2/51164 query[AAAA] host.dnslens.test from fd00:d1e5:7::2
Nov 26 11:00:43 dnsmasq[4890]: 7 fd00:d1e5:7::2/51164 config host.dnslens.test is 2001:db8::11
";
        let log = DnsmasqLog::parse(text);
        assert_eq!(log.queries.len(), 2);
        let nx = &log.queries[0];
        assert_eq!(
            (nx.qtype.as_str(), nx.qname.as_str()),
            ("A", "nx.dnslens.test")
        );
        assert_eq!(nx.client, "10.213.7.2:48823".parse().unwrap());
        assert_eq!(log.rcode(nx), "NXDOMAIN");
        assert!(!log.is_tcp(nx, 4802));
        let v6 = &log.queries[1];
        assert_eq!(v6.client, "[fd00:d1e5:7::2]:51164".parse().unwrap());
        assert_eq!(log.rcode(v6), "NOERROR");
        assert!(log.is_tcp(v6, 4802));
        assert_eq!(
            log.addresses(v6),
            BTreeSet::from(["2001:db8::11".parse().unwrap()])
        );
        assert!(log.excerpt(v6).contains("config host.dnslens.test"));
    }
}
