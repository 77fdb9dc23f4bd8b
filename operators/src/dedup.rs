//! Dedup: exactly one copy per event id within a window, and one
//! conversion per (user, order id); every other copy is a [`Duplicate`],
//! counted and visible in its own output, never silently dropped.
//!
//! # Semantics
//!
//! The input is a multiset of events; an exact resend is a second copy of
//! the same [`Event`] (multiplicity 2). The answer depends only on that
//! multiset, never on arrival order, batching or the number of workers:
//!
//! 1. **By event id.** The copies of one `event_id` are ordered by
//!    `(ts, Event's Ord)` (which is `Event`'s `Ord`: `ts` is its first
//!    field). The first copy is kept and becomes the *anchor*. Each later
//!    copy is a duplicate of the current anchor if its `ts < anchor.ts +
//!    window`; otherwise it is kept and becomes the new anchor. A copy of
//!    multiplicity `m` counts as `m` copies: an exact resend is one kept
//!    copy and one duplicate. Duplicates carry
//!    [`DuplicateReason::EventId`].
//! 2. **By order id.** Among the copies kept by step 1, conversions with an
//!    `order_id` are grouped by (`user_id`, or `device_id` when there is no
//!    user, plus `order_id`) and the same rule applies: the first is kept,
//!    later ones within the window of the current anchor are duplicates
//!    with [`DuplicateReason::OrderId`]. Other events pass step 2 as they
//!    are.
//!
//! [`Deduplicated::unique`] holds the kept events and
//! [`Deduplicated::duplicates`] one [`Duplicate`] per duplicate copy,
//! naming the kept copy it duplicates. A window of zero (or less) makes no
//! copy a duplicate. The sequential twin is
//! [`crate::reference::dedup::dedup`].
//!
//! Updates are corrections, not recomputation: inserting or deleting a
//! copy (a `-1` update) recomputes only its key, and the outputs change by
//! retracting the old decisions and asserting the new ones at that time.
//! Deleting the kept copy promotes the next one; a late copy older than
//! the anchor takes its place and demotes it to a duplicate.
//!
//! # Bounded state
//!
//! With [`DedupConfig::horizon`] `Some(h)` (streams), the pipeline never
//! admits an event at dataflow time `τ` whose `ts < τ - h`: it is
//! dead-lettered `late` (see `docs/schema.md`, "Time inside the dataflow").
//! Call the set of copies made up of an anchor and the duplicates of it a
//! *group*. Once the input frontier `F` reaches `anchor.ts + window + h`,
//! no future copy can fall in the group's window (future copies have
//! `ts ≥ F - h ≥ anchor.ts + window`), nor before its anchor, so neither
//! the group's decisions nor those of later copies can change; and the
//! first copy after the group, at or beyond `anchor.ts + window`, is an
//! anchor whether or not the group is remembered. So the oldest groups of a
//! key are forgotten, whole, once the frontier passes their anchor's expiry,
//! and a key with no group left is forgotten entirely. State is bounded by
//! the copies of the last `window + h` of event time, whatever the length
//! of the stream. Without a horizon (backfills) every copy is kept until
//! the input ends: any event may still arrive.
//!
//! The contract is therefore the pipeline's: **every update at time `τ`
//! concerns an event with `ts ≥ τ - h`** (deletions included). Updates of
//! step 1's output inherit it: a change of a copy's decision at `τ` is
//! caused by an update at `τ` of that copy or of one ordered before it,
//! whose `ts` is no greater.
//!
//! Why not `retire_after` the input and `freeze_after` the outputs (see
//! [`crate::retention`])? Each copy would be retired at its own expiry.
//! When an anchor retires, the duplicate after it is recomputed as kept,
//! at a time before that duplicate's own expiry, so freezing does not stop
//! the bogus promotion; worse, the promoted copy becomes the anchor of
//! later copies, which flip to duplicates. Dedup decisions depend on the
//! whole chain of anchors, so the chain must be forgotten a whole group at
//! a time, a quantity that depends on the decisions, not on each record.
//! Hence a small custom timely operator (`dedup/operator.rs`): it exchanges
//! updates by key, buffers them per time until the input frontier passes
//! the time, applies complete times in order to a per-key list of
//! `(Event, count)`, emits retractions and assertions for the decisions
//! that changed, and forgets expired groups as described above.
//! [`DedupGauge`] reports how much it retains.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use adflow::event::{Event, EventId, EventKind, Id};
use adflow::money::Micros;
use adflow::pipeline::{Time, TimeConfig};
use adflow::sinks::{Column, ColumnType, OutputRecord, Value};
use adflow::timestamp::{Millis, DAY_MS};
use differential_dataflow::collection::VecCollection;
use serde::{Deserialize, Serialize};

mod index;
mod operator;

use operator::dedup_stage;

/// How deduplication decides and how long it remembers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupConfig {
    /// A copy whose `ts` is less than the anchor's `ts` plus this is a
    /// duplicate. Default: 24 hours.
    pub window: Millis,
    /// The pipeline's lateness horizon ([`TimeConfig::horizon`]). `Some`:
    /// state is forgotten once the frontier passes `anchor.ts + window +
    /// horizon`, which is exact because later events are dead-lettered
    /// `late`. `None` (backfills): state holds every copy until the input
    /// ends. Default: `None`.
    pub horizon: Option<Millis>,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            window: DAY_MS,
            horizon: None,
        }
    }
}

impl DedupConfig {
    /// The default window with the horizon of a pipeline's time
    /// configuration, so that retention matches what the pipeline admits.
    ///
    /// ```
    /// use adflow::pipeline::TimeConfig;
    /// use adflow_operators::dedup::DedupConfig;
    /// assert_eq!(DedupConfig::for_time(&TimeConfig::backfill()).horizon, None);
    /// assert_eq!(DedupConfig::for_time(&TimeConfig::stream()).horizon, Some(86_400_000));
    /// ```
    pub fn for_time(time: &TimeConfig) -> DedupConfig {
        DedupConfig {
            horizon: time.horizon,
            ..DedupConfig::default()
        }
    }
}

/// Why a copy is a duplicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DuplicateReason {
    /// Another copy with the same event id was kept.
    EventId,
    /// Another conversion of the same user (or device) with the same order
    /// id was kept.
    OrderId,
}

impl DuplicateReason {
    /// The stable code written by sinks: `event_id` or `order_id`.
    pub fn code(self) -> &'static str {
        match self {
            DuplicateReason::EventId => "event_id",
            DuplicateReason::OrderId => "order_id",
        }
    }
}

/// One duplicate copy, and the kept copy it duplicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Duplicate {
    /// Event time of the duplicate copy.
    pub ts: Millis,
    /// Its kind.
    pub kind: EventKind,
    /// Its event id.
    pub event_id: EventId,
    /// Why it is a duplicate.
    pub reason: DuplicateReason,
    /// Event id of the kept copy (the anchor); the duplicate's own id for
    /// [`DuplicateReason::EventId`].
    pub kept: EventId,
    /// Event time of the kept copy.
    pub kept_ts: Millis,
    /// The duplicate's user.
    pub user_id: Option<Id>,
    /// The duplicate's device.
    pub device_id: Option<Id>,
    /// The duplicate's campaign (absent on conversions).
    pub campaign_id: Option<Id>,
    /// The duplicate's order id (conversions).
    pub order_id: Option<Id>,
    /// Media cost the duplicate would have billed again, in micros.
    pub cost_micros: Micros,
    /// Revenue the duplicate would have counted again, in micros.
    pub revenue_micros: Micros,
}

impl Duplicate {
    /// `copy` as a duplicate of `kept` for `reason`.
    pub fn of(copy: &Event, kept: &Event, reason: DuplicateReason) -> Duplicate {
        Duplicate {
            ts: copy.ts,
            kind: copy.kind,
            event_id: copy.event_id,
            reason,
            kept: kept.event_id,
            kept_ts: kept.ts,
            user_id: copy.user_id,
            device_id: copy.device_id,
            campaign_id: copy.campaign_id,
            order_id: copy.order_id,
            cost_micros: copy.cost_micros,
            revenue_micros: copy.revenue_micros,
        }
    }
}

/// Duplicates as output rows: `ts`, `kind`, `event_id` and `kept` (32 hex
/// digits), `kept_ts`, `reason` (`event_id` / `order_id`), `user_id`,
/// `device_id`, `campaign_id`, `order_id` (16 hex digits, or null), `cost`,
/// `revenue`.
///
/// ```
/// use adflow::event::{Event, EventId, EventKind};
/// use adflow::sinks::{OutputRecord, Value};
/// use adflow_operators::dedup::{Duplicate, DuplicateReason};
/// # use adflow::event::{AgentClass, Country, DeviceType};
/// # let event = Event { ts: 1_000, kind: EventKind::Click, event_id: EventId(0xab),
/// #     user_id: None, device_id: None, campaign_id: None, ad_id: None, publisher_id: None,
/// #     ip: None, user_agent: None, agent: AgentClass::Missing, country: Country::UNKNOWN,
/// #     device_type: DeviceType::Unknown, cost_micros: 250_000, revenue_micros: 0,
/// #     conversion_type: None, order_id: None };
/// let duplicate = Duplicate::of(&event, &event, DuplicateReason::EventId);
/// let values = duplicate.values();
/// assert_eq!(values.len(), Duplicate::columns().len());
/// assert_eq!(values[2], Value::Text(format!("{:032x}", 0xab)));
/// assert_eq!(values[5], Value::Text("event_id".into()));
/// assert_eq!(values[10], Value::Money(250_000));
/// ```
impl OutputRecord for Duplicate {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("ts", ColumnType::Time),
            Column::new("kind", ColumnType::Text),
            Column::new("event_id", ColumnType::Text),
            Column::new("kept", ColumnType::Text),
            Column::new("kept_ts", ColumnType::Time),
            Column::new("reason", ColumnType::Text),
            Column::new("user_id", ColumnType::Text),
            Column::new("device_id", ColumnType::Text),
            Column::new("campaign_id", ColumnType::Text),
            Column::new("order_id", ColumnType::Text),
            Column::new("cost", ColumnType::Money),
            Column::new("revenue", ColumnType::Money),
        ]
    }

    fn values(&self) -> Vec<Value> {
        vec![
            Value::Time(self.ts),
            Value::Text(self.kind.as_str().to_owned()),
            Value::from(self.event_id),
            Value::from(self.kept),
            Value::Time(self.kept_ts),
            Value::Text(self.reason.code().to_owned()),
            Value::from(self.user_id),
            Value::from(self.device_id),
            Value::named(self.campaign_id),
            Value::from(self.order_id),
            Value::Money(self.cost_micros),
            Value::Money(self.revenue_micros),
        ]
    }

    /// Copies of one event id share a key; identical copies make a multiplicity above one.
    fn key_columns() -> usize {
        3
    }
}

/// The two outputs of deduplication.
pub struct Deduplicated<'scope> {
    /// The kept copies: one per event id and window, and one conversion per
    /// (user, order id) and window.
    pub unique: VecCollection<'scope, Time, Event>,
    /// One record per duplicate copy (with its multiplicity).
    pub duplicates: VecCollection<'scope, Time, Duplicate>,
}

/// Live counters of what deduplication retains, summed over the workers of
/// this process and both steps (event ids and order keys).
///
/// Clones share the counters. Pass one to
/// [`DedupExt::dedup_by_event_id_core`] to watch state stay bounded on an
/// endless stream (a metrics endpoint, a test).
#[derive(Clone, Debug, Default)]
pub struct DedupGauge {
    cells: Arc<GaugeCells>,
}

#[derive(Debug, Default)]
struct GaugeCells {
    keys: AtomicUsize,
    copies: AtomicUsize,
    peak_keys: AtomicUsize,
    peak_copies: AtomicUsize,
}

impl DedupGauge {
    /// Keys (event ids, order keys) currently remembered.
    pub fn keys(&self) -> usize {
        self.cells.keys.load(Ordering::Relaxed)
    }

    /// Distinct copies currently remembered.
    pub fn copies(&self) -> usize {
        self.cells.copies.load(Ordering::Relaxed)
    }

    /// The most keys remembered at once so far.
    pub fn peak_keys(&self) -> usize {
        self.cells.peak_keys.load(Ordering::Relaxed)
    }

    /// The most copies remembered at once so far.
    pub fn peak_copies(&self) -> usize {
        self.cells.peak_copies.load(Ordering::Relaxed)
    }

    /// Moves the counters from what a worker last reported to what it holds now.
    fn report(&self, before: (usize, usize), now: (usize, usize)) {
        let cells = &self.cells;
        for (cell, peak, before, now) in [
            (&cells.keys, &cells.peak_keys, before.0, now.0),
            (&cells.copies, &cells.peak_copies, before.1, now.1),
        ] {
            let total = if now >= before {
                cell.fetch_add(now - before, Ordering::Relaxed) + (now - before)
            } else {
                cell.fetch_sub(before - now, Ordering::Relaxed)
                    .saturating_sub(before - now)
            };
            peak.fetch_max(total, Ordering::Relaxed);
        }
    }
}

/// Deduplication of an event collection.
///
/// ```
/// use adflow::event::{EventId, EventRecord};
/// use adflow::parsing::EventValidator;
/// use adflow::pipeline::Time;
/// use adflow_operators::dedup::{DedupConfig, DedupExt, DuplicateReason};
/// use differential_dataflow::input::Input;
/// use std::sync::{Arc, Mutex};
///
/// let record = |id: &str, kind: &str, ts: i64, order: &str| {
///     let record = EventRecord {
///         event_id: id.into(), kind: kind.into(), ts, user_id: "u1".into(),
///         campaign_id: if kind == "click" { "c1".into() } else { String::new() },
///         ad_id: if kind == "click" { "a1".into() } else { String::new() },
///         order_id: order.into(), revenue_micros: 5_000_000, ..EventRecord::default()
///     };
///     EventValidator::default().validate_record(&record).unwrap()
/// };
/// const HOUR: i64 = 3_600_000;
/// let t = 1_793_527_200_000;
/// let click = record("e1", "click", t, "");
/// let resent = record("e1", "click", t + 60_000, "");
/// let next_day = record("e1", "click", t + 25 * HOUR, "");
/// let order = record("e2", "conversion", t + HOUR, "o1");
/// let reorder = record("e3", "conversion", t + 2 * HOUR, "o1");
///
/// let unique = Arc::new(Mutex::new(Vec::new()));
/// let duplicates = Arc::new(Mutex::new(Vec::new()));
/// let (unique_sink, duplicate_sink) = (Arc::clone(&unique), Arc::clone(&duplicates));
/// timely::execute_directly(move |worker| {
///     let mut input = worker.dataflow::<Time, _, _>(|scope| {
///         let (input, events) = scope.new_collection();
///         let deduplicated = events.dedup_by_event_id(&DedupConfig::default());
///         let sink = Arc::clone(&unique_sink);
///         deduplicated.unique.inspect(move |(e, _, diff)| sink.lock().unwrap().push((*e, *diff)));
///         let sink = Arc::clone(&duplicate_sink);
///         deduplicated.duplicates.inspect(move |(d, _, diff)| sink.lock().unwrap().push((*d, *diff)));
///         input
///     });
///     for event in [click, resent, next_day, order, reorder] {
///         input.insert(event);
///     }
/// });
///
/// let mut unique = unique.lock().unwrap().clone();
/// unique.sort();
/// // The first click, the click 25 hours later (outside the window), the first order.
/// assert_eq!(unique, vec![(click, 1), (order, 1), (next_day, 1)]);
/// let duplicates = duplicates.lock().unwrap();
/// assert_eq!(duplicates.len(), 2);
/// let by_id = duplicates.iter().find(|(d, _)| d.reason == DuplicateReason::EventId).unwrap();
/// assert_eq!((by_id.0.ts, by_id.0.kept_ts, by_id.1), (t + 60_000, t, 1));
/// let by_order = duplicates.iter().find(|(d, _)| d.reason == DuplicateReason::OrderId).unwrap();
/// assert_eq!((by_order.0.event_id, by_order.0.kept), (EventId::of("e3"), EventId::of("e2")));
/// ```
pub trait DedupExt<'scope> {
    /// Deduplicates by event id, then conversions by (user, order id); the
    /// operators are named `Dedup: …`.
    fn dedup_by_event_id(self, config: &DedupConfig) -> Deduplicated<'scope>;

    /// As [`DedupExt::dedup_by_event_id`], with operators named `{name}: …`.
    fn dedup_by_event_id_named(self, name: &str, config: &DedupConfig) -> Deduplicated<'scope>;

    /// As [`DedupExt::dedup_by_event_id_named`], reporting the state it
    /// retains to `gauge`.
    fn dedup_by_event_id_core(
        self,
        name: &str,
        config: &DedupConfig,
        gauge: &DedupGauge,
    ) -> Deduplicated<'scope>;
}

impl<'scope> DedupExt<'scope> for VecCollection<'scope, Time, Event> {
    fn dedup_by_event_id(self, config: &DedupConfig) -> Deduplicated<'scope> {
        self.dedup_by_event_id_named("Dedup", config)
    }

    fn dedup_by_event_id_named(self, name: &str, config: &DedupConfig) -> Deduplicated<'scope> {
        build(self, name, config, None)
    }

    fn dedup_by_event_id_core(
        self,
        name: &str,
        config: &DedupConfig,
        gauge: &DedupGauge,
    ) -> Deduplicated<'scope> {
        build(self, name, config, Some(gauge.clone()))
    }
}

/// Whether step 2 (by order id) considers this kept event.
fn has_order(event: &Event) -> bool {
    event.kind == EventKind::Conversion && event.order_id.is_some()
}

/// The step-2 key: the user, else the device, and the order id. The device
/// sits in its own slot so a user hash and a device hash never collide.
fn order_key(event: &Event) -> (Option<Id>, Option<Id>, Option<Id>) {
    let device = if event.user_id.is_none() {
        event.device_id
    } else {
        None
    };
    (event.user_id, device, event.order_id)
}

fn id_of(event: &Event) -> EventId {
    event.event_id
}

fn build<'scope>(
    events: VecCollection<'scope, Time, Event>,
    name: &str,
    config: &DedupConfig,
    gauge: Option<DedupGauge>,
) -> Deduplicated<'scope> {
    let by_id = dedup_stage(
        events,
        &format!("{name}: by event id"),
        config,
        DuplicateReason::EventId,
        id_of,
        has_order,
        gauge.clone(),
    );
    let by_order = dedup_stage(
        by_id.diverted,
        &format!("{name}: by order id"),
        config,
        DuplicateReason::OrderId,
        order_key,
        |_| false,
        gauge,
    );
    Deduplicated {
        unique: by_id.kept.concat(by_order.kept),
        duplicates: by_id.duplicates.concat(by_order.duplicates),
    }
}
