//! Loss by source. The kernel counts, per cgroup, the events it dropped: over the cgroup's
//! share of a ring buffer under pressure, or with the buffer full. This turns those running
//! counts into what each workload lost since the last read, attributed as events are, so that a
//! flood names its source. What the kernel counted but could not charge to a tracked cgroup
//! (its table of cgroups is bounded) is lost by `(unknown)`: the sources always sum to the
//! kernel's totals.

use std::collections::HashMap;

use dnslens_lens::identity::Identity;
use dnslens_lens::model::{Attribution, KernelIds, ProcessInfo};
use dnslens_lens::text::printable;
use dnslens_probe::{KernelCounter, KernelCounters, Source, SourceKey};

/// The reasons the kernel charges to a cgroup.
pub const REASONS: [KernelCounter; 2] = [KernelCounter::OverShare, KernelCounter::RingbufFull];

/// Events one source lost for one reason since the last read.
#[derive(Clone, Debug)]
pub struct Lost {
    pub who: Attribution,
    pub reason: KernelCounter,
    pub events: u64,
}

/// The running counts of the last read.
#[derive(Debug, Default)]
pub struct SourceLosses {
    seen: HashMap<SourceKey, [u64; 2]>,
    totals: [u64; 2],
}

fn counts(source: &Source) -> [u64; 2] {
    [source.over_share, source.ringbuf_full]
}

impl SourceLosses {
    /// What was lost since the last read, largest first. `sources` is the kernel's table now,
    /// `kernel` its counters; `attribute` names a cgroup's events.
    pub fn read(
        &mut self,
        sources: &[(SourceKey, Source)],
        kernel: &KernelCounters,
        mut attribute: impl FnMut(SourceKey, &Source) -> Attribution,
    ) -> Vec<Lost> {
        let mut lost = Vec::new();
        let mut charged = [0u64; 2];
        let mut seen = HashMap::with_capacity(sources.len());
        for (key, source) in sources {
            let now = counts(source);
            let before = self.seen.get(key).copied().unwrap_or_default();
            // Lower than before: the kernel forgot the cgroup and began it again since.
            let delta: [u64; 2] =
                std::array::from_fn(|i| now[i].checked_sub(before[i]).unwrap_or(now[i]));
            seen.insert(*key, now);
            if delta == [0, 0] {
                continue;
            }
            let who = attribute(*key, source);
            for (i, &reason) in REASONS.iter().enumerate() {
                if delta[i] > 0 {
                    charged[i] += delta[i];
                    lost.push(Lost {
                        who: who.clone(),
                        reason,
                        events: delta[i],
                    });
                }
            }
        }
        self.seen = seen;
        for (i, &reason) in REASONS.iter().enumerate() {
            let total = kernel.get(reason);
            let uncharged = total
                .saturating_sub(self.totals[i])
                .saturating_sub(charged[i]);
            self.totals[i] = total;
            if uncharged > 0 {
                lost.push(Lost {
                    who: unknown(),
                    reason,
                    events: uncharged,
                });
            }
        }
        lost.sort_by_key(|l| std::cmp::Reverse(l.events));
        lost
    }
}

/// A source the kernel did not name.
fn unknown() -> Attribution {
    Attribution::unenriched(ProcessInfo::default(), 0, 0, KernelIds::default())
}

/// What is said of a reason after a number of events.
fn phrase(reason: KernelCounter) -> &'static str {
    match reason {
        KernelCounter::OverShare => "over its share",
        _ => "ring buffer full",
    }
}

/// The losses of a warning's period, summed per source and reason as they are read.
#[derive(Debug, Default)]
pub struct LossWindow {
    by_source: HashMap<(String, KernelCounter), u64>,
}

impl LossWindow {
    pub fn add(&mut self, lost: &[Lost]) {
        for l in lost {
            let name = source_name(&l.who);
            *self.by_source.entry((name, l.reason)).or_default() += l.events;
        }
    }

    /// The sources of the period, largest first, as one line (`None` when nothing was lost);
    /// starts again.
    pub fn take_line(&mut self) -> Option<String> {
        const SHOWN: usize = 3;
        let mut sources: Vec<_> = self.by_source.drain().collect();
        if sources.is_empty() {
            return None;
        }
        sources.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0 .0.cmp(&b.0 .0)));
        let mut line = String::from("dnslens: lost by source: ");
        for (i, ((name, reason), events)) in sources.iter().take(SHOWN).enumerate() {
            if i > 0 {
                line += ", ";
            }
            line += &format!("{name} {events} {}", phrase(*reason));
        }
        if sources.len() > SHOWN {
            line += &format!(" and {} more", sources.len() - SHOWN);
        }
        Some(line)
    }
}

/// A source as a warning names it: the pod, container or host process, and the pid of the last
/// event dropped where there is one. Escaped: names are the workload's.
fn source_name(who: &Attribution) -> String {
    let id = Identity::of(who);
    match id {
        Identity::Host(p) | Identity::Unknown(p) if p.pid != 0 => {
            format!("{} [{}]", printable(&id.to_string()), p.pid)
        }
        Identity::Unknown(_) => dnslens_lens::identity::UNKNOWN.to_string(),
        _ => printable(&id.to_string()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(over_share: u64, ringbuf_full: u64, comm: &str) -> Source {
        let mut last_comm = [0u8; 16];
        last_comm[..comm.len()].copy_from_slice(comm.as_bytes());
        Source {
            over_share,
            ringbuf_full,
            last_tgid: 42,
            last_comm,
            ..Source::default()
        }
    }

    fn key(id: u64) -> SourceKey {
        SourceKey {
            cgroup_id: id,
            cgroup_v1_id: 0,
        }
    }

    fn kernel(over_share: u64, ringbuf_full: u64) -> KernelCounters {
        let mut k = KernelCounters::default();
        k.set(KernelCounter::OverShare, over_share);
        k.set(KernelCounter::RingbufFull, ringbuf_full);
        k
    }

    /// Names a source by its process, as a host process.
    fn host(_: SourceKey, s: &Source) -> Attribution {
        let mut who = unknown();
        who.process.pid = s.last_tgid;
        who.process.name = s.last_comm().into();
        who.host = Some(true);
        who
    }

    #[test]
    fn deltas_per_source_and_the_uncharged_rest_sum_to_the_kernels_totals() {
        let mut losses = SourceLosses::default();
        let first = losses.read(
            &[
                (key(1), source(100, 2, "flooder")),
                (key(2), source(0, 0, "victim")),
            ],
            &kernel(100, 5),
            host,
        );
        let summary: Vec<_> = first
            .iter()
            .map(|l| (source_name(&l.who), l.reason, l.events))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "(host) flooder [42]".to_string(),
                    KernelCounter::OverShare,
                    100
                ),
                ("(unknown)".to_string(), KernelCounter::RingbufFull, 3),
                (
                    "(host) flooder [42]".to_string(),
                    KernelCounter::RingbufFull,
                    2
                ),
            ]
        );
        // Only what grew; a source the kernel began again counts from zero.
        let second = losses.read(&[(key(1), source(7, 2, "flooder"))], &kernel(107, 5), host);
        assert_eq!(second.len(), 1, "{second:?}");
        assert_eq!(
            (second[0].reason, second[0].events),
            (KernelCounter::OverShare, 7)
        );
        assert!(losses
            .read(&[(key(1), source(7, 2, "flooder"))], &kernel(107, 5), host)
            .is_empty());
    }

    #[test]
    fn the_warning_names_the_largest_sources_escaped() {
        let mut losses = SourceLosses::default();
        let mut window = LossWindow::default();
        let sources: Vec<_> = (1..=5)
            .map(|i| (key(i), source(i * 10, 0, &format!("p{i}\x1b[2J"))))
            .collect();
        window.add(&losses.read(&sources, &kernel(150, 0), host));
        let line = window.take_line().unwrap();
        assert_eq!(
            line,
            "dnslens: lost by source: (host) p5\\x1b[2J [42] 50 over its share, \
             (host) p4\\x1b[2J [42] 40 over its share, (host) p3\\x1b[2J [42] 30 over its share \
             and 2 more"
        );
        assert_eq!(window.take_line(), None, "a window starts again");
    }
}
