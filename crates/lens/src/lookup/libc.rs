//! The resolver-API layer of lookups: a libc resolver call (getaddrinfo, gethostbyname*_r, seen
//! by uprobes) names what the application asked in its own words and what it got. A call
//! takes the wire lookup of its process that asked its name (as is, or with search domains
//! after it) and began while the call ran: the lookup becomes `libc+dns`, with the call's name,
//! time, latency and outcome. A call without one (/etc/hosts, nscd, a cache) is a lookup of its
//! own, `libc`, with no queries; wire lookups no call took stay `dns`.
//!
//! The call returns after the wire's last response, so its record comes later: once uprobes
//! are attached, a wire lookup that ends is held [`HOLD_NS`] after its last message (at most
//! [`MAX_HELD`], the oldest pushed out and counted) for a call to take; a call also takes a
//! lookup still open (a failed walk lingering), which ends it at once.

use std::collections::VecDeque;

use dnslens_abi::LibcFunction;

use super::{Lookup, Outcome, ProcKey};
use crate::model::LibcEvent;
use crate::resolv::ResolvConf;

/// How long an ended wire lookup waits for its call's return record: the record is in the
/// same ring buffer right after the response's, so this covers the poll loop's lag only.
pub const HOLD_NS: u64 = 200_000_000;
/// Wire lookups held at once.
pub const MAX_HELD: usize = 1_024;

// glibc's <netdb.h>: getaddrinfo's returns and the resolver's h_errno values.
const EAI_NONAME: i32 = -2;
const EAI_AGAIN: i32 = -3;
const EAI_NODATA: i32 = -5;
const HOST_NOT_FOUND: i32 = 1;
const TRY_AGAIN: i32 = 2;
const NO_DATA: i32 = 4;

/// Where a lookup was seen; its name is the JSON `source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
pub enum Source {
    /// The wire alone: no libc call took it (musl, Go, no uprobes, or none matched).
    #[strum(serialize = "dns")]
    Dns,
    /// A libc call that sent no query.
    #[strum(serialize = "libc")]
    Libc,
    /// A libc call and the queries it sent.
    #[strum(serialize = "libc+dns")]
    LibcDns,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LibcStats {
    /// Calls that took a wire lookup.
    pub matched: u64,
    /// Calls that took none: lookups of their own.
    pub alone: u64,
    /// Wire lookups pushed out of the held list before their time, emitted as `dns`.
    pub evicted: u64,
}

/// The outcome a call's status says. A temporary failure is `timeout` when the wire lookup
/// timed out, else `servfail` (glibc says the same for both); another failure is `error`.
pub fn outcome(call: &LibcEvent, wire: Option<Outcome>) -> Outcome {
    let again = match call.function {
        LibcFunction::Getaddrinfo => match call.status {
            0 => return Outcome::Answered,
            EAI_NONAME => return Outcome::Nxdomain,
            EAI_NODATA => return Outcome::Nodata,
            status => status == EAI_AGAIN,
        },
        LibcFunction::GethostbynameR | LibcFunction::Gethostbyname2R => match call.status {
            0 => return Outcome::Answered,
            HOST_NOT_FOUND => return Outcome::Nxdomain,
            NO_DATA => return Outcome::Nodata,
            status => status == TRY_AGAIN,
        },
    };
    match (again, wire) {
        (true, Some(Outcome::Timeout)) => Outcome::Timeout,
        (true, _) => Outcome::Servfail,
        (false, _) => Outcome::Error,
    }
}

/// Whether a query for `qname` asks the call's name: as is, or with a domain of the process's
/// search list after it (any domain when the search list is unknown).
pub(super) fn asks(call: &LibcEvent, qname: &str, search: Option<&ResolvConf>) -> bool {
    let name = call.name.trim_end_matches('.');
    let qname = qname.trim_end_matches('.');
    if qname.eq_ignore_ascii_case(name) {
        return true;
    }
    let Some(domain) = qname
        .get(..name.len())
        .filter(|head| head.eq_ignore_ascii_case(name))
        .and_then(|_| qname[name.len()..].strip_prefix('.'))
    else {
        return false;
    };
    search.is_none_or(|rc| {
        rc.search
            .iter()
            .any(|d| d.trim_end_matches('.').eq_ignore_ascii_case(domain))
    })
}

/// The call's name as names are written everywhere else (as dig shows them): without the
/// trailing dot of an absolute name, so `x.` and `x` count as one name; the root stays `.`.
fn name_asked(call: &LibcEvent) -> String {
    match call.name.strip_suffix('.') {
        Some(relative) if !relative.is_empty() => relative.to_string(),
        _ => call.name.clone(),
    }
}

/// Whether a wire lookup that began at `first_mono_ns` began while the call ran.
pub(super) fn during(call: &LibcEvent, first_mono_ns: u64) -> bool {
    (call.entry_mono_ns..=call.mono_ns).contains(&first_mono_ns)
}

/// `wire` as the call saw it.
pub(super) fn merged(wire: Lookup, call: &LibcEvent) -> Lookup {
    let outcome = outcome(call, Some(wire.outcome));
    Lookup {
        time_ns: call.time_ns,
        name: name_asked(call),
        answer_name: (outcome == Outcome::Answered)
            .then(|| wire.answer_name.clone().unwrap_or_else(|| name_asked(call))),
        outcome,
        latency_us: call.mono_ns.saturating_sub(call.entry_mono_ns) / 1000,
        source: Source::LibcDns,
        ..wire
    }
}

/// A call that sent no query.
pub(super) fn alone(call: &LibcEvent) -> Lookup {
    let outcome = outcome(call, None);
    Lookup {
        time_ns: call.time_ns,
        name: name_asked(call),
        answer_name: (outcome == Outcome::Answered).then(|| name_asked(call)),
        qtypes: Vec::new(),
        outcome,
        latency_us: call.mono_ns.saturating_sub(call.entry_mono_ns) / 1000,
        queries: 0,
        timeouts: 0,
        attempts: Vec::new(),
        via: None,
        who: call.who.clone(),
        source: Source::Libc,
    }
}

/// A wire lookup that ended, waiting for a call to take it.
struct Held {
    key: ProcKey,
    first_mono_ns: u64,
    until_mono_ns: u64,
    lookup: Lookup,
}

/// Ended wire lookups held for their calls, oldest first.
#[derive(Default)]
pub(super) struct Holding {
    held: VecDeque<Held>,
    pub(super) stats: LibcStats,
}

impl Holding {
    /// Holds `lookup` of `key` until `HOLD_NS` after `last_mono_ns`; when full, the oldest
    /// goes to `out` as it is.
    pub(super) fn hold(
        &mut self,
        key: ProcKey,
        first_mono_ns: u64,
        last_mono_ns: u64,
        lookup: Lookup,
        out: &mut impl FnMut(&Lookup),
    ) {
        if self.held.len() >= MAX_HELD {
            if let Some(oldest) = self.held.pop_front() {
                self.stats.evicted += 1;
                out(&oldest.lookup);
            }
        }
        self.held.push_back(Held {
            key,
            first_mono_ns,
            until_mono_ns: last_mono_ns.saturating_add(HOLD_NS),
            lookup,
        });
    }

    /// The held lookup of `key` that `call` takes, if any.
    pub(super) fn take(
        &mut self,
        key: ProcKey,
        call: &LibcEvent,
        search: Option<&ResolvConf>,
    ) -> Option<Lookup> {
        let i = self.held.iter().position(|h| {
            h.key == key
                && during(call, h.first_mono_ns)
                && h.lookup
                    .attempts
                    .iter()
                    .any(|a| asks(call, &a.qname, search))
        })?;
        self.held.remove(i).map(|h| h.lookup)
    }

    /// Emits the lookups whose hold is over at `now_mono_ns`.
    pub(super) fn expire(&mut self, now_mono_ns: u64, out: &mut impl FnMut(&Lookup)) {
        let (over, kept): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.until_mono_ns <= now_mono_ns);
        self.held = kept.into();
        for h in over {
            out(&h.lookup);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests;
