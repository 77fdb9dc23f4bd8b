//! The whole pipeline of operators, composed once: dedup → fraud →
//! attribution → metrics. Backfill, replay and stream all call
//! [`AnalyticsExt::analyze`], so on the same events their outputs agree.
//!
//! Fraud verdicts feed both attribution and metrics as a collection of
//! invalid events (`EventKey`s), so a verdict that arrives late moves
//! credit and cost by correction. Metrics count conversions, and their revenue, by the
//! last-touch credits of attribution (conversions carry no campaign): every
//! attribution run includes last touch for this reason.

use adflow::event::{Event, EventKind};
use adflow::pipeline::{Time, TimeConfig};
use differential_dataflow::collection::VecCollection;

use crate::attribution::{Attribution, AttributionConfig, AttributionExt, Model};
use crate::dedup::{DedupConfig, DedupExt, Duplicate};
use crate::fraud::{flag_fraud_by_kind, EventKey, FraudConfig, Rule, Verdict};
use crate::kinds::SplitByKindExt;
use crate::metrics::{
    AttributedConversion, CampaignMetrics, CampaignMetricsExt, Invalid, MetricsConfig,
};

/// Configuration of every family.
#[derive(Clone, Debug, Default)]
pub struct AnalyticsConfig {
    /// Deduplication window.
    pub dedup: DedupConfig,
    /// Fraud rules and thresholds.
    pub fraud: FraudConfig,
    /// Models and lookback windows.
    pub attribution: AttributionConfig,
    /// Metrics retention.
    pub metrics: MetricsConfig,
}

impl AnalyticsConfig {
    /// Sets every family's horizon to the pipeline's, so that what they
    /// retain matches what the pipeline still admits.
    pub fn with_horizon_of(mut self, time: &TimeConfig) -> AnalyticsConfig {
        self.dedup.horizon = time.horizon;
        self.fraud.horizon = time.horizon;
        self.attribution.horizon = time.horizon;
        self.metrics.horizon = time.horizon;
        self
    }
}

/// Every maintained output of the operators.
pub struct Analytics<'scope> {
    /// Deduplicated events.
    pub unique: VecCollection<'scope, Time, Event>,
    /// Duplicate copies, with the copy they duplicate.
    pub duplicates: VecCollection<'scope, Time, Duplicate>,
    /// Fraud verdicts with their evidence.
    pub verdicts: VecCollection<'scope, Time, Verdict>,
    /// The flagged events, each once.
    pub invalid: VecCollection<'scope, Time, EventKey>,
    /// Attribution under every configured model.
    pub attribution: Attribution<'scope>,
    /// Hourly, daily and monthly campaign metrics.
    pub metrics: CampaignMetrics<'scope>,
}

/// The operators composed over a collection of events.
pub trait AnalyticsExt<'scope> {
    /// Runs dedup, fraud, attribution and metrics over these events.
    ///
    /// ```
    /// use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
    /// use adflow_operators::testing::{run, Feed};
    /// use adflow::parsing::{json::parse_json, EventValidator};
    ///
    /// let lines = [
    ///     r#"{"event_id":"i1","kind":"impression","ts":"2026-11-01T10:00:00Z","user_id":"u","user_agent":"Mozilla/5.0","campaign_id":"c","ad_id":"a","cost":0.01}"#,
    ///     r#"{"event_id":"k1","kind":"click","ts":"2026-11-01T10:00:05Z","user_id":"u","user_agent":"Mozilla/5.0","campaign_id":"c","ad_id":"a","cost":0.5}"#,
    ///     r#"{"event_id":"k1","kind":"click","ts":"2026-11-01T10:00:05Z","user_id":"u","user_agent":"Mozilla/5.0","campaign_id":"c","ad_id":"a","cost":0.5}"#,
    ///     r#"{"event_id":"v1","kind":"page_view","ts":"2026-11-01T10:00:09Z","user_id":"u"}"#,
    ///     r#"{"event_id":"o1","kind":"conversion","ts":"2026-11-01T11:00:00Z","user_id":"u","user_agent":"Mozilla/5.0","revenue":20,"order_id":"A"}"#,
    /// ];
    /// let events: Vec<_> = lines
    ///     .iter()
    ///     .map(|line| parse_json(line.as_bytes()).and_then(|raw| EventValidator::default().validate(&raw)).unwrap())
    ///     .collect();
    /// let outcome = run(&Feed::one_batch(), &events, |events| {
    ///     let analytics = events.analyze(&AnalyticsConfig::default());
    ///     analytics.metrics.daily
    /// });
    /// // One row: the click is valid (an impression before it, a page view
    /// // after it), so last touch credits the conversion to campaign c.
    /// assert_eq!(outcome.output.len(), 1);
    /// let (day, _) = outcome.output.first_key_value().unwrap();
    /// assert_eq!((day.impressions, day.clicks, day.valid_clicks), (1, 1, 1));
    /// assert_eq!((day.conversions_micros, day.revenue_micros), (1_000_000, 20_000_000));
    /// assert_eq!(day.cost_micros, 510_000);
    /// ```
    fn analyze(self, config: &AnalyticsConfig) -> Analytics<'scope>;
}

impl<'scope> AnalyticsExt<'scope> for VecCollection<'scope, Time, Event> {
    fn analyze(self, config: &AnalyticsConfig) -> Analytics<'scope> {
        let deduplicated = self.dedup_by_event_id(&config.dedup);
        let unique = deduplicated.unique;
        // Every family reads only some kinds: split once, so that each
        // reads (and timely copies for it) only those.
        let kinds = unique.clone().split_by_kind_named("Analytics");

        // A verdict can land up to a rule's lookahead after the event it
        // flags, so the families that apply verdicts must keep their state
        // that much longer than the pipeline's horizon to stay exact.
        let verdict_delay = Rule::ALL
            .iter()
            .filter(|rule| config.fraud.enabled(**rule))
            .map(|rule| config.fraud.lookahead(*rule))
            .max()
            .unwrap_or(0);
        let mut attribution_config = config.attribution.clone();
        attribution_config.horizon = attribution_config
            .horizon
            .map(|horizon| horizon.saturating_add(verdict_delay));
        let metrics_config = MetricsConfig {
            horizon: config
                .metrics
                .horizon
                .map(|horizon| horizon.saturating_add(verdict_delay)),
            ..config.metrics
        };
        if !attribution_config.models.contains(&Model::LastTouch) {
            attribution_config.models.push(Model::LastTouch);
        }
        // Touches are impressions and clicks, for attribution and metrics
        // alike; `attribute` is `arrange_touches` then `attribute_arranged`.
        // Fraud's click-without-impression rule reads the same arrangement,
        // which keeps impressions as long as either family needs them.
        let touch_events = kinds.impressions.clone().concat(kinds.clicks.clone());
        let touches = touch_events.clone().arrange_touches(
            "Attribution",
            &shared_retention(&attribution_config, &config.fraud),
        );
        let fraud = flag_fraud_by_kind(&kinds, "Fraud", &config.fraud, Some(&touches));
        let attribution = kinds.conversions.attribute_arranged(
            "Attribution",
            &touches,
            fraud.invalid.clone(),
            &attribution_config,
        );

        let conversions = last_touch_conversions(&attribution);
        let invalid = metrics_invalid(&fraud.verdicts, config);
        let metrics = touch_events.campaign_metrics(Some(invalid), conversions, &metrics_config);
        Analytics {
            unique,
            duplicates: deduplicated.duplicates,
            verdicts: fraud.verdicts,
            invalid: fraud.invalid,
            attribution,
            metrics,
        }
    }
}

/// The retention of the touch arrangement that attribution (under
/// `attribution`) and fraud's click-without-impression rule (under `fraud`)
/// share: impressions are kept for the longer of the view window and the
/// rule's window, and everything for the longer of the two horizons (none
/// if either keeps everything). Attribution clamps its windows to the
/// arrangement's only from above, so keeping more changes nothing there.
fn shared_retention(attribution: &AttributionConfig, fraud: &FraudConfig) -> AttributionConfig {
    let rule = &fraud.click_without_impression;
    let view_window = if rule.enabled {
        attribution.view_window.max(rule.span())
    } else {
        attribution.view_window
    };
    let horizon = match (attribution.horizon, fraud.horizon) {
        (Some(kept), Some(judged)) => Some(kept.max(judged)),
        _ => None,
    };
    AttributionConfig {
        view_window,
        horizon,
        ..attribution.clone()
    }
}

/// What metrics need of the verdicts: those on touches (impressions and
/// clicks). Only context rules, decided by the event alone, flag
/// impressions, so metrics count them as judged when they arrive and hold
/// (and look up) by key only the touches of kinds a verdict may reach
/// later. That needs each event's key to be its own, which dedup makes it
/// (a copy of an id within its window is a duplicate); with dedup off (a
/// window of zero) two events may share an id and time, and every touch is
/// looked up by key as verdicts name it.
fn metrics_invalid<'scope>(
    verdicts: &VecCollection<'scope, Time, Verdict>,
    config: &AnalyticsConfig,
) -> Invalid<'scope> {
    let judged = config.dedup.window > 0;
    let looked_up = EventKind::ALL.map(|kind| {
        matches!(kind, EventKind::Impression | EventKind::Click)
            && !(judged && config.fraud.judged_on_arrival(kind))
    });
    // Metrics make a set of them: no distinct needed.
    let flagged = verdicts
        .clone()
        .flat_map(move |verdict| looked_up[verdict.kind.index()].then(|| verdict.event()));
    let invalid = Invalid::events(flagged);
    if judged {
        invalid.judged_on_arrival(config.fraud.arrival_judge())
    } else {
        invalid
    }
}

/// Conversions as last touch credits them, in the conversion's own country
/// and device (which its credits carry), and unattributed ones under no
/// campaign.
fn last_touch_conversions<'scope>(
    attribution: &Attribution<'scope>,
) -> VecCollection<'scope, Time, AttributedConversion> {
    let credited = attribution
        .credits
        .clone()
        .filter(|credit| credit.model == Model::LastTouch)
        .map(|credit| AttributedConversion::credited(&credit));
    let unattributed = attribution
        .unattributed
        .clone()
        .map(|lost| AttributedConversion::unattributed(&lost));
    credited.concat(unattributed)
}
