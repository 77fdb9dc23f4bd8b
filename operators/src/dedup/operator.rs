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
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;

use super::index::SlotIndex;
use super::{DedupConfig, DedupGauge, Duplicate, DuplicateReason};

/// One step's decision about one copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// The copy is kept.
    Kept(Event),
    /// The copy duplicates a kept one.
    Duplicate(Duplicate),
}

/// The outputs of one dedup step.
pub(crate) struct Stage<'scope> {
    /// The kept copies that `divert` does not claim.
    pub(crate) kept: VecCollection<'scope, Time, Event>,
    /// The kept copies that `divert` claims.
    pub(crate) diverted: VecCollection<'scope, Time, Event>,
    /// The duplicate copies.
    pub(crate) duplicates: VecCollection<'scope, Time, Duplicate>,
}

type Updates<D> = Vec<(D, Time, isize)>;
type Output<D> = OutputBuilder<Time, CapacityContainerBuilder<Updates<D>>>;

/// Deduplicates `events` by `key`: exchanges updates by the key's hash,
/// applies each time once the input frontier has passed it, and emits the
/// changes of the decisions of the keys it touched at that time. Kept
/// copies leave by [`Stage::diverted`] when `divert` holds for them, so the
/// next step gets its input without a filter over every kept copy.
pub(crate) fn dedup_stage<'scope, K>(
    events: VecCollection<'scope, Time, Event>,
    name: &str,
    config: &DedupConfig,
    reason: DuplicateReason,
    key: fn(&Event) -> K,
    divert: fn(&Event) -> bool,
    gauge: Option<DedupGauge>,
) -> Stage<'scope>
where
    K: Ord + Hash + Clone + 'static,
{
    let mut state = Chains::new(config, reason, key);
    let exchange = Exchange::new(move |update: &(Event, Time, isize)| key(&update.0).hashed());
    let mut builder = OperatorBuilder::new(name.to_owned(), events.inner.scope());
    let mut input = builder.new_input(events.inner, exchange);
    let (kept_output, kept) = builder.new_output();
    let (diverted_output, diverted) = builder.new_output();
    let (duplicate_output, duplicates) = builder.new_output();
    let mut kept_output: Output<Event> = OutputBuilder::from(kept_output);
    let mut diverted_output: Output<Event> = OutputBuilder::from(diverted_output);
    let mut duplicate_output: Output<Duplicate> = OutputBuilder::from(duplicate_output);
    builder.build(move |_capabilities| {
        // Updates of times the input frontier has not passed yet, and one
        // capability per output at the least of them (or of what arrived
        // since): corrections of every time can be sent under it, which
        // keeps the number of messages down when ticks are fine.
        let mut pending: BTreeMap<Time, Vec<(Event, isize)>> = BTreeMap::new();
        let mut held: Option<[Capability<Time>; 3]> = None;
        let mut reported = (0, 0);
        move |frontiers| {
            input.for_each(|capability, data| {
                // As timely documents, a message sent under no capability
                // claims no time; differential never sends one.
                let Some(&least) = capability.least() else {
                    return;
                };
                if held.as_ref().is_none_or(|held| least < *held[0].time()) {
                    held = Some([0, 1, 2].map(|port| capability.delayed(&least, port)));
                }
                for (event, time, diff) in data.drain(..) {
                    // Differential's updates are never before their message's time.
                    let time = time.max(least);
                    pending.entry(time).or_default().push((event, diff));
                }
            });
            // Times are totally ordered: every pending time below the
            // frontier is complete, and applying them in order is exact.
            let bound = frontiers[0].frontier().iter().min().copied();
            if let Some([kept_cap, diverted_cap, duplicate_cap]) = &held {
                let mut kept_handle = kept_output.activate();
                let mut kept = kept_handle.session(kept_cap);
                let mut diverted_handle = diverted_output.activate();
                let mut diverted = diverted_handle.session(diverted_cap);
                let mut duplicate_handle = duplicate_output.activate();
                let mut duplicates = duplicate_handle.session(duplicate_cap);
                while let Some(entry) = pending.first_entry() {
                    if bound.is_some_and(|bound| *entry.key() >= bound) {
                        break;
                    }
                    let (time, updates) = entry.remove_entry();
                    state.apply(updates, |verdict, diff| match verdict {
                        Verdict::Kept(event) if divert(&event) => {
                            diverted.give((event, time, diff))
                        }
                        Verdict::Kept(event) => kept.give((event, time, diff)),
                        Verdict::Duplicate(duplicate) => duplicates.give((duplicate, time, diff)),
                    });
                }
            }
            match (pending.keys().next(), held.as_mut()) {
                (Some(next), Some(capabilities)) => {
                    for capability in capabilities {
                        capability.downgrade(next);
                    }
                }
                _ => held = None,
            }
            state.forget(bound);
            if let Some(gauge) = &gauge {
                let now = state.size();
                gauge.report(reported, now);
                reported = now;
            }
        }
    });
    Stage {
        kept: kept.as_collection(),
        diverted: diverted.as_collection(),
        duplicates: duplicates.as_collection(),
    }
}

/// A key's copies. Nearly every key has one, kept inline rather than in a
/// vector of its own: one allocation less per key, and one pointer less to
/// chase.
#[derive(Clone)]
enum Copies {
    One([(Event, isize); 1]),
    Many(Vec<(Event, isize)>),
}

impl Copies {
    const NONE: Copies = Copies::Many(Vec::new());

    fn new(copies: &[(Event, isize)]) -> Copies {
        match copies {
            [copy] => Copies::One([*copy]),
            _ => Copies::Many(copies.to_vec()),
        }
    }

    fn as_slice(&self) -> &[(Event, isize)] {
        match self {
            Copies::One(copy) => copy,
            Copies::Many(copies) => copies,
        }
    }

    /// Adds `diff` copies of `event`, keeping the copies sorted and
    /// dropping a count that reaches zero.
    fn add(&mut self, event: Event, diff: isize) {
        let mut copies = match std::mem::replace(self, Copies::NONE) {
            Copies::One([copy]) => vec![copy],
            Copies::Many(copies) => copies,
        };
        match copies.binary_search_by(|(copy, _)| copy.cmp(&event)) {
            Ok(at) => {
                copies[at].1 += diff;
                if copies[at].1 == 0 {
                    copies.remove(at);
                }
            }
            Err(at) => copies.insert(at, (event, diff)),
        }
        *self = match copies.as_slice() {
            [copy] => Copies::One([*copy]),
            _ => Copies::Many(copies),
        };
    }
}

/// A key, its copies, and the last time [`Chains::apply`] touched them.
struct Slot<K> {
    key: K,
    copies: Copies,
    /// The [`Chains::generation`] of that time.
    touched: u64,
}

/// A key changed by the time being applied, and its copies before.
struct Touched {
    slot: usize,
    /// `None` for a key that was new at this time.
    before: Option<Copies>,
}

/// One worker's share of the keys: each key's copies with their counts,
/// sorted by `Event` (so by `ts` first), zero counts removed.
///
/// Keys are looked up once per update, in arrival order, in a hash index
/// whose cache misses are waited for [`WARM_AHEAD`] updates at a time: a
/// hash table finds them with one cache miss where a B-tree over millions
/// of keys takes a dozen, and reading the updates in the order they came
/// reads memory in order, where grouping them by key first would not. Its
/// order is never observed: decisions are emitted per key after all of a
/// time's updates are in, and expiry has its own ordered set.
struct Chains<K> {
    window: Millis,
    /// `window + horizon`: how long after its anchor a group is remembered.
    retention: Option<Millis>,
    reason: DuplicateReason,
    key: fn(&Event) -> K,
    /// Each key's slot in `slots`, by the key's hash.
    index: SlotIndex,
    /// The keys and their copies, one slot per key; a key's copies stay
    /// put while the index grows.
    slots: Vec<Slot<K>>,
    /// Slots of forgotten keys, for reuse.
    free: Vec<usize>,
    /// Copies held in `slots`, for the gauge.
    copy_count: usize,
    /// `(expiry of the key's first group, key)`. Entries may be stale (the
    /// key changed since); they are checked when they come due.
    expiries: BTreeSet<(Millis, K)>,
    /// Counts the times applied, so that a slot knows whether the time
    /// being applied has touched it already.
    generation: u64,
    /// Scratch space reused across times.
    touched: Vec<Touched>,
    changes: Vec<(Verdict, isize)>,
}

impl<K: Ord + Hash + Clone> Chains<K> {
    fn new(config: &DedupConfig, reason: DuplicateReason, key: fn(&Event) -> K) -> Chains<K> {
        let window = config.window.max(0);
        Chains {
            window,
            retention: config
                .horizon
                .map(|horizon| window.saturating_add(horizon.max(0))),
            reason,
            key,
            index: SlotIndex::new(),
            slots: Vec::new(),
            free: Vec::new(),
            copy_count: 0,
            expiries: BTreeSet::new(),
            generation: 0,
            touched: Vec::new(),
            changes: Vec::new(),
        }
    }

    /// (keys, copies) held.
    fn size(&self) -> (usize, usize) {
        (self.index.len(), self.copy_count)
    }

    /// Applies the updates of one time and reports the changes of the
    /// decisions of the keys they touch.
    fn apply(&mut self, updates: Vec<(Event, isize)>, mut emit: impl FnMut(Verdict, isize)) {
        self.generation += 1;
        let mut touched = std::mem::take(&mut self.touched);
        let mut hashes = [0u64; WARM_AHEAD];
        for chunk in updates.chunks(WARM_AHEAD) {
            for (hash, (event, _)) in hashes.iter_mut().zip(chunk) {
                *hash = (self.key)(event).hashed();
            }
            let hashes = &hashes[..chunk.len()];
            std::hint::black_box(self.index.warm(hashes.iter().copied()));
            for (&(event, diff), &hash) in chunk.iter().zip(hashes) {
                if diff != 0 {
                    self.add(event, diff, hash, &mut touched);
                }
            }
        }
        for Touched { slot, before } in touched.drain(..) {
            self.settle(slot, before, &mut emit);
        }
        self.touched = touched;
    }

    /// The slot of `key`, whose hash is `hash`.
    fn slot_of(&self, key: &K, hash: u64) -> Option<usize> {
        self.index
            .find(hash, |slot| self.slots[slot as usize].key == *key)
            .map(|slot| slot as usize)
    }

    /// Adds `diff` copies of `event`, whose key's hash is `hash`, to its
    /// key's slot, noting in `touched` the slot and its copies before if
    /// this time had not touched it yet.
    fn add(&mut self, event: Event, diff: isize, hash: u64, touched: &mut Vec<Touched>) {
        let key = (self.key)(&event);
        match self.slot_of(&key, hash) {
            None => {
                let slot = Slot {
                    key,
                    copies: Copies::One([(event, diff)]),
                    touched: self.generation,
                };
                let index = match self.free.pop() {
                    Some(index) => {
                        self.slots[index] = slot;
                        index
                    }
                    None => {
                        self.slots.push(slot);
                        self.slots.len() - 1
                    }
                };
                self.index.insert(hash, slot_number(index));
                touched.push(Touched {
                    slot: index,
                    before: None,
                });
            }
            Some(index) => {
                let slot = &mut self.slots[index];
                if slot.touched != self.generation {
                    slot.touched = self.generation;
                    touched.push(Touched {
                        slot: index,
                        before: Some(slot.copies.clone()),
                    });
                }
                slot.copies.add(event, diff);
            }
        }
    }

    /// Reports the changes of the decisions of the key in `slot`, whose
    /// copies were `before`, and forgets the key if none is left.
    fn settle(
        &mut self,
        slot: usize,
        before: Option<Copies>,
        emit: &mut impl FnMut(Verdict, isize),
    ) {
        let after = self.slots[slot].copies.as_slice();
        self.changes.clear();
        if let Some(before) = &before {
            verdicts(
                before.as_slice(),
                self.window,
                self.reason,
                &mut self.changes,
            );
            for (_, count) in self.changes.iter_mut() {
                *count = -*count;
            }
            self.copy_count -= before.as_slice().len();
        }
        verdicts(after, self.window, self.reason, &mut self.changes);
        if before.is_some() {
            consolidate(&mut self.changes);
        }
        self.copy_count += after.len();
        let first = first_expiring(after);
        if let (Some(retention), Some(ts)) = (self.retention, first) {
            let key = self.slots[slot].key.clone();
            self.expiries.insert((ts.saturating_add(retention), key));
        }
        if after.is_empty() {
            self.release(slot);
        }
        for (verdict, diff) in self.changes.drain(..) {
            emit(verdict, diff);
        }
    }

    /// Forgets the key in `slot` and frees the slot.
    fn release(&mut self, slot: usize) {
        let hash = self.slots[slot].key.hashed();
        self.index.remove(hash, slot_number(slot));
        self.slots[slot].copies = Copies::NONE;
        self.free.push(slot);
    }

    /// Forgets what no update can change any more: with a horizon, the
    /// groups whose anchor expired before the frontier `bound`; everything
    /// once the input has ended (`bound` is `None`).
    fn forget(&mut self, bound: Option<Time>) {
        let Some(bound) = bound else {
            if !self.slots.is_empty() || !self.expiries.is_empty() {
                self.index.clear();
                self.slots = Vec::new();
                self.free = Vec::new();
                self.expiries.clear();
                self.copy_count = 0;
            }
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
            let Some(slot) = self.slot_of(&key, key.hashed()) else {
                continue;
            };
            let copies = self.slots[slot].copies.as_slice();
            // The first anchor still live; groups before it have expired.
            let live = anchors(copies, self.window)
                .find(|anchor| anchor.ts.saturating_add(retention) > frontier);
            self.copy_count -= copies.len();
            match live {
                Some(anchor) => {
                    let kept: Vec<(Event, isize)> = copies
                        .iter()
                        .filter(|(event, _)| *event >= anchor)
                        .copied()
                        .collect();
                    self.copy_count += kept.len();
                    self.slots[slot].copies = Copies::new(&kept);
                    self.expiries
                        .insert((anchor.ts.saturating_add(retention), key));
                }
                None => self.release(slot),
            }
        }
    }
}

/// How many updates' index buckets are read at once, so that their cache
/// misses overlap: about as many as a core keeps misses in flight.
const WARM_AHEAD: usize = 16;

/// `index` as a slot number of the [`SlotIndex`]. Each slot holds a whole
/// `Event`, so 2^32 of them (over 500 GB) cannot fit in memory anyway.
fn slot_number(index: usize) -> u32 {
    u32::try_from(index).unwrap_or_else(|_| panic!("dedup: more than 2^32 keys on one worker"))
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
