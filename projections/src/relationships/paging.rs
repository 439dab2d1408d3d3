//! Paging: relationships in id order after a cursor, selected by patient, provider or status.
//! Ids are random, so the order is sorted on demand from the entries' id prefixes rather than
//! kept in an index that would cost the server memory for every relationship.

use serde::Serialize;

use super::ids::prefix_of;
use super::{RelationshipsView, Standing, Summary};

impl RelationshipsView {
    /// Every relationship, ordered by id (a stable order for paging).
    pub fn all(&self) -> impl Iterator<Item = Summary<'_>> {
        self.ordered(None, |_| true, None)
            .into_iter()
            .map(|slot| self.summary(slot))
    }

    /// The relationships with ids after `after`, ordered by id.
    pub fn after<'a>(&'a self, after: &'a str) -> impl Iterator<Item = Summary<'a>> + 'a {
        self.ordered(Some(after), |_| true, None)
            .into_iter()
            .map(|slot| self.summary(slot))
    }

    /// Entries in id order, after `after` when given, that `keep` accepts; the first `limit` of
    /// them when given. Sorted on demand: ids are random, and an ordered index would cost the
    /// server memory for every relationship to speed up operators' paging.
    fn ordered(
        &self,
        after: Option<&str>,
        keep: impl Fn(u32) -> bool,
        limit: Option<usize>,
    ) -> Vec<u32> {
        let cursor = after.map(|after| (prefix_of(after), after));
        let mut keyed: Vec<([u8; 16], u32)> = (0..self.entries.len)
            .filter_map(|slot| {
                let prefix = self.entries.prefix(slot);
                (self.is_after(slot, prefix, cursor) && keep(slot)).then_some((prefix, slot))
            })
            .collect();
        let by_id = |a: &([u8; 16], u32), b: &([u8; 16], u32)| {
            a.0.cmp(&b.0)
                .then_with(|| self.entries.id(a.1).cmp(&self.entries.id(b.1)))
        };
        if let Some(limit) = limit {
            if limit < keyed.len() {
                keyed.select_nth_unstable_by(limit, by_id);
                keyed.truncate(limit);
            }
        }
        keyed.sort_unstable_by(by_id);
        keyed.into_iter().map(|(_, slot)| slot).collect()
    }

    /// One page of relationships in id order, after `query.after`, with the cursor for the next.
    /// The same as [`RelationshipsView::page_candidates`], [`PageCandidates::order`] and
    /// [`RelationshipsView::page_of`] in turn, for a caller that holds no lock.
    pub fn page(&self, query: &PageQuery<'_>) -> Page<'_> {
        let mut candidates = self.page_candidates(query);
        candidates.order();
        self.page_of(query, candidates)
    }

    /// The relationships a page may hold, gathered without being put in order: a server gathers
    /// them under its views' lock and orders them after letting it go ([`PageCandidates::order`]),
    /// so that ordering a hundred thousand ids never holds up the commits that update the views.
    pub fn page_candidates(&self, query: &PageQuery<'_>) -> PageCandidates {
        let limit = query.limit.max(1);
        if query.patient_agent_id.is_some() {
            // A patient has few relationships: the page is made from its index, under the lock.
            return PageCandidates {
                keyed: Vec::new(),
                limit,
            };
        }
        let provider = query.provider_npi.map(|npi| self.provider_of(npi));
        let cursor = query.after.map(|after| (prefix_of(after), after));
        let keyed = (0..self.entries.len)
            .filter_map(|slot| {
                let entry = self.entries.get(slot);
                let in_page = provider.is_none_or(|provider| provider == Some(entry.provider))
                    && query
                        .status
                        .is_none_or(|status| status == self.status(slot));
                if !in_page {
                    return None;
                }
                let prefix = self.entries.prefix(slot);
                self.is_after(slot, prefix, cursor)
                    .then_some((prefix, slot))
            })
            .collect();
        PageCandidates { keyed, limit }
    }

    /// The page made of `candidates` once ordered: the ids that share a prefix put in order by
    /// their whole id (under the lock; there are few), the summaries taken.
    pub fn page_of(&self, query: &PageQuery<'_>, candidates: PageCandidates) -> Page<'_> {
        let limit = candidates.limit;
        let mut items: Vec<Summary<'_>> = match query.patient_agent_id {
            Some(patient) => {
                let keep = |summary: &Summary<'_>| {
                    query
                        .provider_npi
                        .is_none_or(|provider| summary.provider_npi == provider)
                        && query.status.is_none_or(|status| summary.status == status)
                };
                let mut items: Vec<(String, Summary<'_>)> = self
                    .by_patient(patient)
                    .filter(keep)
                    .map(|summary| (summary.id.to_string(), summary))
                    .filter(|(id, _)| query.after.is_none_or(|after| id.as_str() > after))
                    .collect();
                items.sort_by(|a, b| a.0.cmp(&b.0));
                items.truncate(limit + 1);
                items.into_iter().map(|(_, summary)| summary).collect()
            }
            None => {
                let mut slots = Vec::with_capacity(candidates.keyed.len());
                for run in candidates.keyed.chunk_by(|a, b| a.0 == b.0) {
                    let start = slots.len();
                    slots.extend(run.iter().map(|(_, slot)| *slot));
                    if run.len() > 1 {
                        slots[start..]
                            .sort_by(|a, b| self.entries.id(*a).cmp(&self.entries.id(*b)));
                    }
                }
                slots.truncate(limit + 1);
                slots.into_iter().map(|slot| self.summary(slot)).collect()
            }
        };
        let next_after = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| last.id.to_string())
        } else {
            None
        };
        Page { items, next_after }
    }

    /// Whether the entry at `slot`, whose id has `prefix`, comes after the cursor (its id's prefix
    /// and the id), if there is one. A smaller prefix means a smaller id: only equal prefixes need
    /// the whole id.
    fn is_after(&self, slot: u32, prefix: [u8; 16], cursor: Option<([u8; 16], &str)>) -> bool {
        match cursor {
            None => true,
            Some((floor, _)) if prefix > floor => true,
            Some((floor, _)) if prefix < floor => false,
            Some((_, after)) => *self.entries.id(slot) > *after,
        }
    }
}

/// What [`RelationshipsView::page`] selects.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageQuery<'a> {
    /// Only this patient's relationships.
    pub patient_agent_id: Option<&'a str>,
    /// Only this provider's.
    pub provider_npi: Option<&'a str>,
    /// Only those in this status.
    pub status: Option<Standing>,
    /// Only ids greater than this one (the previous page's cursor).
    pub after: Option<&'a str>,
    /// At most this many (at least 1).
    pub limit: usize,
}

/// The relationships a page may hold, before they are put in order ([`RelationshipsView::page_candidates`]).
#[derive(Clone, Debug)]
pub struct PageCandidates {
    /// Each candidate's id prefix and slot.
    keyed: Vec<([u8; 16], u32)>,
    limit: usize,
}

impl PageCandidates {
    /// Puts the candidates in order of their id prefixes, keeping only what the page may need:
    /// its `limit + 1` first and any others sharing the last one's prefix (their whole ids decide).
    /// Needs no view: a server does this outside its lock.
    pub fn order(&mut self) {
        let wanted = self.limit + 1;
        if self.keyed.len() > wanted {
            self.keyed
                .select_nth_unstable_by_key(wanted - 1, |(prefix, _)| *prefix);
            let boundary = self.keyed[wanted - 1].0;
            let ties: Vec<([u8; 16], u32)> = self.keyed[wanted..]
                .iter()
                .filter(|(prefix, _)| *prefix == boundary)
                .copied()
                .collect();
            self.keyed.truncate(wanted);
            self.keyed.extend(ties);
        }
        self.keyed.sort_unstable_by_key(|(prefix, _)| *prefix);
    }
}

/// One page of relationships.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<'a> {
    /// The relationships, in id order.
    pub items: Vec<Summary<'a>>,
    /// The cursor for the next page (`after=`), absent on the last page.
    pub next_after: Option<String>,
}

impl Serialize for RelationshipsView {
    /// Every relationship in id order: in full when the view keeps their records, as summaries
    /// otherwise.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.index_only {
            serializer.collect_seq(self.all())
        } else {
            serializer.collect_seq(self.all().filter_map(|summary| self.full(&summary)))
        }
    }
}
