//! The local resolver hop: a forwarder on this node (systemd-resolved on 127.0.0.53, NodeLocal
//! DNSCache, dnsmasq) receives a client's query, maybe asks upstream, and answers. From the
//! forwarder's server-side messages and its own client messages this stage tells the client's
//! lookup through which process it was answered, from its cache or through which upstream.
//!
//! The rule: a query the forwarder received (its server side) waits under (forwarder, qtype,
//! qname); a query for the same question the same process sends within [`WINDOW_NS`] is its
//! upstream query, which names the clients waiting (whom their own query, seen sent within
//! `SENT_NS` before the forwarder received it, belonged to), and the response it gets is
//! timed; the forwarder's response to the client (same address, id and question) ends the
//! wait: `miss` when an upstream query for the question went out or was still unanswered while
//! the client waited, else `hit`. The client then receives that response, and its lookup takes
//! the hop. The ambiguity: the wire does not say which received query caused an upstream
//! query, so every client waiting on the same question is linked to it (what a forwarder that
//! merges duplicates does anyway).

use std::net::SocketAddr;

use crate::bounded::Lru;
use crate::model::{DnsEvent, Kind, Role, Served, TaskName};

/// How long after a client's query an upstream query for its question is still its cause, and
/// how long a received query waits for the forwarder's response.
pub const WINDOW_NS: u64 = 5_000_000_000;
/// Questions waiting at once; each holds at most [`CLIENTS`] clients and a name of at most 255
/// bytes, so the whole stage holds at most about 4,096 x 2 KiB.
const QUESTIONS: usize = 4_096;
const CLIENTS: usize = 16;
/// Hops made but not yet taken by the client's response.
const READY: usize = 4_096;
/// Client queries kept to name the client when a forwarder receives one: the receipt follows
/// the send within microseconds, so a second is ample; older ones are dropped uncounted, as
/// most client queries go to no forwarder here. Each holds a name of at most 255 bytes.
const SENT: usize = 4_096;
const SENT_NS: u64 = 1_000_000_000;

/// Whether the forwarder asked upstream for the client; its name is the JSON `cache`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Cache {
    Hit,
    Miss,
}

/// The hop a lookup went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    pub pid: u32,
    pub name: TaskName,
    /// The server of the upstream query, when there was one.
    pub upstream: Option<SocketAddr>,
    pub upstream_latency_us: Option<u64>,
    pub cache: Cache,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViaStats {
    /// Responses of a forwarder to a client, by cache.
    pub hits: u64,
    pub misses: u64,
    /// Questions or clients pushed out of a full table, and hops never taken by a client.
    pub evicted: u64,
}

/// A question the forwarder `pid` received, lowercased.
type QuestionKey = (u32, u16, String);
/// A client's query as the forwarder saw it: from where, with which id and question.
type ClientKey = (u32, SocketAddr, u16, u16, String);

struct Client {
    addr: SocketAddr,
    id: u16,
    mono_ns: u64,
    /// Whom the query belonged to, when dnslens saw it sent.
    who: Option<Served>,
}

struct Upstream {
    server: SocketAddr,
    id: u16,
    sent_ns: u64,
    answered: Option<(u64, u64)>,
}

struct Question {
    clients: Vec<Client>,
    upstream: Option<Upstream>,
    last_ns: u64,
}

pub struct Forwards {
    questions: Lru<QuestionKey, Question>,
    ready: Lru<ClientKey, Via>,
    sent: Lru<ClientKey, (u64, Served)>,
    stats: ViaStats,
}

impl Default for Forwards {
    fn default() -> Self {
        Forwards::new()
    }
}

impl Forwards {
    pub fn new() -> Self {
        Forwards {
            questions: Lru::new(QUESTIONS),
            ready: Lru::new(READY),
            sent: Lru::new(SENT),
            stats: ViaStats::default(),
        }
    }
}

/// Over loopback both ends share the network namespace, which then tells clients apart.
fn netns_of(addr: SocketAddr, netns: u32) -> u32 {
    if addr.ip().is_loopback() {
        netns
    } else {
        0
    }
}

impl Forwards {
    /// Takes every event before the lookup stage does. For a forwarder's upstream query, the
    /// clients it serves (those dnslens saw send their query); else empty.
    pub fn event(&mut self, e: &DnsEvent) -> Vec<Served> {
        let key: QuestionKey = (e.who.process.pid, e.qtype.0, e.qname.to_ascii_lowercase());
        match (e.role, e.kind) {
            (Role::Server, Kind::Query) => {
                let sent = (
                    netns_of(e.src, e.who.netns),
                    e.src,
                    e.id,
                    key.1,
                    key.2.clone(),
                );
                let who = self.sent.remove(&sent).map(|(_, who)| who);
                if !self.questions.contains(&key) {
                    let q = Question {
                        clients: Vec::new(),
                        upstream: None,
                        last_ns: e.mono_ns,
                    };
                    if self.questions.insert(key.clone(), q).is_some() {
                        self.stats.evicted += 1;
                    }
                }
                let q = self.questions.get(&key).expect("inserted above");
                if q.clients.len() >= CLIENTS {
                    q.clients.remove(0);
                    self.stats.evicted += 1;
                }
                q.last_ns = e.mono_ns;
                q.clients.push(Client {
                    addr: e.src,
                    id: e.id,
                    mono_ns: e.mono_ns,
                    who,
                });
            }
            (Role::Client, Kind::Query) => {
                let served = self.upstream(&key, e);
                let query = (netns_of(e.src, e.who.netns), e.src, e.id, key.1, key.2);
                let who = Served {
                    pid: e.who.process.pid,
                    name: e.who.process.name,
                    pod: e.who.pod.clone(),
                };
                let pushed = self.sent.insert(query, (e.mono_ns, who));
                if pushed.is_some_and(|(_, (at, _))| at.saturating_add(SENT_NS) > e.mono_ns) {
                    self.stats.evicted += 1;
                }
                return served;
            }
            (Role::Client, Kind::Response) => {
                if let Some(u) = self
                    .questions
                    .peek_mut(&key)
                    .and_then(|q| q.upstream.as_mut())
                    .filter(|u| u.id == e.id && u.answered.is_none())
                {
                    let latency = e.mono_ns.saturating_sub(u.sent_ns) / 1000;
                    u.answered = Some((e.mono_ns, latency));
                }
            }
            (Role::Server, Kind::Response) => self.answered(key, e),
            (_, Kind::Unanswered) => {}
        }
        Vec::new()
    }

    /// A query the process sent for a question it received is its upstream query when a
    /// client of the question is still within [`WINDOW_NS`]; the clients it serves.
    fn upstream(&mut self, key: &QuestionKey, e: &DnsEvent) -> Vec<Served> {
        let Some(q) = self.questions.peek_mut(key) else {
            return Vec::new();
        };
        let waiting = |c: &&Client| e.mono_ns.saturating_sub(c.mono_ns) <= WINDOW_NS;
        if !q.clients.iter().any(|c| waiting(&c)) {
            return Vec::new();
        }
        q.upstream = Some(Upstream {
            server: e.dst,
            id: e.id,
            sent_ns: e.mono_ns,
            answered: None,
        });
        q.clients
            .iter()
            .filter(waiting)
            .filter_map(|c| c.who.clone())
            .collect()
    }

    /// The forwarder answered a client: the hop is ready for the client's response.
    fn answered(&mut self, key: QuestionKey, e: &DnsEvent) {
        let Some(q) = self.questions.peek_mut(&key) else {
            return;
        };
        let Some(i) = q
            .clients
            .iter()
            .position(|c| c.addr == e.dst && c.id == e.id)
        else {
            return;
        };
        let client = q.clients.remove(i);
        let upstream = q.upstream.as_ref().filter(|u| {
            u.sent_ns <= e.mono_ns && u.answered.is_none_or(|(at, _)| at >= client.mono_ns)
        });
        let via = Via {
            pid: e.who.process.pid,
            name: e.who.process.name,
            upstream: upstream.map(|u| u.server),
            upstream_latency_us: upstream.and_then(|u| u.answered.map(|(_, us)| us)),
            cache: if upstream.is_some() {
                Cache::Miss
            } else {
                Cache::Hit
            },
        };
        match via.cache {
            Cache::Hit => self.stats.hits += 1,
            Cache::Miss => self.stats.misses += 1,
        }
        if q.clients.is_empty() {
            self.questions.remove(&key);
        }
        let ready = (netns_of(e.dst, e.who.netns), e.dst, e.id, e.qtype.0, key.2);
        if self.ready.insert(ready, via).is_some() {
            self.stats.evicted += 1;
        }
    }

    /// The hop of the response client `e` received, if a forwarder here sent it.
    pub fn take(&mut self, e: &DnsEvent) -> Option<Via> {
        if self.ready.is_empty() {
            return None;
        }
        let key = (
            netns_of(e.dst, e.who.netns),
            e.dst,
            e.id,
            e.qtype.0,
            e.qname.to_ascii_lowercase(),
        );
        self.ready.remove(&key)
    }

    /// Forgets questions no one waited on for [`WINDOW_NS`] (a forwarder that never
    /// answered), counted as evicted.
    pub fn expire(&mut self, now_mono_ns: u64) {
        while let Some((_, q)) = self.questions.peek_oldest() {
            if q.last_ns.saturating_add(WINDOW_NS) > now_mono_ns {
                break;
            }
            self.questions.pop_oldest();
            self.stats.evicted += 1;
        }
        while let Some((_, (at, _))) = self.sent.peek_oldest() {
            if at.saturating_add(SENT_NS) > now_mono_ns {
                break;
            }
            self.sent.pop_oldest();
        }
    }

    pub fn stats(&self) -> ViaStats {
        self.stats
    }
}
