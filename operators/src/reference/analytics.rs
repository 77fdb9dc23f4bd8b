//! Sequential reference of the whole pipeline, [`crate::analytics`]: the
//! family references composed exactly as the dataflow composes the
//! families — dedup, then fraud on the unique events, attribution and
//! metrics on the unique events and the flagged events — with the conversions
//! that metrics count taken from the last-touch credits.

use adflow::event::Event;
use serde::{Deserialize, Serialize};

use crate::analytics::AnalyticsConfig;
use crate::attribution::{CampaignDayAttribution, Credit, Model, Unattributed};
use crate::dedup::Duplicate;
use crate::fraud::Verdict;
use crate::metrics::{AttributedConversion, MetricsRow};
use crate::reference::{attribution, dedup, fraud, metrics};

/// One record of any output of the pipeline, so that a whole run compares
/// as one multiset. Unique events are left out: every other output is
/// computed from them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AnalyticsRow {
    /// A duplicate copy.
    Duplicate(Duplicate),
    /// A fraud verdict.
    Verdict(Verdict),
    /// A credit of a conversion to a touch, under a model.
    Credit(Credit),
    /// Attributed totals per campaign, ad, model and day.
    Day(CampaignDayAttribution),
    /// A conversion without a qualifying touch.
    Unattributed(Unattributed),
    /// A metrics row of any granularity.
    Metrics(MetricsRow),
}

/// Every output of the pipeline on the final multiset `events`, sorted.
///
/// ```
/// use adflow_operators::analytics::AnalyticsConfig;
/// use adflow_operators::reference::analytics::{analyze, AnalyticsRow};
/// use adflow::parsing::{json::parse_json, EventValidator};
/// let line = r#"{"event_id":"i1","kind":"impression","ts":"2026-11-01T10:00:00Z","user_id":"u","user_agent":"Mozilla/5.0","campaign_id":"c","ad_id":"a","cost":0.01}"#;
/// let event = parse_json(line.as_bytes()).and_then(|raw| EventValidator::default().validate(&raw)).unwrap();
/// let rows = analyze(&[event, event], &AnalyticsConfig::default());
/// // The resent copy is a duplicate; the impression counts once in its hour, day and month.
/// let duplicates = rows.iter().filter(|row| matches!(row, AnalyticsRow::Duplicate(_))).count();
/// let metrics: Vec<_> = rows.iter().filter_map(|row| match row { AnalyticsRow::Metrics(m) => Some(m), _ => None }).collect();
/// assert_eq!(duplicates, 1);
/// assert_eq!(metrics.len(), 3);
/// assert!(metrics.iter().all(|row| row.impressions == 1 && row.cost_micros == 10_000));
/// ```
pub fn analyze(events: &[Event], config: &AnalyticsConfig) -> Vec<AnalyticsRow> {
    let (unique, duplicates) = dedup::dedup(events, &config.dedup);
    let verdicts = fraud::flag_fraud(&unique, &config.fraud);
    let invalid = fraud::invalid_events(&verdicts);
    let mut attribution_config = config.attribution.clone();
    if !attribution_config.models.contains(&Model::LastTouch) {
        attribution_config.models.push(Model::LastTouch);
    }
    let (credits, days) = attribution::attribute(&unique, &invalid, &attribution_config);
    let unattributed = attribution::unattributed(&unique, &invalid, &attribution_config);
    let conversions = last_touch_conversions(&credits, &unattributed);
    let (hourly, daily, monthly) = metrics::metrics(&unique, &invalid, &conversions);

    let mut rows: Vec<AnalyticsRow> = duplicates
        .into_iter()
        .map(AnalyticsRow::Duplicate)
        .chain(verdicts.into_iter().map(AnalyticsRow::Verdict))
        .chain(credits.into_iter().map(AnalyticsRow::Credit))
        .chain(days.into_iter().map(AnalyticsRow::Day))
        .chain(unattributed.into_iter().map(AnalyticsRow::Unattributed))
        .chain(
            hourly
                .into_iter()
                .chain(daily)
                .chain(monthly)
                .map(AnalyticsRow::Metrics),
        )
        .collect();
    rows.sort();
    rows
}

/// The conversions metrics count: each last-touch credit, and each
/// unattributed conversion under no campaign, in the conversion's country
/// and device.
fn last_touch_conversions(
    credits: &[Credit],
    unattributed: &[Unattributed],
) -> Vec<AttributedConversion> {
    credits
        .iter()
        .filter(|credit| credit.model == Model::LastTouch)
        .map(AttributedConversion::credited)
        .chain(unattributed.iter().map(AttributedConversion::unattributed))
        .collect()
}
