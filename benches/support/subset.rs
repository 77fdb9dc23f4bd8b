//! The subset of the pipeline that `engines` compares with DuckDB and
//! Flink and `scale` measures at growing sizes: dedup, hourly metrics of
//! impressions and clicks, last-touch attribution, without fraud rules,
//! composed from adflow's operator families (see `benches/engines.rs`).
//!
//! Included with `#[path = "support/subset.rs"] mod subset;`; each bench
//! uses part of it.

#![allow(dead_code)]

use adflow::event::{Country, DeviceType, Event, EventId, Id};
use adflow::pipeline::Time;
use adflow::timestamp::Millis;
use adflow_operators::attribution::{AttributionConfig, AttributionExt, Model};
use adflow_operators::dedup::{DedupConfig, DedupExt};
use adflow_operators::fraud::EventKey;
use adflow_operators::kinds::SplitByKindExt;
use adflow_operators::metrics::{AttributedConversion, CampaignMetricsExt, MetricsConfig};
use differential_dataflow::collection::{AsCollection, VecCollection};
use timely::dataflow::operators::core::ToStream;

/// One row of the compared answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Row {
    /// Hourly metrics of impressions and clicks.
    Hour {
        bucket: i64,
        campaign: Option<Id>,
        ad: Option<Id>,
        country: Country,
        device: DeviceType,
        impressions: i64,
        clicks: i64,
        cost_micros: i64,
    },
    /// A conversion's last touch (`None`: unattributed) and its revenue.
    LastTouch {
        conversion: EventId,
        campaign: Option<Id>,
        ad: Option<Id>,
        revenue_micros: i64,
    },
}

/// The compared subset, composed from adflow's operator families, as a
/// backfill: no horizon, every event's state kept until the input ends.
pub fn subset(events: VecCollection<'_, Time, Event>) -> VecCollection<'_, Time, Row> {
    subset_with_horizon(events, None)
}

/// The subset with every family's horizon set to the pipeline's `horizon`
/// (which must be the one the pipeline admits events by): state older than
/// the windows plus the horizon is retired.
pub fn subset_with_horizon(
    events: VecCollection<'_, Time, Event>,
    horizon: Option<Millis>,
) -> VecCollection<'_, Time, Row> {
    let scope = events.scope();
    let no_verdicts = Vec::<(EventKey, Time, isize)>::new()
        .to_stream(scope)
        .as_collection();
    let no_credits = Vec::<(AttributedConversion, Time, isize)>::new()
        .to_stream(scope)
        .as_collection();
    let dedup = DedupConfig {
        horizon,
        ..DedupConfig::default()
    };
    let kinds = events
        .dedup_by_event_id(&dedup)
        .unique
        .split_by_kind_named("Subset");
    let touches = kinds.impressions.concat(kinds.clicks);
    let conversions = kinds.conversions;

    // No fraud rules, so no verdicts (and no touch held by id for one), and
    // hourly rows only: what the engines compute too.
    let hourly_only = MetricsConfig {
        rollups: false,
        horizon,
    };
    let hourly = touches
        .clone()
        .campaign_metrics(None, no_credits, &hourly_only)
        .hourly
        .map(|row| Row::Hour {
            bucket: row.bucket,
            campaign: row.campaign_id,
            ad: row.ad_id,
            country: row.country,
            device: row.device_type,
            impressions: row.impressions,
            clicks: row.clicks,
            cost_micros: row.cost_micros,
        });

    let config = AttributionConfig {
        models: vec![Model::LastTouch],
        horizon,
        ..AttributionConfig::default()
    };
    let arranged = touches.arrange_touches("Attribution", &config);
    let attribution =
        conversions.attribute_arranged("Attribution", &arranged, no_verdicts, &config);
    let credited = attribution.credits.map(|credit| Row::LastTouch {
        conversion: credit.conversion,
        campaign: Some(credit.campaign_id),
        ad: Some(credit.ad_id),
        revenue_micros: credit.credit_micros,
    });
    let unattributed = attribution.unattributed.map(|lost| Row::LastTouch {
        conversion: lost.conversion,
        campaign: None,
        ad: None,
        revenue_micros: lost.revenue_micros,
    });
    hourly.concat(credited).concat(unattributed)
}
