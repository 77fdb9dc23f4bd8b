//! The output rows of the metrics family: [`MetricsRow`] with its derived
//! ratios (computed at the edge, from the exact integer counters), its key
//! [`MetricsKey`], and the calendar [`Granularity`] it is bucketed by.

use serde::{Deserialize, Serialize};

use adflow::event::{Country, DeviceType, Id};
use adflow::money::{Micros, MICROS_PER_UNIT};
use adflow::sinks::{Column, ColumnType, OutputRecord, Value};
use adflow::timestamp::{day_start, hour_start, month_start, Millis, DAY_MS, HOUR_MS};

use super::Counters;

/// The calendar bucket of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Granularity {
    /// One UTC hour.
    Hour,
    /// One UTC day.
    Day,
    /// One UTC calendar month.
    Month,
}

impl Granularity {
    /// `hour`, `day` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Month => "month",
        }
    }

    /// Start of the bucket containing `ts`.
    ///
    /// ```
    /// use adflow_operators::metrics::Granularity;
    /// let ts = 1_795_441_020_125; // 2026-11-23T13:37:00.125Z
    /// assert_eq!(Granularity::Hour.bucket(ts), 1_795_438_800_000); // 13:00
    /// assert_eq!(Granularity::Month.bucket(ts), 1_793_491_200_000); // 2026-11-01
    /// ```
    pub fn bucket(self, ts: Millis) -> Millis {
        match self {
            Granularity::Hour => hour_start(ts),
            Granularity::Day => day_start(ts),
            Granularity::Month => month_start(ts),
        }
    }

    /// End (exclusive) of the bucket that starts at `bucket`.
    ///
    /// ```
    /// use adflow_operators::metrics::Granularity;
    /// let november = 1_793_491_200_000; // 2026-11-01
    /// let december = november + 30 * 86_400_000;
    /// assert_eq!(Granularity::Month.bucket_end(november), december);
    /// ```
    pub fn bucket_end(self, bucket: Millis) -> Millis {
        match self {
            Granularity::Hour => bucket.saturating_add(HOUR_MS),
            Granularity::Day => bucket.saturating_add(DAY_MS),
            // Any month has at most 31 days, and the next at least 28: 31
            // days after the first of a month is inside the next month.
            Granularity::Month => month_start(bucket.saturating_add(31 * DAY_MS)),
        }
    }
}

/// What a row is keyed by: bucket start, placement and dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MetricsKey {
    /// Start of the bucket (hour, day or month, as the row's granularity says).
    pub bucket: Millis,
    /// Campaign; `None` for conversions credited to no campaign.
    pub campaign_id: Option<Id>,
    /// Ad; `None` for conversions credited to no ad.
    pub ad_id: Option<Id>,
    /// Country dimension.
    pub country: Country,
    /// Device dimension.
    pub device_type: DeviceType,
}

/// Metrics of one (bucket, campaign, ad, country, device type).
///
/// The counters are exact integers (money in micros); the ratios are
/// computed from them on demand and are `None` when their denominator is
/// not positive. Definitions:
///
/// | ratio | formula |
/// |---|---|
/// | CTR  | valid clicks / valid impressions |
/// | CVR  | conversions / valid clicks |
/// | CPC  | cost / valid clicks (currency units) |
/// | CPM  | 1000 × cost / valid impressions (currency units) |
/// | CPA  | cost / conversions (currency units) |
/// | ROAS | revenue / cost |
///
/// Valid impressions are `impressions - invalid_impressions`; `cost` is the
/// billing cost, which already excludes invalid events.
///
/// ```
/// use adflow_operators::metrics::{Counters, Granularity, MetricsKey, MetricsRow};
/// use adflow::event::{Country, DeviceType};
///
/// let key = MetricsKey {
///     bucket: 0, campaign_id: None, ad_id: None,
///     country: Country(*b"DE"), device_type: DeviceType::Mobile,
/// };
/// let counters = Counters {
///     impressions: 1_000, clicks: 25, invalid_clicks: 5,
///     conversions_micros: 2_000_000, revenue_micros: 90_000_000, cost_micros: 30_000_000,
///     ..Counters::default()
/// };
/// let row = MetricsRow::new(Granularity::Hour, key, counters);
/// assert_eq!(row.valid_clicks, 20);
/// assert_eq!(row.ctr(), Some(0.02));
/// assert_eq!(row.cvr(), Some(0.1));
/// assert_eq!(row.cpc(), Some(1.5));
/// assert_eq!(row.cpm(), Some(30.0));
/// assert_eq!(row.cpa(), Some(15.0));
/// assert_eq!(row.roas(), Some(3.0));
/// let idle = MetricsRow::new(Granularity::Hour, key, Counters { impressions: 3, ..Counters::default() });
/// assert_eq!((idle.cvr(), idle.cpc(), idle.roas()), (None, None, None));
///
/// // As an output: one value per column, the key's first.
/// use adflow::sinks::OutputRecord;
/// assert_eq!(row.values().len(), MetricsRow::columns().len());
/// assert_eq!(row.key_values(), row.values()[..MetricsRow::key_columns()]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MetricsRow {
    /// Bucket size.
    pub granularity: Granularity,
    /// Start of the bucket.
    pub bucket: Millis,
    /// Campaign; `None` for unattributed conversions.
    pub campaign_id: Option<Id>,
    /// Ad; `None` for unattributed conversions.
    pub ad_id: Option<Id>,
    /// Country dimension.
    pub country: Country,
    /// Device dimension.
    pub device_type: DeviceType,
    /// All impressions, valid or not.
    pub impressions: i64,
    /// Impressions flagged invalid (not billed).
    pub invalid_impressions: i64,
    /// All clicks, valid or not.
    pub clicks: i64,
    /// `clicks - invalid_clicks`.
    pub valid_clicks: i64,
    /// Clicks flagged invalid (not billed).
    pub invalid_clicks: i64,
    /// Conversions credited to the row, in millionths of a conversion.
    pub conversions_micros: i64,
    /// Revenue credited to the row.
    pub revenue_micros: Micros,
    /// Billing cost: cost of valid impressions plus valid clicks.
    pub cost_micros: Micros,
}

/// `numerator / denominator`, or `None` unless the denominator is positive.
fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator / denominator)
}

/// An exact integer as a float (ratios only; counters stay integers).
fn float(value: i64) -> f64 {
    // Rounds beyond 2^53, which is harmless for a displayed ratio.
    value as f64
}

/// Micros as decimal currency units (or conversions).
fn units(micros: i64) -> f64 {
    float(micros) / float(MICROS_PER_UNIT)
}

impl MetricsRow {
    /// The row of `key` at `granularity` holding `counters`.
    pub fn new(granularity: Granularity, key: MetricsKey, counters: Counters) -> MetricsRow {
        MetricsRow {
            granularity,
            bucket: key.bucket,
            campaign_id: key.campaign_id,
            ad_id: key.ad_id,
            country: key.country,
            device_type: key.device_type,
            impressions: counters.impressions,
            invalid_impressions: counters.invalid_impressions,
            clicks: counters.clicks,
            valid_clicks: counters.clicks.wrapping_sub(counters.invalid_clicks),
            invalid_clicks: counters.invalid_clicks,
            conversions_micros: counters.conversions_micros,
            revenue_micros: counters.revenue_micros,
            cost_micros: counters.cost_micros,
        }
    }

    /// The row's key.
    pub fn key(&self) -> MetricsKey {
        MetricsKey {
            bucket: self.bucket,
            campaign_id: self.campaign_id,
            ad_id: self.ad_id,
            country: self.country,
            device_type: self.device_type,
        }
    }

    /// The row's additive counters (`valid_clicks` is derived, so not among them).
    pub fn counters(&self) -> Counters {
        Counters {
            impressions: self.impressions,
            invalid_impressions: self.invalid_impressions,
            clicks: self.clicks,
            invalid_clicks: self.invalid_clicks,
            conversions_micros: self.conversions_micros,
            revenue_micros: self.revenue_micros,
            cost_micros: self.cost_micros,
        }
    }

    /// `impressions - invalid_impressions`.
    pub fn valid_impressions(&self) -> i64 {
        self.impressions.wrapping_sub(self.invalid_impressions)
    }

    /// Click-through rate: valid clicks per valid impression.
    pub fn ctr(&self) -> Option<f64> {
        ratio(float(self.valid_clicks), float(self.valid_impressions()))
    }

    /// Conversion rate: conversions per valid click.
    pub fn cvr(&self) -> Option<f64> {
        ratio(units(self.conversions_micros), float(self.valid_clicks))
    }

    /// Cost per valid click, in currency units.
    pub fn cpc(&self) -> Option<f64> {
        ratio(units(self.cost_micros), float(self.valid_clicks))
    }

    /// Cost per thousand valid impressions, in currency units.
    pub fn cpm(&self) -> Option<f64> {
        // cost in units × 1000 is cost in micros / 1000, without a rounding step.
        ratio(
            float(self.cost_micros) / 1_000.0,
            float(self.valid_impressions()),
        )
    }

    /// Cost per conversion, in currency units.
    pub fn cpa(&self) -> Option<f64> {
        ratio(units(self.cost_micros), units(self.conversions_micros))
    }

    /// Return on ad spend: revenue per unit of cost.
    pub fn roas(&self) -> Option<f64> {
        ratio(units(self.revenue_micros), units(self.cost_micros))
    }
}

fn ratio_value(value: Option<f64>) -> Value {
    value.map_or(Value::Null, Value::F64)
}

/// How many columns [`MetricsRow`] renders.
const METRICS_COLUMNS: usize = 21;

/// Columns: `granularity`, `bucket` (time), `campaign_id` and `ad_id` (the
/// ids as they arrived, or 16 hex digits of the hash if their text is
/// unknown; null when absent), `country`, `device_type` (empty when
/// unknown), the counters (`impressions`, `invalid_impressions`, `clicks`,
/// `valid_clicks`, `invalid_clicks`), the conversions credited to the row
/// (`conversions`, a decimal since models split them, and the exact
/// `conversions_micros`, as attribution's outputs have them), money
/// (`revenue`, `cost`), and the ratios (`ctr`, `cvr`, `cpc`, `cpm`, `cpa`,
/// `roas`; null when undefined).
impl OutputRecord for MetricsRow {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("granularity", ColumnType::Text),
            Column::new("bucket", ColumnType::Time),
            Column::new("campaign_id", ColumnType::Text),
            Column::new("ad_id", ColumnType::Text),
            Column::new("country", ColumnType::Text),
            Column::new("device_type", ColumnType::Text),
            Column::new("impressions", ColumnType::I64),
            Column::new("invalid_impressions", ColumnType::I64),
            Column::new("clicks", ColumnType::I64),
            Column::new("valid_clicks", ColumnType::I64),
            Column::new("invalid_clicks", ColumnType::I64),
            Column::new("conversions", ColumnType::F64),
            Column::new("conversions_micros", ColumnType::I64),
            Column::new("revenue", ColumnType::Money),
            Column::new("cost", ColumnType::Money),
            Column::new("ctr", ColumnType::F64),
            Column::new("cvr", ColumnType::F64),
            Column::new("cpc", ColumnType::F64),
            Column::new("cpm", ColumnType::F64),
            Column::new("cpa", ColumnType::F64),
            Column::new("roas", ColumnType::F64),
        ]
    }

    fn values(&self) -> Vec<Value> {
        let mut values = self.key_values();
        values.extend([
            Value::I64(self.impressions),
            Value::I64(self.invalid_impressions),
            Value::I64(self.clicks),
            Value::I64(self.valid_clicks),
            Value::I64(self.invalid_clicks),
            Value::F64(units(self.conversions_micros)),
            Value::I64(self.conversions_micros),
            Value::Money(self.revenue_micros),
            Value::Money(self.cost_micros),
            ratio_value(self.ctr()),
            ratio_value(self.cvr()),
            ratio_value(self.cpc()),
            ratio_value(self.cpm()),
            ratio_value(self.cpa()),
            ratio_value(self.roas()),
        ]);
        values
    }

    /// One row per granularity, bucket, campaign, ad, country and device type.
    fn key_columns() -> usize {
        6
    }

    /// Counted per key: one row each.
    fn one_row_per_key() -> bool {
        true
    }

    /// Built with room for the other columns, which `values` appends.
    fn key_values(&self) -> Vec<Value> {
        let mut values = Vec::with_capacity(METRICS_COLUMNS);
        values.extend([
            Value::Text(self.granularity.as_str().to_owned()),
            Value::Time(self.bucket),
            Value::named(self.campaign_id),
            Value::named(self.ad_id),
            Value::from(self.country),
            Value::from(self.device_type),
        ]);
        values
    }
}
