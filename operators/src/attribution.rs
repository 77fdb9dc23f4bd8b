//! Multi-touch attribution: which impressions and clicks earn credit for a
//! conversion, and how much.
//!
//! # What counts as a touch
//!
//! A conversion and a touch meet when they have the same [`Identity`]: the
//! user id if the event has one, otherwise the device id. Of that person's
//! valid (not flagged) impressions and clicks, a touch is *in window* when
//! `touch.ts <= conversion.ts` and `conversion.ts - touch.ts <= window`
//! (both bounds inclusive), the window being the click window for clicks
//! and the view window for impressions. Clicks outrank views, as in GA4 and
//! Meta: if a conversion has any click in its click window, only its clicks
//! are its touches; otherwise its impressions in the view window are.
//!
//! The touches form a path ordered by `(ts, event_id)`. Inside the dataflow
//! event ids are 128-bit hashes ([`EventId`](adflow::event::EventId)), so
//! "event id order" is the order of the hashes, not of the tracker's
//! strings: deterministic, the same on every worker and run, but not
//! alphabetical.
//!
//! # How credit is split
//!
//! Each [`Model`] weighs the path; [`split_credit`] divides the revenue in
//! micros by the largest-remainder rule, so a conversion's credits under a
//! model sum **exactly** to its revenue. The conversion itself is split the
//! same way in micro-conversions ([`CONVERSION_MICROS`] = one conversion),
//! so attributed conversion counts add up exactly too.
//!
//! # Outputs
//!
//! - [`Attribution::credits`]: one [`Credit`] per (conversion, model, touch
//!   with a non-zero share);
//! - [`Attribution::unattributed`]: conversions with no qualifying touch
//!   (their revenue is credited to no campaign);
//! - [`Attribution::by_campaign_day`]: attributed conversions and revenue per
//!   (campaign, ad, model, UTC day of the conversion). ROAS needs cost, which
//!   the metrics family owns: join the two and call [`roas`].
//!
//! # Fraud, late data and deletions
//!
//! Touches in the `invalid` collection (fraud verdicts, naming each event
//! by its [`EventKey`]: id and event time) are removed by an antijoin
//! before credit is split, so a verdict that arrives late moves credit to
//! the remaining touches as a correction; deleting an event retracts its
//! credit the same way. `invalid` is treated as a set (a verdict repeated
//! counts once); with a horizon it is retired once its touch's pairs are
//! gone, a window plus the horizon after the touch. The antijoin is
//! applied to the (conversion, touch) pairs in window rather than to every
//! touch: the same answer, with state and work only for the touches that
//! can earn credit.
//!
//! The input should be deduplicated events (`DedupExt`). With dedup off
//! (a window of zero) copies may reach it, and they count as metrics count
//! them: a conversion ([`Conversion`]: id, time, identity, revenue, country
//! and device) is credited once per copy, its credits and totals carrying
//! the copies' multiplicity, while a touch (`(ts, event id, kind, campaign,
//! ad)` for its identity) is on a path once however many copies it has.
//! Events that share an event id but differ in those fields are distinct
//! conversions or touches. Conversions without any identity are ignored
//! (the parser rejects them).
//!
//! # Bounded state
//!
//! With [`AttributionConfig::horizon`] `Some(h)` (streams), inputs are
//! retired and outputs frozen (see `docs/operators.md`):
//! - a touch is retired at `ts + window + h + 1` (its kind's window): only
//!   conversions at most `window` later can use it, and those are admitted
//!   no later than their own `ts + h`;
//! - a conversion is retired at `ts + h + 1`, and its credits and
//!   unattributed row are frozen from then on: every event that can still
//!   change them is admitted before;
//! - per (campaign, ad, model, day) totals are retired and frozen at
//!   `day end + h`, after the last conversion of the day is frozen.
//!
//! This is exact for events admitted within the horizon. Fraud verdicts and
//! deletions must arrive within it too: a verdict later than
//! `conversion ts + h` no longer moves that conversion's credit. Verdicts
//! are retired at their touch's `ts + max(click window, view window) + h +
//! 1`, when every conversion the touch could earn credit from is frozen
//! (a producer retiring them too, no earlier, is harmless).
//!
//! # Example
//!
//! ```
//! use adflow::event::{Event, EventId, EventKind};
//! use adflow_operators::attribution::{AttributionConfig, AttributionExt, Model};
//! use adflow_operators::fraud::EventKey;
//! use adflow_operators::testing::{id, START};
//! use differential_dataflow::input::Input;
//! use std::sync::{Arc, Mutex};
//!
//! fn event(n: u128, kind: EventKind, minute: i64) -> Event {
//!     let placed = kind != EventKind::Conversion;
//!     Event {
//!         ts: START + minute * 60_000,
//!         kind,
//!         event_id: EventId(n),
//!         user_id: Some(id(1)),
//!         device_id: None,
//!         campaign_id: placed.then(|| id(10 + n as u64)),
//!         ad_id: placed.then(|| id(20)),
//!         publisher_id: None,
//!         ip: None,
//!         user_agent: None,
//!         agent: adflow::event::AgentClass::Browser,
//!         country: adflow::event::Country::UNKNOWN,
//!         device_type: adflow::event::DeviceType::Unknown,
//!         cost_micros: 0,
//!         revenue_micros: if placed { 0 } else { 10_000_000 },
//!         conversion_type: None,
//!         order_id: None,
//!     }
//! }
//!
//! let credits = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&credits);
//! timely::execute_directly(move |worker| {
//!     let (mut events, mut invalid) = worker.dataflow::<u64, _, _>(|scope| {
//!         let (events_in, events) = scope.new_collection::<Event, isize>();
//!         let (invalid_in, invalid) = scope.new_collection::<EventKey, isize>();
//!         let config = AttributionConfig {
//!             models: vec![Model::LastTouch, Model::Linear],
//!             ..AttributionConfig::default()
//!         };
//!         let sink = Arc::clone(&sink);
//!         events.attribute(invalid, &config).credits.inspect(move |(credit, _, diff)| {
//!             sink.lock().unwrap().push((credit.model, credit.touch, credit.credit_micros, *diff));
//!         });
//!         (events_in, invalid_in)
//!     });
//!     events.insert(event(1, EventKind::Click, 0));
//!     events.insert(event(2, EventKind::Click, 5));
//!     events.insert(event(3, EventKind::Conversion, 9));
//!     invalid.insert((EventId(7), 0)); // flags nothing here
//! });
//! let mut credits = credits.lock().unwrap().clone();
//! credits.sort();
//! assert_eq!(credits, vec![
//!     (Model::LastTouch, EventId(2), 10_000_000, 1),
//!     (Model::Linear, EventId(1), 5_000_000, 1),
//!     (Model::Linear, EventId(2), 5_000_000, 1),
//! ]);
//! ```

use std::fmt;

use adflow::event::{Event, EventKind};
use adflow::pipeline::Time;
use adflow::timestamp::{day_start, Millis, DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
use differential_dataflow::collection::VecCollection;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use serde::{Deserialize, Serialize};

use crate::fraud::{flagged_set, EventKey};
use crate::retention::{RetentionExt, RetireArrangedExt};

mod first;
mod last;
mod linear;
mod position;
mod records;
mod split;
mod time_decay;

pub use records::{
    roas, CampaignDayAttribution, Conversion, Credit, Identity, StoredTouch, Touch, Unattributed,
    CONVERSION_MICROS,
};
pub use split::split_credit;

use records::Totals;

/// How a conversion's value is divided over its touches (path order is
/// `(ts, event_id)` ascending).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Model {
    /// Everything to the last touch.
    LastTouch,
    /// Everything to the first touch.
    FirstTouch,
    /// Equal shares.
    Linear,
    /// Weight `2^(-Δt / half_life)`, `Δt` from the touch to the conversion.
    TimeDecay {
        /// Time for a touch's weight to halve.
        half_life: Millis,
    },
    /// 40% first, 40% last, 20% shared by the touches in between; one touch
    /// gets 100%, two get 50/50.
    PositionBased,
}

impl Model {
    /// The default time-decay half-life: 7 days.
    pub const DEFAULT_HALF_LIFE: Millis = 7 * DAY_MS;

    /// The five models, time-decay with the default half-life.
    pub fn all() -> Vec<Model> {
        vec![
            Model::LastTouch,
            Model::FirstTouch,
            Model::Linear,
            Model::TimeDecay {
                half_life: Model::DEFAULT_HALF_LIFE,
            },
            Model::PositionBased,
        ]
    }

    /// A stable name for outputs: `last_touch`, `first_touch`, `linear`,
    /// `time_decay:7d` (the half-life in the largest whole unit), `position_based`.
    ///
    /// ```
    /// use adflow_operators::attribution::Model;
    /// assert_eq!(Model::TimeDecay { half_life: 36 * 3_600_000 }.name(), "time_decay:36h");
    /// ```
    pub fn name(&self) -> String {
        match self {
            Model::LastTouch => "last_touch".to_owned(),
            Model::FirstTouch => "first_touch".to_owned(),
            Model::Linear => "linear".to_owned(),
            Model::TimeDecay { half_life } => format!("time_decay:{}", duration_text(*half_life)),
            Model::PositionBased => "position_based".to_owned(),
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

fn duration_text(ms: Millis) -> String {
    let units = [
        (DAY_MS, "d"),
        (HOUR_MS, "h"),
        (MINUTE_MS, "m"),
        (SECOND_MS, "s"),
    ];
    units
        .iter()
        .find(|(unit, _)| ms != 0 && ms % unit == 0)
        .map_or_else(
            || format!("{ms}ms"),
            |(unit, suffix)| format!("{}{suffix}", ms / unit),
        )
}

/// What to attribute and how far back to look.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributionConfig {
    /// Models to run, all over the same touches (a repeated model runs once).
    pub models: Vec<Model>,
    /// Lookback for clicks (inclusive). Default 30 days.
    pub click_window: Millis,
    /// Lookback for impressions (inclusive). Default 1 day.
    pub view_window: Millis,
    /// The pipeline's horizon (`TimeConfig::horizon`): when set, state is
    /// bounded by retiring inputs and freezing outputs (module docs).
    pub horizon: Option<Millis>,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        AttributionConfig {
            models: Model::all(),
            click_window: 30 * DAY_MS,
            view_window: DAY_MS,
            horizon: None,
        }
    }
}

impl AttributionConfig {
    /// The models in order of first appearance, each once.
    pub fn distinct_models(&self) -> Vec<Model> {
        let mut models: Vec<Model> = Vec::with_capacity(self.models.len());
        for model in &self.models {
            if !models.contains(model) {
                models.push(*model);
            }
        }
        models
    }

    /// The lookback window of a touch kind: clicks use the click window,
    /// impressions the view window; other kinds are never touches.
    pub fn window(&self, kind: EventKind) -> Option<Millis> {
        match kind {
            EventKind::Click => Some(self.click_window),
            EventKind::Impression => Some(self.view_window),
            EventKind::Conversion | EventKind::PageView => None,
        }
    }

    /// Whether `touch` is in the window of a conversion at `conversion_ts`.
    pub fn in_window(&self, touch: &Touch, conversion_ts: Millis) -> bool {
        self.window(touch.kind).is_some_and(|window| {
            touch.ts <= conversion_ts && conversion_ts.saturating_sub(touch.ts) <= window
        })
    }
}

/// Touches arranged by identity: the shared input of
/// [`AttributionExt::attribute_arranged`]. Build it once with
/// [`AttributionExt::arrange_touches`] and attribute several model sets over
/// it.
pub type TouchesByIdentity<'scope> =
    Arranged<'scope, TraceAgent<ValSpine<Identity, StoredTouch, Time, isize>>>;

/// A shared arrangement of touches and the retention it was built with.
#[derive(Clone)]
pub struct Touches<'scope> {
    /// Every touch (flagged ones too: verdicts are applied per attribution),
    /// by identity.
    pub by_identity: TouchesByIdentity<'scope>,
    /// Clicks are kept this long (plus the horizon) when retiring.
    pub click_window: Millis,
    /// Impressions are kept this long (plus the horizon) when retiring.
    pub view_window: Millis,
    /// The horizon the touches are retired with; `None` keeps them all.
    pub horizon: Option<Millis>,
}

/// The outputs of one attribution.
pub struct Attribution<'scope> {
    /// Per conversion, model and credited touch.
    pub credits: VecCollection<'scope, Time, Credit>,
    /// Conversions without a qualifying touch.
    pub unattributed: VecCollection<'scope, Time, Unattributed>,
    /// Per (campaign, ad, model, conversion day).
    pub by_campaign_day: VecCollection<'scope, Time, CampaignDayAttribution>,
}

/// Attribution over a collection of deduplicated events.
pub trait AttributionExt<'scope> {
    /// Attributes conversions to touches not in `invalid` under every model
    /// of `config`. Operators are named `"Attribution: …"`.
    fn attribute(
        self,
        invalid: VecCollection<'scope, Time, EventKey>,
        config: &AttributionConfig,
    ) -> Attribution<'scope>;

    /// As [`AttributionExt::attribute`], naming the operators `"{name}: …"`.
    fn attribute_named(
        self,
        name: &str,
        invalid: VecCollection<'scope, Time, EventKey>,
        config: &AttributionConfig,
    ) -> Attribution<'scope>;

    /// The touches of these events arranged by identity, retired by
    /// `config`'s windows and horizon, for [`AttributionExt::attribute_arranged`].
    /// Build it with the longest windows of the model sets that share it.
    fn arrange_touches(self, name: &str, config: &AttributionConfig) -> Touches<'scope>;

    /// Attributes the conversions of these events to pre-arranged touches,
    /// excluding those in `invalid`, so several model sets share one
    /// arrangement.
    ///
    /// The horizon is the one `touches` were built with (`config.horizon`
    /// is not used), and when it is set the windows are clamped to the
    /// arrangement's: touches older than it keeps are gone.
    fn attribute_arranged(
        self,
        name: &str,
        touches: &Touches<'scope>,
        invalid: VecCollection<'scope, Time, EventKey>,
        config: &AttributionConfig,
    ) -> Attribution<'scope>;
}

/// The dataflow time of an instant, saturating at the ends.
fn at(ms: Millis) -> Time {
    Time::try_from(ms.max(0)).unwrap_or(Time::MAX)
}

/// One output of the per-conversion reduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Outcome {
    Credit(Credit),
    Unattributed(Unattributed),
}

impl<'scope> AttributionExt<'scope> for VecCollection<'scope, Time, Event> {
    fn attribute(
        self,
        invalid: VecCollection<'scope, Time, EventKey>,
        config: &AttributionConfig,
    ) -> Attribution<'scope> {
        self.attribute_named("Attribution", invalid, config)
    }

    fn attribute_named(
        self,
        name: &str,
        invalid: VecCollection<'scope, Time, EventKey>,
        config: &AttributionConfig,
    ) -> Attribution<'scope> {
        let touches = self.clone().arrange_touches(name, config);
        self.attribute_arranged(name, &touches, invalid, config)
    }

    fn arrange_touches(self, name: &str, config: &AttributionConfig) -> Touches<'scope> {
        let (click_window, view_window) = (config.click_window, config.view_window);
        let touches = self
            .flat_map(|event| Some((Identity::of(&event)?, StoredTouch::from(Touch::of(&event)?))));
        let name = format!("{name}: touches by identity");
        let by_identity = match config.horizon {
            // A touch past its window joins with no conversion, so it may
            // be retired late, from the trace, without a copy held for it.
            Some(horizon) => touches.arrange_by_key_retiring_named(&name, move |_, stored| {
                let touch = stored.touch();
                let window = if touch.kind == EventKind::Click {
                    click_window
                } else {
                    view_window
                };
                at(touch
                    .ts
                    .saturating_add(window)
                    .saturating_add(horizon)
                    .saturating_add(1))
            }),
            None => touches.arrange_by_key_named(&name),
        };
        Touches {
            by_identity,
            click_window,
            view_window,
            horizon: config.horizon,
        }
    }

    fn attribute_arranged(
        self,
        name: &str,
        touches: &Touches<'scope>,
        invalid: VecCollection<'scope, Time, EventKey>,
        config: &AttributionConfig,
    ) -> Attribution<'scope> {
        let horizon = touches.horizon;
        let mut windows = config.clone();
        if horizon.is_some() {
            windows.click_window = windows.click_window.min(touches.click_window);
            windows.view_window = windows.view_window.min(touches.view_window);
        }
        let models = config.distinct_models();

        let conversions = self.flat_map(|event| {
            let conversion = Conversion::of(&event)?;
            Some((conversion.identity, conversion))
        });
        let conversions = match horizon {
            Some(horizon) => conversions
                .retire_after(&format!("{name}: conversions"), move |(_, conversion)| {
                    at(conversion.ts.saturating_add(horizon).saturating_add(1))
                }),
            None => conversions,
        };
        // Each conversion with every touch in its window.
        let in_window = conversions
            .clone()
            .arrange_by_key_named(&format!("{name}: conversions by identity"))
            .join_core(
                touches.by_identity.clone(),
                move |_identity, conversion, stored| {
                    let touch = stored.touch();
                    windows
                        .in_window(&touch, conversion.ts)
                        .then_some(((touch.event_id, touch.ts), (*conversion, touch)))
                },
            );
        // Fraud exclusion: an antijoin of those touches with the verdicts,
        // written out so every operator is named. It runs on the touches in
        // some conversion's window rather than on all touches, which keeps
        // its state (and cost) to the pairs that matter; a late verdict
        // retracts the pair and the reduce below moves the credit.
        // A verdict outlives the pairs of its touch: those go with their
        // conversion, at most a window after the touch plus the horizon.
        let invalid = match horizon {
            Some(horizon) => {
                let longest = touches.click_window.max(touches.view_window);
                invalid.retire_after(&format!("{name}: verdicts"), move |(_, ts)| {
                    at(ts
                        .saturating_add(longest)
                        .saturating_add(horizon)
                        .saturating_add(1))
                })
            }
            None => invalid,
        };
        let verdicts = flagged_set(invalid, &format!("{name}: verdicts"));
        let flagged = in_window
            .clone()
            .arrange_by_key_named(&format!("{name}: touches in window by event key"))
            .join_core(verdicts, |_key, pair, &()| Some(*pair));
        let valid = in_window
            .map(|(_, pair)| pair)
            .concat(flagged.negate())
            .map(|(conversion, touch)| (conversion, Some(touch)));
        // Plus one `None` marker per conversion, so that conversions without
        // touches are seen too.
        let markers = conversions.map(|(_, conversion)| (conversion, None::<Touch>));
        let outcomes = valid
            .concat(markers)
            .reduce_named(
                &format!("{name}: credit"),
                move |conversion, inputs, output| {
                    // Inputs are sorted: the marker (`None`) first, then touches
                    // in path order. A touch's multiplicity only says present
                    // or not; the marker's counts the conversion's copies, each
                    // a conversion (there are several only with dedup off), so
                    // its outcomes carry that multiplicity, as metrics count it.
                    let copies: isize = inputs
                        .iter()
                        .filter(|(touch, _)| touch.is_none())
                        .map(|(_, count)| *count)
                        .sum();
                    if copies <= 0 {
                        return;
                    }
                    let touches = inputs
                        .iter()
                        .filter(|(_, count)| *count > 0)
                        .filter_map(|(touch, _)| **touch);
                    let clicks: Vec<Touch> = touches
                        .clone()
                        .filter(|t| t.kind == EventKind::Click)
                        .collect();
                    let path = if clicks.is_empty() {
                        touches
                            .filter(|t| t.kind == EventKind::Impression)
                            .collect()
                    } else {
                        clicks
                    };
                    if path.is_empty() {
                        output.push((Outcome::Unattributed(Unattributed::of(conversion)), copies));
                        return;
                    }
                    for credit in credit_path(conversion, &path, &models) {
                        output.push((Outcome::Credit(credit), copies));
                    }
                },
            )
            .map(|(_, outcome)| outcome);

        let credits = outcomes.clone().flat_map(|outcome| match outcome {
            Outcome::Credit(credit) => Some(credit),
            Outcome::Unattributed(_) => None,
        });
        let unattributed = outcomes.flat_map(|outcome| match outcome {
            Outcome::Credit(_) => None,
            Outcome::Unattributed(row) => Some(row),
        });
        let (credits, unattributed) = match horizon {
            Some(horizon) => (
                credits.freeze_after(&format!("{name}: credits"), move |credit| {
                    at(credit
                        .conversion_ts
                        .saturating_add(horizon)
                        .saturating_add(1))
                }),
                unattributed.freeze_after(&format!("{name}: unattributed"), move |row| {
                    at(row.conversion_ts.saturating_add(horizon).saturating_add(1))
                }),
            ),
            None => (credits, unattributed),
        };
        let by_campaign_day = campaign_days(name, credits.clone(), horizon);
        Attribution {
            credits,
            unattributed,
            by_campaign_day,
        }
    }
}

/// The credits of one conversion's path (touches in path order) under each
/// model; touches a model gives nothing get no row.
fn credit_path(conversion: &Conversion, path: &[Touch], models: &[Model]) -> Vec<Credit> {
    let times: Vec<Millis> = path.iter().map(|touch| touch.ts).collect();
    let touches = u32::try_from(path.len()).unwrap_or(u32::MAX);
    let mut credits = Vec::new();
    for &model in models {
        let revenue = split_credit(model, &times, conversion.ts, conversion.revenue_micros);
        let conversions = split_credit(model, &times, conversion.ts, CONVERSION_MICROS);
        for (index, ((touch, credit_micros), conversion_credit)) in
            path.iter().zip(revenue).zip(conversions).enumerate()
        {
            if credit_micros == 0 && conversion_credit == 0 {
                continue;
            }
            credits.push(Credit {
                model,
                conversion: conversion.event_id,
                conversion_ts: conversion.ts,
                touch: touch.event_id,
                touch_ts: touch.ts,
                touch_kind: touch.kind,
                campaign_id: touch.campaign_id,
                ad_id: touch.ad_id,
                position: u32::try_from(index).unwrap_or(u32::MAX),
                touches,
                credit_micros,
                conversion_credit,
                country: conversion.country,
                device_type: conversion.device_type,
            });
        }
    }
    credits
}

/// Sums credits per (campaign, ad, model, day) in the difference, so the
/// aggregate holds one value per key.
fn campaign_days<'scope>(
    name: &str,
    credits: VecCollection<'scope, Time, Credit>,
    horizon: Option<Millis>,
) -> VecCollection<'scope, Time, CampaignDayAttribution> {
    type Key = (adflow::event::Id, adflow::event::Id, Model, Millis);
    let totals = credits.explode(|credit| {
        let key: Key = (
            credit.campaign_id,
            credit.ad_id,
            credit.model,
            day_start(credit.conversion_ts),
        );
        Some((
            key,
            Totals {
                revenue_micros: credit.credit_micros,
                conversion_micros: credit.conversion_credit,
            },
        ))
    });
    // The last credit of a day is frozen at (day end − 1) + h + 1.
    let day_expiry =
        move |horizon: Millis, day: Millis| at(day.saturating_add(DAY_MS).saturating_add(horizon));
    let totals = match horizon {
        Some(horizon) => totals
            .retire_after(&format!("{name}: campaign days"), move |key: &Key| {
                day_expiry(horizon, key.3)
            }),
        None => totals,
    };
    let rows = totals
        .arrange_by_self_named(&format!("{name}: arrange campaign days"))
        .reduce_abelian::<_, ValBuilder<Key, Totals, Time, isize>, ValSpine<Key, Totals, Time, isize>, _, _>(
            &format!("{name}: campaign days"),
            |_key, accumulated, output| output.push((accumulated[0].1, 1)),
            |buffer, key, updates| {
                buffer.clear();
                buffer.extend(updates.drain(..).map(|(value, time, diff)| ((*key, value), time, diff)));
            },
        )
        .as_collection(|&(campaign_id, ad_id, model, day), totals| CampaignDayAttribution {
            campaign_id,
            ad_id,
            model,
            day,
            conversion_micros: totals.conversion_micros,
            revenue_micros: totals.revenue_micros,
        });
    match horizon {
        Some(horizon) => rows.freeze_after(&format!("{name}: campaign days"), move |row| {
            day_expiry(horizon, row.day)
        }),
        None => rows,
    }
}
