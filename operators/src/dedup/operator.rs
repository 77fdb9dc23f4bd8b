//! The timely operator behind both dedup steps: per-key chains of anchors,
//! maintained by corrections, with whole groups forgotten once expired.
//! See the parent module's documentation for the semantics and why they
//! need this operator rather than a `reduce` with retirement.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;

use adflow::event::Event;
use adflow::pipeline::Time;
use adflow::timestamp::Millis;
use differential_dataflow::collection::{AsCollection, VecCollection};
use differential_dataflow::consolidation::consolidate;
use differential_dataflow::hashable::Hashable;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::Capability;

use super::{DedupConfig, DedupGauge, Duplicate, DuplicateReason};

/// One step's decision about one copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) enum Verdict {
    /// The copy is kept.
    Kept(Event),
    /// The copy duplicates a kept one.
    Duplicate(Duplicate),
}

impl Verdict {
    /// The kept event, if this is one.
    pub(crate) fn kept(self) -> Option<Event> {
        match self {
            Verdict::Kept(event) => Some(event),
            Verdict::Duplicate(_) => None,
        }
    }

    /// The duplicate, if this is one.
    pub(crate) fn duplicate(self) -> Option<Duplicate> {
        match self {
            Verdict::Kept(_) => None,
            Verdict::Duplicate(duplicate) => Some(duplicate),
        }
    }
}

/// Deduplicates `events` by `key`: exchanges updates by the key's hash,
/// applies each time once the input frontier has passed it, and emits the
/// changes of the decisions of the keys it touched at that time.
pub(crate) fn dedup_stage<'scope, K>(
    events: VecCollection<'scope, Time, Event>,
    name: &str,
    config: &DedupConfig,
    reason: DuplicateReason,
    key: fn(&Event) -> K,
    gauge: Option<DedupGauge>,
) -> VecCollection<'scope, Time, Verdict>
where
    K: Ord + Hash + Clone + 'static,
{
    let mut state = Chains::new(config, reason, key);
    let exchange = Exchange::new(move |update: &(Event, Time, isize)| key(&update.0).hashed());
    events
        .inner
        .unary_frontier(exchange, name, move |_capability, _info| {
            // Updates of times the input frontier has not passed yet, and
            // one capability at the least of them (or of what arrived since):
            // corrections of every time can be sent under it, which keeps
            // the number of messages down when ticks are fine.
            let mut pending: BTreeMap<Time, Vec<(Event, isize)>> = BTreeMap::new();
            let mut held: Option<Capability<Time>> = None;
            let mut reported = (0, 0);
            move |(input, frontier), output| {
                let port = output.output_index();
                input.for_each(|capability, data| {
                    // As timely documents, a message sent under no
                    // capability claims no time; differential never sends one.
                    let Some(&least) = capability.least() else {
                        return;
                    };
                    if held.as_ref().is_none_or(|held| least < *held.time()) {
                        held = Some(capability.delayed(&least, port));
                    }
                    for (event, time, diff) in data.drain(..) {
                        // Differential's updates are never before their message's time.
                        let time = time.max(least);
                        pending.entry(time).or_default().push((event, diff));
                    }
                });
                // Times are totally ordered: every pending time below the
                // frontier is complete, and applying them in order is exact.
                let bound = frontier.frontier().iter().min().copied();
                if let Some(capability) = &held {
                    let mut session = output.session(capability);
                    while let Some(entry) = pending.first_entry() {
                        if bound.is_some_and(|bound| *entry.key() >= bound) {
                            break;
                        }
                        let (time, updates) = entry.remove_entry();
                        state.apply(updates, |verdict, diff| session.give((verdict, time, diff)));
                    }
                }
                match (pending.keys().next(), held.as_mut()) {
                    (Some(next), Some(capability)) => capability.downgrade(next),
                    _ => held = None,
                }
                state.forget(bound);
                if let Some(gauge) = &gauge {
                    let now = state.size();
                    gauge.report(reported, now);
                    reported = now;
                }
            }
        })
        .as_collection()
}

/// One worker's share of the keys: each key's copies with their counts,
/// sorted by `Event` (so by `ts` first), zero counts removed.
struct Chains<K> {
    window: Millis,
    /// `window + horizon`: how long after its anchor a group is remembered.
    retention: Option<Millis>,
    reason: DuplicateReason,
    key: fn(&Event) -> K,
    copies: BTreeMap<K, Vec<(Event, isize)>>,
    /// Copies held in `copies`, for the gauge.
    copy_count: usize,
    /// `(expiry of the key's first group, key)`. Entries may be stale (the
    /// key changed since); they are checked when they come due.
    expiries: BTreeSet<(Millis, K)>,
}

impl<K: Ord + Clone> Chains<K> {
    fn new(config: &DedupConfig, reason: DuplicateReason, key: fn(&Event) -> K) -> Chains<K> {
        let window = config.window.max(0);
        Chains {
            window,
            retention: config
                .horizon
                .map(|horizon| window.saturating_add(horizon.max(0))),
            reason,
            key,
            copies: BTreeMap::new(),
            copy_count: 0,
            expiries: BTreeSet::new(),
        }
    }

    /// (keys, copies) held.
    fn size(&self) -> (usize, usize) {
        (self.copies.len(), self.copy_count)
    }

    /// Applies the updates of one time and reports the changes of the
    /// decisions of the keys they touch.
    fn apply(&mut self, updates: Vec<(Event, isize)>, mut emit: impl FnMut(Verdict, isize)) {
        let mut keyed: Vec<((K, Event), isize)> = updates
            .into_iter()
            .map(|(event, diff)| (((self.key)(&event), event), diff))
            .collect();
        consolidate(&mut keyed);
        let mut changes = Vec::new();
        let mut rest = keyed.as_slice();
        while let Some(((key, _), _)) = rest.first() {
            let run = rest.iter().take_while(|((k, _), _)| k == key).count();
            let (updates, tail) = rest.split_at(run);
            rest = tail;
            let updates = updates.iter().map(|((_, event), diff)| (*event, *diff));
            changes.clear();
            let first = match self.copies.get_mut(key) {
                Some(copies) => {
                    verdicts(copies, self.window, self.reason, &mut changes);
                    for (_, count) in changes.iter_mut() {
                        *count = -*count;
                    }
                    self.copy_count -= copies.len();
                    merge(copies, updates);
                    self.copy_count += copies.len();
                    verdicts(copies, self.window, self.reason, &mut changes);
                    consolidate(&mut changes);
                    let first = first_expiring(copies);
                    if copies.is_empty() {
                        self.copies.remove(key);
                    }
                    first
                }
                None => {
                    // A new key: its updates, sorted and consolidated, are its copies.
                    let copies: Vec<(Event, isize)> = updates.collect();
                    verdicts(&copies, self.window, self.reason, &mut changes);
                    self.copy_count += copies.len();
                    let first = first_expiring(&copies);
                    self.copies.insert(key.clone(), copies);
                    first
                }
            };
            for (verdict, diff) in changes.drain(..) {
                emit(verdict, diff);
            }
            if let (Some(retention), Some(ts)) = (self.retention, first) {
                self.expiries
                    .insert((ts.saturating_add(retention), key.clone()));
            }
        }
    }

    /// Forgets what no update can change any more: with a horizon, the
    /// groups whose anchor expired before the frontier `bound`; everything
    /// once the input has ended (`bound` is `None`).
    fn forget(&mut self, bound: Option<Time>) {
        let Some(bound) = bound else {
            self.copies.clear();
            self.expiries.clear();
            self.copy_count = 0;
            return;
        };
        let Some(retention) = self.retention else {
            return;
        };
        let frontier = Millis::try_from(bound).unwrap_or(Millis::MAX);
        while let Some((expiry, _)) = self.expiries.first() {
            if *expiry > frontier {
                break;
            }
            let Some((_, key)) = self.expiries.pop_first() else {
                break;
            };
            let Some(copies) = self.copies.get_mut(&key) else {
                continue;
            };
            // The first anchor still live; groups before it have expired.
            let live = anchors(copies, self.window)
                .find(|anchor| anchor.ts.saturating_add(retention) > frontier);
            self.copy_count -= copies.len();
            match live {
                Some(anchor) => {
                    copies.retain(|(event, _)| *event >= anchor);
                    self.copy_count += copies.len();
                    self.expiries
                        .insert((anchor.ts.saturating_add(retention), key));
                }
                None => {
                    self.copies.remove(&key);
                }
            }
        }
    }
}

/// The time the expiry of a key's first group is counted from: its first
/// live copy, the anchor. A key left with only negative counts (a deletion
/// that broke the horizon contract) counts from its last entry instead, so
/// that even bad input cannot pin state forever.
fn first_expiring(copies: &[(Event, isize)]) -> Option<Millis> {
    copies
        .iter()
        .find(|(_, count)| *count > 0)
        .or_else(|| copies.last())
        .map(|(event, _)| event.ts)
}

/// Adds sorted, consolidated `updates` to sorted `copies`, dropping zeros.
fn merge(copies: &mut Vec<(Event, isize)>, updates: impl Iterator<Item = (Event, isize)>) {
    for (event, diff) in updates {
        match copies.binary_search_by(|(copy, _)| copy.cmp(&event)) {
            Ok(index) => {
                copies[index].1 += diff;
                if copies[index].1 == 0 {
                    copies.remove(index);
                }
            }
            Err(index) => copies.insert(index, (event, diff)),
        }
    }
}

/// The anchors of a key's chain, in order. Copies with a count of zero or
/// less (only possible if a deletion broke the horizon contract) are
/// ignored.
fn anchors(copies: &[(Event, isize)], window: Millis) -> impl Iterator<Item = Event> + '_ {
    let mut anchor: Option<Millis> = None;
    copies
        .iter()
        .filter(|(_, count)| *count > 0)
        .filter_map(move |(event, _)| match anchor {
            Some(ts) if event.ts < ts.saturating_add(window) => None,
            _ => {
                anchor = Some(event.ts);
                Some(*event)
            }
        })
}

/// Appends the decisions for a key's copies, with multiplicities, to `out`.
fn verdicts(
    copies: &[(Event, isize)],
    window: Millis,
    reason: DuplicateReason,
    out: &mut Vec<(Verdict, isize)>,
) {
    let mut anchor: Option<Event> = None;
    for (event, count) in copies.iter().filter(|(_, count)| *count > 0) {
        match anchor {
            Some(kept) if event.ts < kept.ts.saturating_add(window) => {
                out.push((
                    Verdict::Duplicate(Duplicate::of(event, &kept, reason)),
                    *count,
                ));
            }
            _ => {
                anchor = Some(*event);
                if window > 0 {
                    // Further copies of the anchor itself are within its window.
                    out.push((Verdict::Kept(*event), 1));
                    if *count > 1 {
                        out.push((
                            Verdict::Duplicate(Duplicate::of(event, event, reason)),
                            *count - 1,
                        ));
                    }
                } else {
                    out.push((Verdict::Kept(*event), *count));
                }
            }
        }
    }
}
