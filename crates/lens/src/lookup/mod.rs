//! Lookups: what an application experienced, stitched from its process's client messages after
//! pairing and attribution. One lookup holds the search-list walk, A and AAAA asked together,
//! retransmits, the switch to the next nameserver and a TC answer's retry over TCP. It ends when
//! its last name has a final response for every type asked and one of them answers, or `linger`
//! after its last message without one; time is the events' stamps and the clock passed to
//! [`Lookups::expire`]. The rules, and where the wire alone is ambiguous: docs/schema.md,
//! "Lookup lines". State is bounded in entries and bytes: what is pushed out is emitted early,
//! as it stands, and counted. A lookup answered by a forwarder on this node names it ([`via`]);
//! a libc resolver call names what the application asked and what it got ([`libc`]).

mod bases;
pub mod libc;
mod opens;
pub mod via;

use std::net::SocketAddr;
use std::sync::Arc;

use dnslens_abi::Transport;
use dnslens_wire::{Rcode, RecordType};

use crate::bounded::Lru;
use crate::counters::Counter;
use crate::model::{Attribution, DnsEvent, Kind, LibcEvent, Role, Served};
use crate::resolv::ResolvConf;
use bases::Bases;
use libc::{Holding, Source};
use opens::{id_bit, name_bit, Opens, Summary};
use via::{Forwards, Via};

/// How the lookup ended; its name is the JSON `outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "lowercase")]
pub enum Outcome {
    Answered,
    Nxdomain,
    /// NOERROR without data for the last name.
    Nodata,
    Servfail,
    Refused,
    /// No final response for the last name.
    Timeout,
    /// Another response code (FORMERR, NOTIMP, ...).
    Error,
}

/// One query sent for a lookup, and what came of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub qname: String,
    pub qtype: RecordType,
    pub server: SocketAddr,
    pub transport: Transport,
    /// `None`: no response before the next step or the end.
    pub rcode: Option<Rcode>,
    pub latency_us: Option<u64>,
    id: u16,
    socket: u64,
    mono_ns: u64,
    state: State,
    /// When it got its response or timed out.
    done_mono_ns: u64,
    tc: bool,
    has_answers: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Responded,
    TimedOut,
}

impl Attempt {
    /// A response that ends this name and type: not one that says "truncated, ask over TCP".
    fn is_final(&self) -> bool {
        self.state == State::Responded && !self.tc
    }

    fn answered(&self) -> bool {
        self.is_final() && self.has_answers
    }
}

/// A lookup that ended: one line of `trace --lookups`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// Wall-clock ns of the first query.
    pub time_ns: u64,
    /// The name the application asked for: the walk with its search list taken off.
    pub name: String,
    /// The name whose response answered.
    pub answer_name: Option<String>,
    /// The types asked, in the order first asked.
    pub qtypes: Vec<RecordType>,
    pub outcome: Outcome,
    /// From the first query to the response (or timeout) that ended it.
    pub latency_us: u64,
    /// Every query sent for it; `attempts` lists at most [`LookupConfig::attempts`].
    pub queries: u32,
    /// Queries that got no response before the next step.
    pub timeouts: u32,
    pub attempts: Vec<Attempt>,
    /// The forwarder on this node that sent the response that answered, or the last one.
    pub via: Option<Via>,
    /// Whom it belongs to: the process of its first query, or of the libc call.
    pub who: Attribution,
    pub source: Source,
}

/// The bounds and times of the stage.
#[derive(Clone, Debug)]
pub struct LookupConfig {
    /// Quiet time after the last message of a lookup that has no answer yet before it ends: the
    /// next step of a walk comes within it.
    pub linger_ns: u64,
    /// A lookup open this long ends as it stands, whatever is still waiting.
    pub max_age_ns: u64,
    /// Processes followed at once (least recently active evicted).
    pub processes: usize,
    /// Lookups open at once in one process (oldest evicted).
    pub per_process: usize,
    /// Attempts listed per lookup; more are counted in `queries` only.
    pub attempts: usize,
    /// Bytes all open lookups may hold (oldest of the least recently active process evicted).
    pub max_bytes: usize,
    /// A server's side comes up as events, so the hop stage ([`via`]) can tell a forwarder's
    /// cache hits and misses and name the clients its upstream queries serve. Without it the
    /// stage does not run: the few server-side messages that still come up (one per server
    /// process now and then) could only make wrong hops, and every client message would pay
    /// for them.
    pub server_side: bool,
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            linger_ns: 500_000_000,
            max_age_ns: 30_000_000_000,
            processes: 4_096,
            per_process: 128,
            attempts: 32,
            max_bytes: 8 << 20,
            server_side: true,
        }
    }
}

/// A query repeated this long after its first send while that is still waiting is a retransmit
/// or the next server, and the first counts as timed out; sooner, it is sent in parallel (musl
/// asks every nameserver at once).
const RETRY_GAP_NS: u64 = 200_000_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Lookups emitted, evicted ones included.
    pub lookups: u64,
    /// Lookups emitted early because a bound was reached (processes, per process, bytes).
    pub evicted: u64,
    /// Queries counted in a lookup but not listed: past the attempts bound.
    pub attempts_unlisted: u64,
    /// Lookups open now (held for a libc call included), and the bytes the open ones hold.
    pub open: u64,
    pub bytes: u64,
    pub via: via::ViaStats,
    pub libc: libc::LibcStats,
}

impl LookupStats {
    /// The stage's rows of the health table.
    pub fn counters(&self, out: &mut Vec<Counter>) {
        out.extend([
            Counter::eviction("lookups", "lookups", self.evicted),
            Counter::eviction("lookups", "lookup_attempts", self.attempts_unlisted),
            Counter::eviction("lookups", "lookup_via", self.via.evicted),
            Counter::eviction("lookups", "lookup_libc_held", self.libc.evicted),
        ]);
    }
}

/// Whose lookups: a pid is reused, its start time is not.
type ProcKey = (u32, u64);

/// A lookup still open.
#[derive(Debug)]
struct Open {
    time_ns: u64,
    first_mono_ns: u64,
    last_mono_ns: u64,
    bases: Bases,
    attempts: Vec<Attempt>,
    queries: u32,
    timeouts: u32,
    via: Option<Via>,
    who: Attribution,
}

impl Open {
    fn new(e: &DnsEvent, bases: Bases) -> Open {
        Open {
            time_ns: e.time_ns,
            first_mono_ns: e.mono_ns,
            last_mono_ns: e.mono_ns,
            bases,
            attempts: Vec::new(),
            queries: 0,
            timeouts: 0,
            via: None,
            who: e.who.clone(),
        }
    }

    fn summary(&self) -> Summary {
        Summary {
            names: self.attempts.iter().fold(0, |m, a| m | name_bit(&a.qname)),
            waiting_ids: self
                .attempts
                .iter()
                .filter(|a| a.state == State::Waiting)
                .fold(0, |m, a| m | id_bit(a.id)),
            walking: self.walking(),
        }
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<Open>()
            + self.bases.bytes()
            + self
                .attempts
                .iter()
                .map(|a| std::mem::size_of::<Attempt>() + a.qname.len())
                .sum::<usize>()
    }

    fn same_question(a: &Attempt, e: &DnsEvent) -> bool {
        a.qtype == e.qtype && a.qname.eq_ignore_ascii_case(&e.qname)
    }

    /// Whether query `e`, with `bases`, belongs to this lookup: its name again (the other type,
    /// a retransmit, the next server, TCP after TC) unless that question was answered already
    /// (asking again is a new lookup), or the next name of a walk whose names so far all failed.
    fn takes(&self, e: &DnsEvent, bases: &Bases) -> bool {
        if self
            .attempts
            .iter()
            .any(|a| a.qname.eq_ignore_ascii_case(&e.qname))
        {
            return !self
                .attempts
                .iter()
                .any(|a| Open::same_question(a, e) && a.is_final());
        }
        self.walking() && self.bases.narrowed(bases).is_some()
    }

    /// Between two names of a walk: nothing waiting, nothing answered.
    fn walking(&self) -> bool {
        self.attempts
            .iter()
            .all(|a| a.state != State::Waiting && !a.answered())
    }

    fn add(&mut self, e: &DnsEvent, max_attempts: usize) -> bool {
        for a in &mut self.attempts {
            if a.state == State::Waiting
                && Open::same_question(a, e)
                && e.mono_ns.saturating_sub(a.mono_ns) >= RETRY_GAP_NS
            {
                a.state = State::TimedOut;
                a.done_mono_ns = e.mono_ns;
                self.timeouts += 1;
            }
        }
        self.queries += 1;
        self.last_mono_ns = e.mono_ns;
        if self.attempts.len() >= max_attempts {
            return false;
        }
        self.attempts.push(Attempt {
            qname: e.qname.clone(),
            qtype: e.qtype,
            server: e.dst,
            transport: e.transport,
            rcode: None,
            latency_us: None,
            id: e.id,
            socket: e.who.socket,
            mono_ns: e.mono_ns,
            state: State::Waiting,
            done_mono_ns: 0,
            tc: false,
            has_answers: false,
        });
        true
    }

    /// The waiting attempt a response or an unanswered query `e` is the end of: of those sent
    /// with its socket, id and question (musl sends one query to every nameserver), the one to
    /// the server it came from, else the first.
    fn waiting_for(&mut self, e: &DnsEvent) -> Option<&mut Attempt> {
        let server = match e.kind {
            Kind::Response => e.src,
            Kind::Query | Kind::Unanswered => e.dst,
        };
        let mut waiting = self.attempts.iter_mut().filter(|a| {
            a.state == State::Waiting
                && a.id == e.id
                && a.socket == e.who.socket
                && Open::same_question(a, e)
        });
        let first = waiting.next()?;
        if first.server == server {
            return Some(first);
        }
        match waiting.find(|a| a.server == server) {
            Some(a) => Some(a),
            None => Some(first),
        }
    }

    /// The attempts of the name asked last.
    fn last_name(&self) -> impl Iterator<Item = &Attempt> {
        let last = self.attempts.last().map_or("", |a| a.qname.as_str());
        self.attempts
            .iter()
            .filter(move |a| a.qname.eq_ignore_ascii_case(last))
    }

    /// The last name has a final response for every type the lookup asked (Go may send the
    /// last name's A after its AAAA was answered) and one answers: nothing more will come.
    fn answered(&self) -> bool {
        self.attempts
            .iter()
            .all(|a| self.last_name().any(|b| b.qtype == a.qtype && b.is_final()))
            && self.last_name().any(Attempt::answered)
    }

    fn waiting(&self) -> bool {
        self.attempts.iter().any(|a| a.state == State::Waiting)
    }

    fn finish(self) -> Lookup {
        let answer = self.last_name().filter(|a| a.answered()).last();
        let finals: Vec<&Attempt> = self.last_name().filter(|a| a.is_final()).collect();
        let has = |rcode: Rcode| finals.iter().any(|a| a.rcode == Some(rcode));
        let outcome = if answer.is_some() {
            Outcome::Answered
        } else if finals.is_empty() {
            Outcome::Timeout
        } else if has(Rcode::NOERROR) {
            Outcome::Nodata
        } else if has(Rcode::NXDOMAIN) {
            Outcome::Nxdomain
        } else if has(Rcode::SERVFAIL) {
            Outcome::Servfail
        } else if has(Rcode::REFUSED) {
            Outcome::Refused
        } else {
            Outcome::Error
        };
        let answer_name = answer.map(|a| a.qname.clone());
        let ended = match answer {
            Some(a) => a.done_mono_ns,
            None => self
                .attempts
                .iter()
                .map(|a| a.done_mono_ns)
                .fold(self.last_mono_ns, u64::max),
        };
        let mut qtypes = Vec::new();
        for a in &self.attempts {
            if !qtypes.contains(&a.qtype) {
                qtypes.push(a.qtype);
            }
        }
        Lookup {
            time_ns: self.time_ns,
            name: self.bases.into_name(),
            answer_name,
            qtypes,
            outcome,
            latency_us: ended.saturating_sub(self.first_mono_ns) / 1000,
            queries: self.queries,
            timeouts: self.timeouts,
            attempts: self.attempts,
            via: self.via,
            who: self.who,
            source: Source::Dns,
        }
    }
}

/// One process: its search list, read once, and its open lookups, oldest first.
struct Proc {
    search: Option<Arc<ResolvConf>>,
    open: Opens,
}

/// Where a process's resolver configuration comes from (a worker reading /proc; a table in
/// tests); `None` when it cannot be read, and the wire-only rule applies.
pub type SearchLists = Box<dyn FnMut(u32) -> Option<Arc<ResolvConf>> + Send>;

/// The lookup stage.
pub struct Lookups {
    config: LookupConfig,
    search: SearchLists,
    procs: Lru<ProcKey, Proc>,
    bytes: usize,
    forwards: Option<Forwards>,
    /// Set once libc calls may come ([`Lookups::hold_for_libc`]).
    holding: Option<Holding>,
    stats: LookupStats,
}

impl Lookups {
    pub fn new(config: LookupConfig, search: SearchLists) -> Self {
        Lookups {
            procs: Lru::new(config.processes),
            forwards: config.server_side.then(Forwards::new),
            config,
            search,
            bytes: 0,
            holding: None,
            stats: LookupStats::default(),
        }
    }

    /// Takes one event of the pipeline; `out` gets the lookups it ends. Only a client's
    /// queries open lookups; responses and unanswered queries end their attempts. A server's
    /// messages only tell the forwarder hop. Returns, for a forwarder's upstream query, the
    /// clients it serves ([`Forwards::event`]).
    pub fn event(&mut self, e: &DnsEvent, out: &mut impl FnMut(&Lookup)) -> Vec<Served> {
        let served = self
            .forwards
            .as_mut()
            .map(|f| f.event(e))
            .unwrap_or_default();
        if e.role == Role::Client {
            let key = (e.who.process.pid, e.who.ids.process_start_ns);
            match e.kind {
                Kind::Query => self.query(key, e, out),
                Kind::Response | Kind::Unanswered => self.answer(key, e, out),
            }
            self.keep_to_budget(out);
        }
        served
    }

    fn query(&mut self, key: ProcKey, e: &DnsEvent, out: &mut impl FnMut(&Lookup)) {
        if !self.procs.contains(&key) {
            let search = (self.search)(e.who.process.pid);
            let proc = Proc {
                search,
                open: Opens::default(),
            };
            if let Some((_, gone)) = self.procs.insert(key, proc) {
                for open in gone.open.into_lookups() {
                    self.emit(open, true, out);
                }
            }
        }
        let proc = self.procs.get(&key).expect("inserted above");
        let bases = Bases::of(&e.qname, proc.search.as_deref());
        let bit = name_bit(&e.qname);
        let at = proc
            .open
            .rfind(|s| s.names & bit != 0 || s.walking, |o| o.takes(e, &bases));
        let mut evicted = None;
        let mut open = match at {
            Some(i) => {
                let mut open = proc.open.remove(i);
                if open.bases != bases {
                    if let Some(narrowed) = open.bases.narrowed(&bases) {
                        self.bytes = self.bytes + narrowed.bytes() - open.bases.bytes();
                        open.bases = narrowed;
                    }
                }
                open
            }
            None => {
                evicted = (proc.open.len() >= self.config.per_process).then(|| proc.open.remove(0));
                let open = Box::new(Open::new(e, bases));
                self.bytes += open.bytes();
                open
            }
        };
        let before = open.bytes();
        if !open.add(e, self.config.attempts) {
            self.stats.attempts_unlisted += 1;
        }
        self.bytes = self.bytes + open.bytes() - before;
        proc.open.push(open);
        if let Some(evicted) = evicted {
            self.emit(evicted, true, out);
        }
    }

    fn answer(&mut self, key: ProcKey, e: &DnsEvent, out: &mut impl FnMut(&Lookup)) {
        let via = match e.kind {
            Kind::Response => self.forwards.as_mut().and_then(|f| f.take(e)),
            _ => None,
        };
        let Some(proc) = self.procs.get(&key) else {
            return;
        };
        let bit = id_bit(e.id);
        let Some(i) = proc
            .open
            .rfind(|s| s.waiting_ids & bit != 0, |o| o.waiting_for(e).is_some())
        else {
            return;
        };
        let answered = proc.open.change(i, |open| {
            let a = open.waiting_for(e).expect("found above");
            match e.kind {
                Kind::Unanswered => {
                    a.state = State::TimedOut;
                    let done = e.mono_ns + e.timeout_ms.unwrap_or(0) * 1_000_000;
                    a.done_mono_ns = done;
                    open.timeouts += 1;
                    open.last_mono_ns = open.last_mono_ns.max(done);
                }
                _ => {
                    a.state = State::Responded;
                    a.done_mono_ns = e.mono_ns;
                    a.rcode = e.rcode;
                    // From this attempt: pairing measures a resend's response from the first
                    // send.
                    a.latency_us = Some(e.mono_ns.saturating_sub(a.mono_ns) / 1000);
                    a.tc = e.flags.tc;
                    a.has_answers = !e.answers.is_empty();
                    open.last_mono_ns = open.last_mono_ns.max(e.mono_ns);
                    if via.is_some() {
                        open.via = via;
                    }
                }
            }
            open.answered()
        });
        if answered {
            let open = proc.open.remove(i);
            self.emit(open, false, out);
        }
    }

    /// From now on libc calls come (uprobes are attached): wire lookups that end are held for
    /// the call that made them (the rule: [`libc`]).
    pub fn hold_for_libc(&mut self) {
        self.holding.get_or_insert_with(Holding::default);
    }

    /// Takes a libc call that returned; `out` gets its lookup: the wire lookup of its process
    /// it takes (open or held), else one of its own.
    pub fn libc(&mut self, call: &LibcEvent, out: &mut impl FnMut(&Lookup)) {
        let key = (call.who.process.pid, call.who.ids.process_start_ns);
        let mut search = None;
        let open = self.procs.get(&key).and_then(|proc| {
            search = proc.search.clone();
            let i = proc.open.iter().position(|o| {
                libc::during(call, o.first_mono_ns)
                    && o.attempts
                        .iter()
                        .any(|a| libc::asks(call, &a.qname, search.as_deref()))
            })?;
            Some(proc.open.remove(i))
        });
        let wire = match open {
            Some(open) => {
                self.bytes -= open.bytes();
                self.stats.lookups += 1;
                Some(open.finish())
            }
            None => self
                .holding
                .as_mut()
                .and_then(|h| h.take(key, call, search.as_deref())),
        };
        let holding = self.holding.get_or_insert_with(Holding::default);
        match wire {
            Some(wire) => {
                holding.stats.matched += 1;
                out(&libc::merged(wire, call));
            }
            None => {
                holding.stats.alone += 1;
                self.stats.lookups += 1;
                out(&libc::alone(call));
            }
        }
    }

    /// Ends the lookups whose time is up at `now_mono_ns` (CLOCK_MONOTONIC, the clock of event
    /// stamps): without an answer, `linger` after their last message with nothing waiting, or
    /// any past `max_age`.
    pub fn expire(&mut self, now_mono_ns: u64, out: &mut impl FnMut(&Lookup)) {
        if let Some(f) = self.forwards.as_mut() {
            f.expire(now_mono_ns);
        }
        let (linger, max_age) = (self.config.linger_ns, self.config.max_age_ns);
        let due = |o: &Open| {
            (!o.waiting() && o.last_mono_ns.saturating_add(linger) <= now_mono_ns)
                || o.first_mono_ns.saturating_add(max_age) <= now_mono_ns
        };
        let keys: Vec<ProcKey> = self
            .procs
            .iter()
            .filter(|(_, p)| p.open.iter().any(due))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let proc = self.procs.peek_mut(&key).expect("listed above");
            for open in proc.open.take_due(due) {
                self.emit(open, false, out);
            }
        }
        if let Some(h) = self.holding.as_mut() {
            h.expire(now_mono_ns, out);
        }
    }

    /// While the open lookups hold more than the byte budget, the oldest of the least recently
    /// active process goes.
    fn keep_to_budget(&mut self, out: &mut impl FnMut(&Lookup)) {
        while self.bytes > self.config.max_bytes {
            let Some(key) = self
                .procs
                .iter()
                .find(|(_, p)| !p.open.is_empty())
                .map(|(k, _)| *k)
            else {
                break;
            };
            let open = self.procs.peek_mut(&key).expect("found").open.remove(0);
            self.emit(open, true, out);
        }
    }

    /// Ends `open`: out at once, or held for a libc call while calls may come.
    fn emit(&mut self, open: Box<Open>, evicted: bool, out: &mut impl FnMut(&Lookup)) {
        self.bytes -= open.bytes();
        self.stats.lookups += 1;
        self.stats.evicted += u64::from(evicted);
        let key = (open.who.process.pid, open.who.ids.process_start_ns);
        let (first, last) = (open.first_mono_ns, open.last_mono_ns);
        match self.holding.as_mut() {
            Some(h) => h.hold(key, first, last, open.finish(), out),
            None => out(&open.finish()),
        }
    }

    pub fn stats(&self) -> LookupStats {
        LookupStats {
            open: self
                .procs
                .values()
                .map(|p| p.open.len() as u64)
                .sum::<u64>()
                + self.holding.as_ref().map_or(0, |h| h.len() as u64),
            bytes: self.bytes as u64,
            via: self
                .forwards
                .as_ref()
                .map(Forwards::stats)
                .unwrap_or_default(),
            libc: self
                .holding
                .as_ref()
                .map_or_else(Default::default, |h| h.stats),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests;
