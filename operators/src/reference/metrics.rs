//! Sequential reference of the metrics family: plain loops over the final
//! events, verdicts and conversion credits, one `BTreeMap` per granularity.
//! Days and months are computed from the events directly (not from the
//! hours), so the rollups of the dataflow are checked independently.

use std::collections::{BTreeMap, BTreeSet};

use adflow::event::{Country, DeviceType, Event, EventKind, Id};
use adflow::timestamp::Millis;

use crate::fraud::{event_key, EventKey};
use crate::metrics::{AttributedConversion, Granularity, MetricsRow};

type Key = (Millis, Option<Id>, Option<Id>, Country, DeviceType);

/// Sums `value` into `total` without panicking on overflow (as the dataflow).
fn add(total: &mut i64, value: i64) {
    *total = total.wrapping_add(value);
}

/// The row of `granularity` that an event at `ts` with this placement and
/// these dimensions counts in, created empty if new.
fn row_for(
    rows: &mut BTreeMap<Key, MetricsRow>,
    granularity: Granularity,
    ts: Millis,
    (campaign_id, ad_id): (Option<Id>, Option<Id>),
    (country, device_type): (Country, DeviceType),
) -> &mut MetricsRow {
    let bucket = granularity.bucket(ts);
    rows.entry((bucket, campaign_id, ad_id, country, device_type))
        .or_insert(MetricsRow {
            granularity,
            bucket,
            campaign_id,
            ad_id,
            country,
            device_type,
            impressions: 0,
            invalid_impressions: 0,
            clicks: 0,
            valid_clicks: 0,
            invalid_clicks: 0,
            conversions_micros: 0,
            revenue_micros: 0,
            cost_micros: 0,
        })
}

fn metrics_at(
    granularity: Granularity,
    events: &[Event],
    invalid: &BTreeSet<EventKey>,
    conversions: &[AttributedConversion],
) -> Vec<MetricsRow> {
    let mut rows = BTreeMap::new();
    for event in events {
        let is_click = match event.kind {
            EventKind::Impression => false,
            EventKind::Click => true,
            EventKind::Conversion | EventKind::PageView => continue,
        };
        let flagged = invalid.contains(&event_key(event));
        let row = row_for(
            &mut rows,
            granularity,
            event.ts,
            (event.campaign_id, event.ad_id),
            (event.country, event.device_type),
        );
        if is_click {
            add(&mut row.clicks, 1);
            if flagged {
                add(&mut row.invalid_clicks, 1);
            } else {
                add(&mut row.valid_clicks, 1);
            }
        } else {
            add(&mut row.impressions, 1);
            if flagged {
                add(&mut row.invalid_impressions, 1);
            }
        }
        if !flagged {
            add(&mut row.cost_micros, event.cost_micros);
        }
    }
    for credit in conversions {
        let row = row_for(
            &mut rows,
            granularity,
            credit.ts,
            (credit.campaign_id, credit.ad_id),
            (credit.country, credit.device_type),
        );
        add(&mut row.conversions_micros, credit.conversions_micros);
        add(&mut row.revenue_micros, credit.revenue_micros);
    }
    rows.into_values()
        .filter(|row| {
            // A key whose every counter sums to zero has no row.
            [
                row.impressions,
                row.invalid_impressions,
                row.clicks,
                row.invalid_clicks,
                row.conversions_micros,
                row.revenue_micros,
                row.cost_micros,
            ]
            .iter()
            .any(|&counter| counter != 0)
        })
        .collect()
}

/// Hourly, daily and monthly metrics of the final `events` (impressions and
/// clicks; other kinds are ignored), the final set of `invalid` events,
/// and the final conversion credits, each list sorted by key.
///
/// ```
/// use adflow_operators::reference::metrics::metrics;
/// use std::collections::BTreeSet;
/// let (hourly, daily, monthly) = metrics(&[], &BTreeSet::new(), &[]);
/// assert!(hourly.is_empty() && daily.is_empty() && monthly.is_empty());
/// ```
pub fn metrics(
    events: &[Event],
    invalid: &BTreeSet<EventKey>,
    conversions: &[AttributedConversion],
) -> (Vec<MetricsRow>, Vec<MetricsRow>, Vec<MetricsRow>) {
    (
        metrics_at(Granularity::Hour, events, invalid, conversions),
        metrics_at(Granularity::Day, events, invalid, conversions),
        metrics_at(Granularity::Month, events, invalid, conversions),
    )
}
