//! The names a lookup may have been asked as, narrowed as the names of its walk come in: the
//! stitching rule's half that reads names (docs/schema.md, "Lookup lines").

use crate::resolv::{without_search_domain, ResolvConf};

/// Search domains taken into account (glibc's own limit was 6).
const MAX_SEARCH: usize = 8;

/// What the names of one lookup may have been asked as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Bases {
    /// With the process's search list: each name as is and with each search domain taken off;
    /// only those every name of the walk shares remain.
    Search(Vec<String>),
    /// Without one: the labels every name of the walk starts with.
    Wire(String),
}

impl Bases {
    pub(super) fn of(qname: &str, search: Option<&ResolvConf>) -> Bases {
        let qname = qname.to_ascii_lowercase();
        match search {
            Some(rc) => {
                let mut bases: Vec<String> = rc
                    .search
                    .iter()
                    .take(MAX_SEARCH)
                    .filter_map(|domain| without_search_domain(&qname, domain))
                    .map(str::to_string)
                    .collect();
                bases.push(qname);
                Bases::Search(bases)
            }
            None => Bases::Wire(qname),
        }
    }

    /// What remains when a name with `other` joins; `None` when nothing is shared.
    pub(super) fn narrowed(&self, other: &Bases) -> Option<Bases> {
        match (self, other) {
            (Bases::Search(mine), Bases::Search(theirs)) => {
                let kept: Vec<String> = mine
                    .iter()
                    .filter(|b| theirs.contains(b))
                    .cloned()
                    .collect();
                (!kept.is_empty()).then_some(Bases::Search(kept))
            }
            (Bases::Wire(mine), Bases::Wire(theirs)) => {
                let shared = mine
                    .split('.')
                    .zip(theirs.split('.'))
                    .take_while(|(a, b)| a == b)
                    .count();
                (shared > 0).then(|| {
                    Bases::Wire(mine.split('.').take(shared).collect::<Vec<_>>().join("."))
                })
            }
            _ => None,
        }
    }

    /// The name asked: with a search list the shortest that fits every name (the walk is taken
    /// to start at the first search domain), without one the shared labels.
    pub(super) fn into_name(self) -> String {
        match self {
            Bases::Search(mut bases) => bases
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.len())
                .map(|(i, _)| i)
                .map_or_else(String::new, |i| bases.swap_remove(i)),
            Bases::Wire(base) => base,
        }
    }

    pub(super) fn bytes(&self) -> usize {
        match self {
            Bases::Search(bases) => bases.iter().map(|b| b.len() + 24).sum(),
            Bases::Wire(base) => base.len(),
        }
    }
}
