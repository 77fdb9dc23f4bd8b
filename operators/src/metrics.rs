//! The metrics family (issue 4, item 3): per (campaign, ad, hour) with the
//! dimensions country and device type — impressions, clicks, valid and
//! invalid clicks, conversions, revenue and billing cost — rolled up
//! incrementally to days and months, with CTR, CVR, CPC, CPM, CPA and ROAS
//! derived at the edge ([`MetricsRow`]).
//!
//! # Inputs
//!
//! [`CampaignMetricsExt::campaign_metrics`] takes three collections:
//!
//! - `events`, deduplicated. Impressions and clicks are counted in the hour
//!   of their event time; conversions and page views are ignored here
//!   (conversions arrive credited, through the third input).
//! - `invalid` ([`Invalid`]): the events flagged by the fraud rules, by
//!   [`EventKey`] (id and event time), as a set (one present with
//!   multiplicity ≥ 1 is invalid). A flagged impression or click still
//!   counts in `impressions`/`clicks`, also counts in
//!   `invalid_impressions`/`invalid_clicks`, and is not billed: `cost` is the
//!   cost of valid impressions plus valid clicks. A verdict that arrives late
//!   moves the event from valid to invalid, and out of the cost, as a
//!   correction at the verdict's time. Verdicts apply to impressions and
//!   clicks only; excluding flagged touches from conversion credit is
//!   attribution's job. `None` says no verdict will ever come (a pipeline
//!   without fraud rules). Touches that
//!   [`Invalid::judged_on_arrival`] decides as they arrive are counted as
//!   judged at once: in the pipeline, with dedup on, the kinds that only
//!   context rules (which read the event alone) may flag, which is always
//!   impressions. Only the others are held by key
//!   for a verdict to find, which is the family's only per-event state:
//!   holding all 9.4M impressions of the 10M benchmark by id, and joining
//!   them with the verdicts, took about a sixth of the whole pipeline's
//!   operator time.
//! - `conversions`: [`AttributedConversion`] credits from the configured
//!   default attribution model (last touch), counted with their revenue in
//!   the hour of the *conversion* under the credited campaign and ad (`None`
//!   for an unattributed conversion). Credits are additive, so fractional
//!   credits of a multi-touch model work too.
//!
//! # Dataflow shape, and why
//!
//! Every input becomes *updates with an additive difference*: an event is
//! exploded into `(key, time, Counters)` where [`Counters`] holds every
//! counter at once and is the arrangement's difference type
//! (`Semigroup + Abelian + Multiply<isize>`). The arrangement thus sums all
//! metrics of a key as it consolidates — one trace entry per key, no
//! per-event state — and publishing a row is a `count` of that
//! arrangement: the accumulated `Counters` of each changed key become one
//! [`MetricsRow`]. Because dataflow time is totally ordered, the count is
//! differential's `count_total` (`CountTotal`) on the named arrangement: for
//! each changed key it reads the accumulation once and emits
//! `−old, +new`, with no output trace and no history replay. On adgen
//! traffic (500K events, about 1.6 events per hourly key) this was about
//! twice as fast as `reduce_abelian` with the same trivial body (0.83 s vs
//! 1.6 s of CPU for the whole family, hour ticks), and both are far cheaper
//! than `reduce_named` over the events, which would hold every event per key.
//!
//! ```text
//! events ─► touches ─┬─► judged on arrival: +counts, +cost (flagged: +invalid count, no cost) ─►┐
//!  (impressions,     └─► the others ─┬─► +counts, +cost ───────────────────────────────────────►┤
//!   clicks)                          └─► arrange by (event id, ts) ─┐                            │
//! invalid ─► distinct (threshold) ──────────────────────────────────┴─► join: +invalid, −cost ──►┤ concat
//! conversions ─► explode: +conversions, +revenue ──────────────────────────────────────────────►┤
//!                                                                                               ▼
//!                            arrange by (hour, campaign, ad, country, device), diff Counters
//!                                  ─► count_total ─► hourly rows
//! hourly rows ─► explode: +row × multiplicity, rebucketed to the day ─► arrange, count ─► daily
//! daily rows  ─► rebucketed to the month ─► arrange, count ─► monthly
//! ```
//!
//! Rollups read the *changes* of the finer rows, never the events: when an
//! hourly row changes from `a` to `b`, the day receives `b − a`. The only
//! per-event state is the arrangement of the touches not judged on arrival
//! by event key, which the join against late fraud verdicts needs (a
//! verdict may arrive after the event, so the event must be findable).
//!
//! # Bounded state (`MetricsConfig::horizon`)
//!
//! With `horizon: None` (a backfill) nothing is retired and every update is
//! kept. With `Some(h)`, let the *expiry* of a row be the end of its bucket
//! plus `h` (for an hour bucket `b`: `b + 1 h + h`). Then:
//!
//! - conversions are retired (see [`crate::retention`]) at the expiry of
//!   their hour, touches at or after it (from the trace of their
//!   arrangement by key, which holds no cancellation per touch; a touch's
//!   retraction past its hour's expiry only changes frozen rows), and so
//!   are invalid events, by their event time; the day (month) rollup's
//!   inputs at the day (month) expiry;
//! - each output is frozen at its row's expiry: updates at or after it
//!   (which can only be the retirements' retractions) are dropped.
//!
//! This is exact — the frozen outputs equal the unbounded ones — under this
//! contract, which the pipeline's horizon provides when the metrics horizon
//! is at least the pipeline's:
//!
//! 1. every update that concerns an event at time `ts` arrives at a dataflow
//!    time `≤ ts + h`: the event itself (the pipeline dead-letters events
//!    older than its horizon), its fraud verdict, and conversion credits for
//!    a conversion at `ts` (a late click moving a last-touch credit arrives
//!    by `click ts + h ≤ ts + h`). If fraud rules flag events later than
//!    the pipeline's horizon after their event time (a rule window `w`),
//!    set the metrics horizon to the pipeline horizon plus `w`;
//! 2. deletions happen within the horizon too.
//!
//! An update for hour `b` then arrives before `b + 1 h + h`, the hour's
//! expiry; every retirement retraction lands at or after the expiry of the
//! rows it touches (a verdict is retired at its event's hour's expiry),
//! and freezing drops exactly those. Day and month rollups
//! read the *frozen* hourly (daily) output, which only changes before the
//! hour's expiry `≤` the day's expiry, so their own retire/freeze pair at the
//! coarser expiry is exact by the same argument. State then holds about
//! `h + 1 h` of the touches held by key and of the verdicts, and the keys
//! of the live hours, days and months.
//!
//! ```
//! use adflow::prelude::*;
//! use adflow_operators::fraud::EventKey;
//! use adflow_operators::metrics::{
//!     AttributedConversion, CampaignMetricsExt, Granularity, Invalid, MetricsConfig, MetricsRow,
//! };
//! use differential_dataflow::input::Input;
//! use std::sync::{Arc, Mutex};
//!
//! fn event(line: &str) -> Event {
//!     adflow::parsing::json::parse_json(line.as_bytes())
//!         .and_then(|fields| adflow::parsing::EventValidator::default().validate(&fields))
//!         .unwrap()
//! }
//! let impression = event(r#"{"event_id":"i1","kind":"impression","ts":"2026-11-01T10:00:00Z","user_id":"u","campaign_id":"c","ad_id":"a","country":"DE","cost":0.002}"#);
//! let click = event(r#"{"event_id":"k1","kind":"click","ts":"2026-11-01T10:00:05Z","user_id":"u","campaign_id":"c","ad_id":"a","country":"DE","cost":0.5}"#);
//! let fraud = event(r#"{"event_id":"k2","kind":"click","ts":"2026-11-01T10:00:09Z","user_id":"u","campaign_id":"c","ad_id":"a","country":"DE","cost":0.5}"#);
//! let credit = AttributedConversion {
//!     conversion: EventId::of("v1"), ts: click.ts + 60_000,
//!     campaign_id: click.campaign_id, ad_id: click.ad_id,
//!     country: click.country, device_type: click.device_type,
//!     conversions_micros: 1_000_000, revenue_micros: 20_000_000,
//! };
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&seen);
//! timely::execute_directly(move |worker| {
//!     let (mut events, mut invalid, mut conversions) = worker.dataflow::<Time, _, _>(|scope| {
//!         let (events_in, events) = scope.new_collection::<Event, isize>();
//!         let (invalid_in, invalid) = scope.new_collection::<EventKey, isize>();
//!         let (conversions_in, conversions) = scope.new_collection::<AttributedConversion, isize>();
//!         let metrics = events.campaign_metrics(Some(Invalid::events(invalid)), conversions, &MetricsConfig::default());
//!         let sink = Arc::clone(&sink);
//!         metrics.hourly
//!             .concat(metrics.monthly)
//!             .inspect(move |(row, _, diff)| sink.lock().unwrap().push((*row, *diff)));
//!         (events_in, invalid_in, conversions_in)
//!     });
//!     events.insert(impression);
//!     events.insert(click);
//!     events.insert(fraud);
//!     invalid.insert((fraud.event_id, fraud.ts));
//!     conversions.insert(credit);
//! });
//! let seen = seen.lock().unwrap();
//! assert_eq!(seen.len(), 2); // one hourly row, one monthly row
//! for (row, diff) in seen.iter() {
//!     assert_eq!(*diff, 1);
//!     assert_eq!((row.impressions, row.clicks, row.valid_clicks, row.invalid_clicks), (1, 2, 1, 1));
//!     assert_eq!(row.cost_micros, 2_000 + 500_000); // the flagged click is not billed
//!     assert_eq!((row.conversions_micros, row.revenue_micros), (1_000_000, 20_000_000));
//!     assert_eq!((row.cvr(), row.cpc()), (Some(1.0), Some(0.502)));
//! }
//! assert_eq!(seen[0].0.granularity, Granularity::Hour);
//! assert_eq!(seen[1].0.granularity, Granularity::Month);
//! ```

use differential_dataflow::collection::{AsCollection, VecCollection};
use differential_dataflow::difference::Semigroup;
use differential_dataflow::operators::CountTotal;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::core::ToStream;

use adflow::event::{Country, DeviceType, Event, EventId, EventKind, Id};
use adflow::money::Micros;
use adflow::pipeline::Time;
use adflow::timestamp::Millis;

use crate::attribution::{Credit, Unattributed, CONVERSION_MICROS};
use crate::fraud::{event_key, flagged_set, EventKey};
use crate::pre_aggregate::PreAggregateExt;
use crate::retention::{RetentionExt, RetireArrangedExt};

mod counters;
mod row;

pub use counters::Counters;
pub use row::{Granularity, MetricsKey, MetricsRow};

/// How the metrics are maintained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsConfig {
    /// The latest an update can arrive after the event time it concerns
    /// (events, fraud verdicts, conversion credits, deletions); see the
    /// module documentation for the exact contract. `Some` retires state and
    /// freezes rows once their bucket ends plus this; `None` (a backfill)
    /// keeps everything.
    pub horizon: Option<Millis>,
    /// Whether the daily and monthly rollups are maintained (the default).
    /// Without them [`CampaignMetrics::daily`] and
    /// [`CampaignMetrics::monthly`] stay empty and cost nothing: their
    /// arrangements and counts were about a quarter of the family's operator
    /// time on the 10M engines subset.
    #[serde(default = "rollups_by_default")]
    pub rollups: bool,
}

fn rollups_by_default() -> bool {
    true
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            horizon: None,
            rollups: rollups_by_default(),
        }
    }
}

/// A conversion's credit to one campaign and ad, as the default attribution
/// model (last touch) assigns it; the wiring maps attribution credits into
/// it. Counted in the hour of the conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttributedConversion {
    /// The conversion event.
    pub conversion: EventId,
    /// Event time of the conversion.
    pub ts: Millis,
    /// Credited campaign; `None` for an unattributed conversion (still
    /// counted, under campaign `None`).
    pub campaign_id: Option<Id>,
    /// Credited ad; `None` when unattributed.
    pub ad_id: Option<Id>,
    /// Country dimension (of the conversion).
    pub country: Country,
    /// Device dimension (of the conversion).
    pub device_type: DeviceType,
    /// Share of the conversion credited, in millionths (1_000_000 is one
    /// whole conversion, as last touch credits).
    pub conversions_micros: i64,
    /// Revenue credited.
    pub revenue_micros: Micros,
}

impl AttributedConversion {
    /// A credit of the default model, in the conversion's country and device.
    pub fn credited(credit: &Credit) -> AttributedConversion {
        AttributedConversion {
            conversion: credit.conversion,
            ts: credit.conversion_ts,
            campaign_id: Some(credit.campaign_id),
            ad_id: Some(credit.ad_id),
            country: credit.country,
            device_type: credit.device_type,
            conversions_micros: credit.conversion_credit,
            revenue_micros: credit.credit_micros,
        }
    }

    /// A whole conversion that no touch earned, under no campaign, in its
    /// country and device.
    pub fn unattributed(lost: &Unattributed) -> AttributedConversion {
        AttributedConversion {
            conversion: lost.conversion,
            ts: lost.conversion_ts,
            campaign_id: None,
            ad_id: None,
            country: lost.country,
            device_type: lost.device_type,
            conversions_micros: CONVERSION_MICROS,
            revenue_micros: lost.revenue_micros,
        }
    }
}

/// Which touches are invalid: the fraud input of
/// [`CampaignMetricsExt::campaign_metrics`] (module docs, "Inputs").
pub struct Invalid<'scope> {
    flagged: VecCollection<'scope, Time, EventKey>,
    on_arrival: Option<ArrivalJudge>,
}

/// Decides a touch's validity as it arrives, if it can be decided then.
type ArrivalJudge = Box<dyn Fn(&Event) -> Option<bool>>;

impl<'scope> Invalid<'scope> {
    /// Flagged events, by [`EventKey`] (id and event time), as a set. A
    /// verdict may arrive before or after its event, so every touch is
    /// held by its key for one to find it.
    pub fn events(flagged: VecCollection<'scope, Time, EventKey>) -> Invalid<'scope> {
        Invalid {
            flagged,
            on_arrival: None,
        }
    }

    /// As [`Invalid::events`], except for the touches `judge` decides as they
    /// arrive: `Some(flagged)` says the touch is invalid or valid for good,
    /// and it is counted so at once, neither held by key nor looked up in
    /// the flagged events (which must agree, or leave it out); `None` leaves
    /// it to them. A fraud
    /// configuration's [`FraudConfig::arrival_judge`](crate::fraud::FraudConfig::arrival_judge)
    /// decides impressions (only context rules flag them), which spares
    /// holding most of the traffic by key.
    pub fn judged_on_arrival(
        self,
        judge: impl Fn(&Event) -> Option<bool> + 'static,
    ) -> Invalid<'scope> {
        Invalid {
            on_arrival: Some(Box::new(judge)),
            ..self
        }
    }
}

/// The three maintained outputs; each is a changelog of [`MetricsRow`]s
/// with `isize` multiplicities (one row per key at any time).
pub struct CampaignMetrics<'scope> {
    /// Rows per hour.
    pub hourly: VecCollection<'scope, Time, MetricsRow>,
    /// Rows per day, rolled up from the hourly rows.
    pub daily: VecCollection<'scope, Time, MetricsRow>,
    /// Rows per calendar month, rolled up from the daily rows.
    pub monthly: VecCollection<'scope, Time, MetricsRow>,
}

/// Campaign metrics on a collection of deduplicated events. See the module
/// documentation for inputs, semantics and bounded state.
pub trait CampaignMetricsExt<'scope> {
    /// Maintains hourly, daily and monthly metrics; operators are named
    /// `Metrics: …`.
    fn campaign_metrics(
        self,
        invalid: Option<Invalid<'scope>>,
        conversions: VecCollection<'scope, Time, AttributedConversion>,
        config: &MetricsConfig,
    ) -> CampaignMetrics<'scope>;

    /// As [`CampaignMetricsExt::campaign_metrics`], with operators named
    /// `{name}: …`.
    fn campaign_metrics_named(
        self,
        name: &str,
        invalid: Option<Invalid<'scope>>,
        conversions: VecCollection<'scope, Time, AttributedConversion>,
        config: &MetricsConfig,
    ) -> CampaignMetrics<'scope>;
}

/// An impression or click, reduced to what metrics need of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Touch {
    /// Hourly key.
    key: MetricsKey,
    /// Impression or click.
    click: bool,
    /// Media cost.
    cost_micros: Micros,
}

impl Touch {
    fn of(event: &Event) -> Option<(EventKey, Touch)> {
        let click = match event.kind {
            EventKind::Impression => false,
            EventKind::Click => true,
            EventKind::Conversion | EventKind::PageView => return None,
        };
        let key = MetricsKey {
            bucket: Granularity::Hour.bucket(event.ts),
            campaign_id: event.campaign_id,
            ad_id: event.ad_id,
            country: event.country,
            device_type: event.device_type,
        };
        Some((
            event_key(event),
            Touch {
                key,
                click,
                cost_micros: event.cost_micros,
            },
        ))
    }

    /// What the touch adds: one impression or click, and its cost.
    fn counters(&self) -> Counters {
        Counters {
            impressions: i64::from(!self.click),
            clicks: i64::from(self.click),
            cost_micros: self.cost_micros,
            ..Counters::default()
        }
    }

    /// What the touch adds, judged as it arrives: invalid, it is also one
    /// invalid event, and not billed.
    fn judged_counters(&self, invalid: bool) -> Counters {
        let mut counters = self.counters();
        if invalid {
            counters.plus_equals(&self.invalid_counters());
        }
        counters
    }

    /// What a verdict on the touch changes: one invalid event, cost not billed.
    fn invalid_counters(&self) -> Counters {
        Counters {
            invalid_impressions: i64::from(!self.click),
            invalid_clicks: i64::from(self.click),
            cost_micros: self.cost_micros.wrapping_neg(),
            ..Counters::default()
        }
    }
}

impl AttributedConversion {
    fn hourly_key(&self) -> MetricsKey {
        MetricsKey {
            bucket: Granularity::Hour.bucket(self.ts),
            campaign_id: self.campaign_id,
            ad_id: self.ad_id,
            country: self.country,
            device_type: self.device_type,
        }
    }

    fn counters(&self) -> Counters {
        Counters {
            conversions_micros: self.conversions_micros,
            revenue_micros: self.revenue_micros,
            ..Counters::default()
        }
    }
}

/// The dataflow time at which rows of `granularity` at `bucket` expire:
/// bucket end plus the horizon.
fn expiry(granularity: Granularity, bucket: Millis, horizon: Millis) -> Time {
    let at = granularity.bucket_end(bucket).saturating_add(horizon);
    Time::try_from(at.max(0)).unwrap_or(Time::MAX)
}

/// What the touches add to their hourly rows, with the invalid ones (found
/// by key, whichever of touch and verdict arrives last) moved to the invalid
/// counts and out of the cost.
fn touch_deltas_with_verdicts<'scope>(
    touches: VecCollection<'scope, Time, (EventKey, Touch)>,
    mut invalid: VecCollection<'scope, Time, EventKey>,
    name: &str,
    horizon: Option<Millis>,
) -> VecCollection<'scope, Time, MetricsKey, Counters> {
    let hour = Granularity::Hour;
    let touches_by_key = format!("{name}: arrange touches by key");
    // Impressions and clicks, all of them, with their full cost.
    let (counted, touches) = match horizon {
        // Retired from the arrangement's own trace, at or after their
        // hour's expiry: what a touch changes from then on is in frozen
        // rows, and most of the traffic is not also held as a
        // cancellation. The counts follow the arrangement, so they see
        // the retirement too.
        Some(horizon) => {
            let touches = touches
                .arrange_by_key_retiring_named(&touches_by_key, move |_, touch: &Touch| {
                    expiry(hour, touch.key.bucket, horizon)
                });
            let counted = touches
                .clone()
                .flat_map_ref(|_, touch| Some((touch.key, touch.counters())));
            (counted, touches)
        }
        None => (
            touches
                .clone()
                .map(|(_, touch)| (touch.key, touch.counters())),
            touches.arrange_by_key_named(&touches_by_key),
        ),
    };
    let counted = counted.explode(Some);
    if let Some(horizon) = horizon {
        // At its event's hour's expiry, like the touch it flags: what it
        // changes from then on is in frozen rows.
        invalid = invalid.retire_after(&format!("{name}: invalid events"), move |(_, ts)| {
            expiry(hour, hour.bucket(*ts), horizon)
        });
    }

    // The invalid ones, found by key whichever of touch and verdict
    // arrives last: move them to the invalid counts and out of the cost.
    let invalid = flagged_set(invalid, &format!("{name}: invalid events"));
    let flagged = touches
        .join_core(invalid, |_key, touch: &Touch, _| {
            Some((touch.key, touch.invalid_counters()))
        })
        .explode(|(key, counters)| Some((key, counters)));
    counted.concat(flagged)
}

/// Sums `deltas` per key into rows of `granularity`: the arrangement
/// accumulates the `Counters` differences, `count_total` publishes each
/// changed key's total (and nothing for a key whose total is zero).
fn aggregate<'scope>(
    deltas: VecCollection<'scope, Time, MetricsKey, Counters>,
    name: &str,
    granularity: Granularity,
) -> VecCollection<'scope, Time, MetricsRow> {
    let name = format!("{name}: {}", granularity.as_str());
    deltas
        .pre_aggregate_named(&format!("{name} pre-aggregate"))
        .arrange_by_self_named(&format!("{name} arrange"))
        .count_total_core::<isize>()
        .map(move |(key, counters)| MetricsRow::new(granularity, key, counters))
}

/// The changes of finer `rows` as deltas to the coarser `granularity`.
fn rollup<'scope>(
    rows: VecCollection<'scope, Time, MetricsRow>,
    granularity: Granularity,
) -> VecCollection<'scope, Time, MetricsKey, Counters> {
    rows.explode(move |row| {
        let mut key = row.key();
        key.bucket = granularity.bucket(row.bucket);
        Some((key, row.counters()))
    })
}

/// Retires `deltas` at the expiry of their bucket, if there is a horizon.
fn retire_deltas<'scope>(
    deltas: VecCollection<'scope, Time, MetricsKey, Counters>,
    name: &str,
    granularity: Granularity,
    horizon: Option<Millis>,
) -> VecCollection<'scope, Time, MetricsKey, Counters> {
    match horizon {
        Some(horizon) => deltas.retire_after(
            &format!("{name}: {} deltas", granularity.as_str()),
            move |key: &MetricsKey| expiry(granularity, key.bucket, horizon),
        ),
        None => deltas,
    }
}

/// Freezes `rows` of `granularity` at their expiry, if there is a horizon.
fn freeze_rows<'scope>(
    rows: VecCollection<'scope, Time, MetricsRow>,
    name: &str,
    granularity: Granularity,
    horizon: Option<Millis>,
) -> VecCollection<'scope, Time, MetricsRow> {
    match horizon {
        Some(horizon) => rows.freeze_after(
            &format!("{name}: {} rows", granularity.as_str()),
            move |row: &MetricsRow| expiry(granularity, row.bucket, horizon),
        ),
        None => rows,
    }
}

impl<'scope> CampaignMetricsExt<'scope> for VecCollection<'scope, Time, Event> {
    fn campaign_metrics(
        self,
        invalid: Option<Invalid<'scope>>,
        conversions: VecCollection<'scope, Time, AttributedConversion>,
        config: &MetricsConfig,
    ) -> CampaignMetrics<'scope> {
        self.campaign_metrics_named("Metrics", invalid, conversions, config)
    }

    fn campaign_metrics_named(
        self,
        name: &str,
        invalid: Option<Invalid<'scope>>,
        conversions: VecCollection<'scope, Time, AttributedConversion>,
        config: &MetricsConfig,
    ) -> CampaignMetrics<'scope> {
        let horizon = config.horizon;
        let hour = Granularity::Hour;

        let (judge, flagged): (ArrivalJudge, _) = match invalid {
            // No verdict will ever come: every touch is valid as it arrives.
            None => (Box::new(|_: &Event| Some(false)), None),
            Some(Invalid {
                flagged,
                on_arrival,
            }) => (
                on_arrival.unwrap_or_else(|| Box::new(|_: &Event| None)),
                Some(flagged),
            ),
        };
        // Each touch with its validity if it is known on arrival.
        let touches = self.flat_map(move |event| {
            let (key, touch) = Touch::of(&event)?;
            Some((key, touch, judge(&event)))
        });
        let mut conversions = conversions;
        if let Some(horizon) = horizon {
            conversions = conversions.retire_after(
                &format!("{name}: conversions"),
                move |credit: &AttributedConversion| expiry(hour, hour.bucket(credit.ts), horizon),
            );
        }
        // Touches judged on arrival are counted once, as judged, with no
        // per-touch state: retired as deltas.
        let judged = retire_deltas(
            touches.clone().explode(|(_, touch, on_arrival)| {
                on_arrival.map(|invalid| (touch.key, touch.judged_counters(invalid)))
            }),
            name,
            hour,
            horizon,
        );
        let touched = match flagged {
            Some(flagged) => {
                let pending = touches.flat_map(|(key, touch, on_arrival)| {
                    on_arrival.is_none().then_some((key, touch))
                });
                touch_deltas_with_verdicts(pending, flagged, name, horizon).concat(judged)
            }
            None => judged,
        };

        let credited = conversions.explode(|credit| Some((credit.hourly_key(), credit.counters())));

        let hourly = aggregate(touched.concat(credited), name, hour);
        let hourly = freeze_rows(hourly, name, hour, horizon);

        if !config.rollups {
            let scope = hourly.scope();
            let empty = || {
                Vec::<(MetricsRow, Time, isize)>::new()
                    .to_stream(scope)
                    .as_collection()
            };
            return CampaignMetrics {
                hourly,
                daily: empty(),
                monthly: empty(),
            };
        }

        let day = Granularity::Day;
        let daily_deltas = retire_deltas(rollup(hourly.clone(), day), name, day, horizon);
        let daily = freeze_rows(aggregate(daily_deltas, name, day), name, day, horizon);

        let month = Granularity::Month;
        let monthly_deltas = retire_deltas(rollup(daily.clone(), month), name, month, horizon);
        let monthly = freeze_rows(aggregate(monthly_deltas, name, month), name, month, horizon);

        CampaignMetrics {
            hourly,
            daily,
            monthly,
        }
    }
}
