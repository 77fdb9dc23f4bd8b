//! The records attribution reads and writes: who a touch or conversion
//! belongs to, the touches and conversions themselves, and the output rows
//! (with their sink columns).

use adflow::event::{Country, DeviceType, Event, EventId, EventKind, Id};
use adflow::money::Micros;
use adflow::sinks::{Column, ColumnType, OutputRecord, Value};
use adflow::timestamp::Millis;
use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use serde::{Deserialize, Serialize};

use super::Model;

/// One conversion, in micro-conversions: credits of a conversion sum to it.
pub const CONVERSION_MICROS: i64 = 1_000_000;

pub use adflow::event::Identity;

/// An impression or click that may earn credit.
///
/// The field order is the path order: `(ts, event_id)` ascending, with the
/// remaining fields only separating events that (against the input
/// contract) share both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Touch {
    /// Event time of the touch.
    pub ts: Millis,
    /// The touch's event id.
    pub event_id: EventId,
    /// `Click` or `Impression`.
    pub kind: EventKind,
    /// Campaign shown or clicked.
    pub campaign_id: Id,
    /// Ad shown or clicked.
    pub ad_id: Id,
}

impl Touch {
    /// The touch an event makes: clicks and impressions that name a
    /// campaign and an ad (the parser rejects those that do not).
    pub fn of(event: &Event) -> Option<Touch> {
        matches!(event.kind, EventKind::Click | EventKind::Impression).then_some(())?;
        Some(Touch {
            ts: event.ts,
            event_id: event.event_id,
            kind: event.kind,
            campaign_id: event.campaign_id?,
            ad_id: event.ad_id?,
        })
    }
}

/// A [`Touch`] as the touch arrangement stores it: 40 bytes rather than
/// 48, because the kind rides in the lowest bit of the time. The
/// arrangement holds every touch of the click and view windows (billions at
/// the seed's load), so the byte of `kind` and the padding it causes cost a
/// sixth of its memory. Ordered by time, then kind, then id: any order
/// serves an arrangement, and readers turn it back into a `Touch`.
///
/// ```
/// use adflow::event::{EventId, EventKind, Id};
/// use adflow_operators::attribution::{StoredTouch, Touch};
///
/// let touch = Touch {
///     ts: -1_500,
///     event_id: EventId(7),
///     kind: EventKind::Click,
///     campaign_id: Id::of("c").unwrap(),
///     ad_id: Id::of("a").unwrap(),
/// };
/// assert_eq!(StoredTouch::from(touch).touch(), touch);
/// assert_eq!(std::mem::size_of::<StoredTouch>(), 40);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StoredTouch {
    /// `ts * 2`, plus 1 for a click.
    ts_and_kind: Millis,
    event_id: EventId,
    campaign_id: Id,
    ad_id: Id,
}

impl StoredTouch {
    /// The touch stored.
    pub fn touch(&self) -> Touch {
        Touch {
            // An arithmetic shift: exact for negative times too.
            ts: self.ts_and_kind >> 1,
            event_id: self.event_id,
            kind: if self.ts_and_kind & 1 == 1 {
                EventKind::Click
            } else {
                EventKind::Impression
            },
            campaign_id: self.campaign_id,
            ad_id: self.ad_id,
        }
    }
}

impl From<Touch> for StoredTouch {
    /// Times beyond ±2^62 ms (146 million years, which validation never
    /// admits) would not fit beside the kind bit and are clamped.
    fn from(touch: Touch) -> StoredTouch {
        let ts = touch.ts.clamp(Millis::MIN >> 1, Millis::MAX >> 1);
        StoredTouch {
            ts_and_kind: (ts << 1) | Millis::from(touch.kind == EventKind::Click),
            event_id: touch.event_id,
            campaign_id: touch.campaign_id,
            ad_id: touch.ad_id,
        }
    }
}

/// A conversion to attribute.
///
/// Everything of the event that its credits carry is part of it, so two
/// different conversions that share an id and a time (possible only with
/// dedup off) are credited apart, each in its own country and device, and
/// identical copies are one conversion counted once per copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Conversion {
    /// The conversion's event id.
    pub event_id: EventId,
    /// Event time of the conversion.
    pub ts: Millis,
    /// Whose conversion it is.
    pub identity: Identity,
    /// Revenue to split over the touches.
    pub revenue_micros: Micros,
    /// Country of the conversion.
    pub country: Country,
    /// Device type of the conversion.
    pub device_type: DeviceType,
}

impl Conversion {
    /// The conversion an event reports, if it is one with an identity.
    pub fn of(event: &Event) -> Option<Conversion> {
        (event.kind == EventKind::Conversion).then_some(())?;
        Some(Conversion {
            event_id: event.event_id,
            ts: event.ts,
            identity: Identity::of(event)?,
            revenue_micros: event.revenue_micros,
            country: event.country,
            device_type: event.device_type,
        })
    }
}

/// The credit one touch earns for one conversion under one model.
///
/// Touches a model gives nothing (e.g. all but the last under last-touch)
/// have no row; `position` and `touches` still describe the whole path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Credit {
    /// The model that assigned this credit.
    pub model: Model,
    /// The conversion's event id.
    pub conversion: EventId,
    /// The conversion's event time.
    pub conversion_ts: Millis,
    /// The touch's event id.
    pub touch: EventId,
    /// The touch's event time.
    pub touch_ts: Millis,
    /// `Click` or `Impression`.
    pub touch_kind: EventKind,
    /// The touch's campaign.
    pub campaign_id: Id,
    /// The touch's ad.
    pub ad_id: Id,
    /// Index of the touch in the conversion's path, from 0 (earliest).
    pub position: u32,
    /// Number of touches in the path.
    pub touches: u32,
    /// Share of the conversion's revenue, in micros.
    pub credit_micros: Micros,
    /// Share of the conversion itself, in micro-conversions
    /// ([`CONVERSION_MICROS`] is one whole conversion).
    pub conversion_credit: i64,
    /// Country of the conversion (not of the touch).
    pub country: Country,
    /// Device type of the conversion (not of the touch).
    pub device_type: DeviceType,
}

/// A conversion none of whose touches qualified (no valid click in the
/// click window, no valid impression in the view window).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Unattributed {
    /// The conversion's event id.
    pub conversion: EventId,
    /// The conversion's event time.
    pub conversion_ts: Millis,
    /// Its revenue, credited to no campaign.
    pub revenue_micros: Micros,
    /// Country of the conversion.
    pub country: Country,
    /// Device type of the conversion.
    pub device_type: DeviceType,
}

impl Unattributed {
    /// The row of a conversion that no touch earned.
    pub fn of(conversion: &Conversion) -> Unattributed {
        Unattributed {
            conversion: conversion.event_id,
            conversion_ts: conversion.ts,
            revenue_micros: conversion.revenue_micros,
            country: conversion.country,
            device_type: conversion.device_type,
        }
    }
}

/// Attributed totals per (campaign, ad, model, UTC day of the conversion).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CampaignDayAttribution {
    /// Campaign credited.
    pub campaign_id: Id,
    /// Ad credited.
    pub ad_id: Id,
    /// Attribution model.
    pub model: Model,
    /// Start of the UTC day of the conversions (ms since the epoch).
    pub day: Millis,
    /// Attributed conversions in micro-conversions (fractional under
    /// multi-touch models, exact as a sum).
    pub conversion_micros: i64,
    /// Attributed revenue in micros.
    pub revenue_micros: Micros,
}

impl CampaignDayAttribution {
    /// Attributed conversions as a number, e.g. `1.5`.
    pub fn conversions(&self) -> f64 {
        self.conversion_micros as f64 / CONVERSION_MICROS as f64
    }

    /// Return on ad spend given this row's media cost (see [`roas`]).
    pub fn roas(&self, cost_micros: Micros) -> Option<f64> {
        roas(self.revenue_micros, cost_micros)
    }
}

/// Return on ad spend, `revenue / cost`; `None` when there was no cost.
///
/// Attribution knows revenue but not cost: cost comes from the metrics
/// family (per campaign, ad and day) and ROAS is computed where the two are
/// joined, with this function, so every consumer computes it the same way.
///
/// ```
/// use adflow_operators::attribution::roas;
/// assert_eq!(roas(30_000_000, 10_000_000), Some(3.0));
/// assert_eq!(roas(5_000_000, 0), None);
/// ```
pub fn roas(revenue_micros: Micros, cost_micros: Micros) -> Option<f64> {
    (cost_micros > 0).then(|| revenue_micros as f64 / cost_micros as f64)
}

/// Columns: `model`, `conversion`, `conversion_ts`, `touch`, `touch_ts`,
/// `touch_kind`, `campaign_id`, `ad_id`, `position`, `touches`, `credit`
/// (money), `conversion_credit` (micro-conversions), then the conversion's
/// `country` (`??` when unknown) and `device_type` (empty when unknown),
/// as in metrics rows. Event ids are
/// lower-case hex of their hashes; campaigns and ads print by name.
impl OutputRecord for Credit {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("model", ColumnType::Text),
            Column::new("conversion", ColumnType::Text),
            Column::new("conversion_ts", ColumnType::Time),
            Column::new("touch", ColumnType::Text),
            Column::new("touch_ts", ColumnType::Time),
            Column::new("touch_kind", ColumnType::Text),
            Column::new("campaign_id", ColumnType::Text),
            Column::new("ad_id", ColumnType::Text),
            Column::new("position", ColumnType::I64),
            Column::new("touches", ColumnType::I64),
            Column::new("credit", ColumnType::Money),
            Column::new("conversion_credit", ColumnType::I64),
            Column::new("country", ColumnType::Text),
            Column::new("device_type", ColumnType::Text),
        ]
    }

    fn values(&self) -> Vec<Value> {
        vec![
            Value::Text(self.model.name()),
            Value::from(self.conversion),
            Value::Time(self.conversion_ts),
            Value::from(self.touch),
            Value::Time(self.touch_ts),
            Value::Text(self.touch_kind.as_str().to_owned()),
            Value::named(self.campaign_id),
            Value::named(self.ad_id),
            Value::I64(i64::from(self.position)),
            Value::I64(i64::from(self.touches)),
            Value::Money(self.credit_micros),
            Value::I64(self.conversion_credit),
            Value::from(self.country),
            Value::from(self.device_type),
        ]
    }

    /// One credit per model, conversion and touch (`conversion_ts` follows from the conversion).
    fn key_columns() -> usize {
        4
    }
}

/// Columns: `conversion`, `conversion_ts`, `revenue` (money), `country`
/// (`??` when unknown), `device_type` (empty when unknown).
impl OutputRecord for Unattributed {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("conversion", ColumnType::Text),
            Column::new("conversion_ts", ColumnType::Time),
            Column::new("revenue", ColumnType::Money),
            Column::new("country", ColumnType::Text),
            Column::new("device_type", ColumnType::Text),
        ]
    }

    fn values(&self) -> Vec<Value> {
        vec![
            Value::from(self.conversion),
            Value::Time(self.conversion_ts),
            Value::Money(self.revenue_micros),
            Value::from(self.country),
            Value::from(self.device_type),
        ]
    }

    /// One row per conversion.
    fn key_columns() -> usize {
        1
    }
}

/// Columns: `campaign_id`, `ad_id`, `model`, `day`, `conversions` (f64, for
/// reading), `conversion_micros` (exact), `revenue` (money). ROAS is not a
/// column: it needs cost, see [`roas`].
impl OutputRecord for CampaignDayAttribution {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("campaign_id", ColumnType::Text),
            Column::new("ad_id", ColumnType::Text),
            Column::new("model", ColumnType::Text),
            Column::new("day", ColumnType::Time),
            Column::new("conversions", ColumnType::F64),
            Column::new("conversion_micros", ColumnType::I64),
            Column::new("revenue", ColumnType::Money),
        ]
    }

    fn values(&self) -> Vec<Value> {
        vec![
            Value::named(self.campaign_id),
            Value::named(self.ad_id),
            Value::Text(self.model.name()),
            Value::Time(self.day),
            Value::F64(self.conversions()),
            Value::I64(self.conversion_micros),
            Value::Money(self.revenue_micros),
        ]
    }

    /// One row per campaign, ad, model and day.
    fn key_columns() -> usize {
        4
    }

    /// Counted per key: one row each.
    fn one_row_per_key() -> bool {
        true
    }
}

/// Revenue and micro-conversions summed as a differential *difference*, so
/// the per-(campaign, ad, model, day) aggregate keeps one accumulated value
/// per key instead of every credit. Arithmetic wraps, which keeps the group
/// laws exact (a true total that fits in i64 comes out right).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub(crate) struct Totals {
    pub(crate) revenue_micros: Micros,
    pub(crate) conversion_micros: i64,
}

impl IsZero for Totals {
    fn is_zero(&self) -> bool {
        self.revenue_micros == 0 && self.conversion_micros == 0
    }
}

impl Semigroup for Totals {
    fn plus_equals(&mut self, rhs: &Self) {
        self.revenue_micros = self.revenue_micros.wrapping_add(rhs.revenue_micros);
        self.conversion_micros = self.conversion_micros.wrapping_add(rhs.conversion_micros);
    }
}

impl Monoid for Totals {
    fn zero() -> Self {
        Totals::default()
    }
}

impl Abelian for Totals {
    fn negate(&mut self) {
        self.revenue_micros = self.revenue_micros.wrapping_neg();
        self.conversion_micros = self.conversion_micros.wrapping_neg();
    }
}

impl Multiply<isize> for Totals {
    type Output = Totals;
    fn multiply(self, rhs: &isize) -> Totals {
        let factor = *rhs as i64;
        Totals {
            revenue_micros: self.revenue_micros.wrapping_mul(factor),
            conversion_micros: self.conversion_micros.wrapping_mul(factor),
        }
    }
}
