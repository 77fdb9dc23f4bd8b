//! The timely operator behind both dedup steps: per-key chains of anchors,
//! maintained by corrections, with whole groups forgotten once expired.
//! See the parent module's documentation for the semantics and why they
//! need this operator rather than a `reduce` with retirement.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};

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

/// FxHash: the keys are hashes already (event ids are xxh3-128, ids are
/// hashed), so a multiply per word spreads them well enough, for a fraction
/// of SipHash's cost. Fixed, so the table behaves the same on every run.
#[derive(Default)]
struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_u128(&mut self, n: u128) {
        let [low, high] = [n, n >> 64].map(|half| u64::try_from(half & u128::from(u64::MAX)));
        self.add(low.unwrap_or_default());
        self.add(high.unwrap_or_default());
    }

    fn write_usize(&mut self, n: usize) {
        self.add(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// A key's copies. Nearly every key has one, kept inline rather than in a
/// vector of its own: one allocation less per key, and one pointer less to
/// chase.
enum Copies {
    One([(Event, isize); 1]),
    Many(Vec<(Event, isize)>),
}

impl Copies {
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
}

/// One worker's share of the keys: each key's copies with their counts,
/// sorted by `Event` (so by `ts` first), zero counts removed.
///
/// Keys are looked up once per update, in no particular order: a hash
/// table finds them with one or two cache misses where a B-tree over
/// millions of keys takes a dozen. Its order is never observed: updates are
/// applied in key order and expiry has its own ordered set.
struct Chains<K> {
    window: Millis,
    /// `window + horizon`: how long after its anchor a group is remembered.
    retention: Option<Millis>,
    reason: DuplicateReason,
    key: fn(&Event) -> K,
    /// Each key's slot in `slots`.
    slot_of: HashMap<K, usize, BuildHasherDefault<KeyHasher>>,
    /// The copies of the keys, one slot per key; a key's copies stay put
    /// while the table of keys grows.
    slots: Vec<Copies>,
    /// Slots of forgotten keys, for reuse.
    free: Vec<usize>,
    /// Copies held in `slots`, for the gauge.
    copy_count: usize,
    /// `(expiry of the key's first group, key)`. Entries may be stale (the
    /// key changed since); they are checked when they come due.
    expiries: BTreeSet<(Millis, K)>,
    /// Scratch space reused across times.
    order: Vec<(K, usize)>,
    incoming: Vec<(Event, isize)>,
    merged: Vec<(Event, isize)>,
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
            slot_of: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            copy_count: 0,
            expiries: BTreeSet::new(),
            order: Vec::new(),
            incoming: Vec::new(),
            merged: Vec::new(),
            changes: Vec::new(),
        }
    }

    /// (keys, copies) held.
    fn size(&self) -> (usize, usize) {
        (self.slot_of.len(), self.copy_count)
    }

    /// Applies the updates of one time and reports the changes of the
    /// decisions of the keys they touch.
    fn apply(&mut self, updates: Vec<(Event, isize)>, mut emit: impl FnMut(Verdict, isize)) {
        // Group the updates by key by sorting small (key, index) pairs,
        // not the events themselves.
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend(
            updates
                .iter()
                .enumerate()
                .map(|(index, (event, _))| ((self.key)(event), index)),
        );
        order.sort_unstable();
        let mut rest = order.as_slice();
        while let Some((key, _)) = rest.first() {
            let run = rest.iter().take_while(|(k, _)| k == key).count();
            let (group, tail) = rest.split_at(run);
            rest = tail;
            self.incoming.clear();
            self.incoming
                .extend(group.iter().map(|(_, index)| updates[*index]));
            if run > 1 {
                consolidate(&mut self.incoming);
            } else {
                self.incoming.retain(|(_, diff)| *diff != 0);
            }
            if !self.incoming.is_empty() {
                self.apply_key(key, &mut emit);
            }
        }
        self.order = order;
    }

    /// Applies `self.incoming`, sorted and consolidated, to `key`.
    fn apply_key(&mut self, key: &K, emit: &mut impl FnMut(Verdict, isize)) {
        self.changes.clear();
        let first = match self.slot_of.entry(key.clone()) {
            Entry::Vacant(vacant) => {
                // A new key: its updates are its copies.
                let copies = self.incoming.as_slice();
                verdicts(copies, self.window, self.reason, &mut self.changes);
                self.copy_count += copies.len();
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.slots[slot] = Copies::new(copies);
                        slot
                    }
                    None => {
                        self.slots.push(Copies::new(copies));
                        self.slots.len() - 1
                    }
                };
                vacant.insert(slot);
                first_expiring(copies)
            }
            Entry::Occupied(occupied) => {
                let slot = *occupied.get();
                let copies = self.slots[slot].as_slice();
                verdicts(copies, self.window, self.reason, &mut self.changes);
                for (_, count) in self.changes.iter_mut() {
                    *count = -*count;
                }
                merge(copies, &self.incoming, &mut self.merged);
                self.copy_count -= copies.len();
                self.copy_count += self.merged.len();
                verdicts(&self.merged, self.window, self.reason, &mut self.changes);
                consolidate(&mut self.changes);
                let first = first_expiring(&self.merged);
                if self.merged.is_empty() {
                    occupied.remove();
                    self.slots[slot] = Copies::Many(Vec::new());
                    self.free.push(slot);
                } else {
                    self.slots[slot] = Copies::new(&self.merged);
                }
                first
            }
        };
        for (verdict, diff) in self.changes.drain(..) {
            emit(verdict, diff);
        }
        if let (Some(retention), Some(ts)) = (self.retention, first) {
            self.expiries
                .insert((ts.saturating_add(retention), key.clone()));
        }
    }

    /// Forgets what no update can change any more: with a horizon, the
    /// groups whose anchor expired before the frontier `bound`; everything
    /// once the input has ended (`bound` is `None`).
    fn forget(&mut self, bound: Option<Time>) {
        let Some(bound) = bound else {
            if !self.slots.is_empty() || !self.expiries.is_empty() {
                self.slot_of = HashMap::default();
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
            let Some(&slot) = self.slot_of.get(&key) else {
                continue;
            };
            let copies = self.slots[slot].as_slice();
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
                    self.slots[slot] = Copies::new(&kept);
                    self.expiries
                        .insert((anchor.ts.saturating_add(retention), key));
                }
                None => {
                    self.slot_of.remove(&key);
                    self.slots[slot] = Copies::Many(Vec::new());
                    self.free.push(slot);
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

/// Writes sorted `copies` plus sorted, consolidated `updates` to `out`,
/// sorted, dropping zeros.
fn merge(copies: &[(Event, isize)], updates: &[(Event, isize)], out: &mut Vec<(Event, isize)>) {
    out.clear();
    let (mut copies, mut updates) = (copies.iter().peekable(), updates.iter().peekable());
    loop {
        let next = match (copies.peek(), updates.peek()) {
            (Some(copy), Some(update)) => match copy.0.cmp(&update.0) {
                std::cmp::Ordering::Less => copies.next().copied(),
                std::cmp::Ordering::Greater => updates.next().copied(),
                std::cmp::Ordering::Equal => {
                    let count = copy.1 + update.1;
                    let event = copy.0;
                    copies.next();
                    updates.next();
                    Some((event, count))
                }
            },
            (Some(_), None) => copies.next().copied(),
            (None, Some(_)) => updates.next().copied(),
            (None, None) => break,
        };
        if let Some((event, count)) = next {
            if count != 0 {
                out.push((event, count));
            }
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
