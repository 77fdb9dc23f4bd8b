//! The pipeline's named outputs, defined once for every program: backfill,
//! replay and stream hand [`Analytics::emit`] a [`NamedOutputs`] (files,
//! Kafka topics, a test's capture) and get the same outputs under the same
//! names. [`RoasBoard`] keeps the top-campaigns view they print.
//!
//! | name | record |
//! |---|---|
//! | `metrics_hourly`, `metrics_daily`, `metrics_monthly` | [`MetricsRow`] |
//! | `attribution_<model>` (one per model, see [`attribution_output`]) | [`CampaignDayAttribution`] |
//! | `attribution_credits` | [`Credit`](crate::attribution::Credit) |
//! | `attribution_unattributed` | [`Unattributed`](crate::attribution::Unattributed) |
//! | `fraud_flags` | [`Verdict`](crate::fraud::Verdict) |
//! | `duplicates` | [`Duplicate`](crate::dedup::Duplicate) |
//! | `dead_letters` | [`DeadLetter`] |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use adflow::dead_letter::DeadLetter;
use adflow::event::Id;
use adflow::money::{format_micros, Micros};
use adflow::pipeline::Time;
use adflow::sinks::{table_cell, NamedOutputs};
use differential_dataflow::collection::VecCollection;
use timely::dataflow::operators::{Exchange, Inspect, Probe};
use timely::dataflow::ProbeHandle;

use crate::analytics::Analytics;
use crate::attribution::{roas, CampaignDayAttribution, Model, CONVERSION_MICROS};
use crate::metrics::MetricsRow;

/// The output name of one model's per-(campaign, ad, day) attribution:
/// `attribution_last_touch`, `attribution_time_decay`, …
///
/// ```
/// use adflow_operators::attribution::Model;
/// use adflow_operators::outputs::attribution_output;
/// assert_eq!(attribution_output(&Model::PositionBased), "attribution_position_based");
/// ```
pub fn attribution_output(model: &Model) -> String {
    let stem = match model {
        Model::LastTouch => "last_touch",
        Model::FirstTouch => "first_touch",
        Model::Linear => "linear",
        Model::TimeDecay { .. } => "time_decay",
        Model::PositionBased => "position_based",
    };
    format!("attribution_{stem}")
}

/// Every output name [`Analytics::emit`] gives for these models, in the
/// order it gives them.
pub fn output_names(models: &[Model]) -> Vec<String> {
    let mut names: Vec<String> = ["metrics_hourly", "metrics_daily", "metrics_monthly"]
        .map(String::from)
        .to_vec();
    names.extend(models.iter().map(attribution_output));
    names.extend(
        [
            "attribution_credits",
            "attribution_unattributed",
            "fraud_flags",
            "duplicates",
            "dead_letters",
        ]
        .map(String::from),
    );
    names
}

impl<'scope> Analytics<'scope> {
    /// Gives every output, with the pipeline's dead letters, to `outputs`
    /// under the names of [`output_names`]. `models` are the attribution
    /// models the analytics were built with.
    ///
    /// ```
    /// use adflow::pipeline::Time;
    /// use adflow::sinks::{NamedOutputs, OutputRecord};
    /// use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
    /// use adflow_operators::attribution::Model;
    /// use adflow_operators::outputs::output_names;
    /// use differential_dataflow::collection::VecCollection;
    /// use differential_dataflow::input::Input;
    ///
    /// struct Names(Vec<String>);
    /// impl<'scope> NamedOutputs<'scope> for Names {
    ///     fn output<D: OutputRecord>(&mut self, name: &str, _: VecCollection<'scope, Time, D>) {
    ///         self.0.push(name.to_owned());
    ///     }
    /// }
    ///
    /// let config = AnalyticsConfig::default();
    /// let models = config.attribution.models.clone();
    /// timely::execute_directly(move |worker| {
    ///     worker.dataflow::<Time, _, _>(|scope| {
    ///         let (_events_in, events) = scope.new_collection();
    ///         let (_dead_in, dead_letters) = scope.new_collection();
    ///         let mut names = Names(Vec::new());
    ///         events.analyze(&config).emit(&models, dead_letters, &mut names);
    ///         assert_eq!(names.0, output_names(&models));
    ///         assert!(names.0.contains(&"attribution_linear".to_owned()));
    ///     });
    /// });
    /// ```
    pub fn emit(
        self,
        models: &[Model],
        dead_letters: VecCollection<'scope, Time, DeadLetter>,
        outputs: &mut impl NamedOutputs<'scope>,
    ) {
        outputs.output("metrics_hourly", self.metrics.hourly);
        outputs.output("metrics_daily", self.metrics.daily);
        outputs.output("metrics_monthly", self.metrics.monthly);
        for model in models {
            let model = *model;
            let rows = self
                .attribution
                .by_campaign_day
                .clone()
                .filter(move |row| row.model == model);
            outputs.output(&attribution_output(&model), rows);
        }
        outputs.output("attribution_credits", self.attribution.credits);
        outputs.output("attribution_unattributed", self.attribution.unattributed);
        outputs.output("fraud_flags", self.verdicts);
        outputs.output("duplicates", self.duplicates);
        outputs.output("dead_letters", dead_letters);
    }
}

/// Campaigns ranked by return on ad spend, per model: cost from the daily
/// metrics, attributed revenue and conversions from attribution, both kept
/// current from their changelogs (so a live view shows corrections too).
///
/// Every worker's updates go to worker 0 of the cluster, so the board of
/// process 0 sees every campaign; other processes' boards stay empty.
#[derive(Clone, Debug, Default)]
pub struct RoasBoard {
    totals: Arc<Mutex<Totals>>,
}

#[derive(Debug, Default)]
struct Totals {
    cost: BTreeMap<Id, Micros>,
    /// (revenue, conversion micros) per (model, campaign).
    attributed: BTreeMap<(Model, Id), (Micros, i64)>,
}

/// One campaign's line on a [`RoasBoard`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CampaignRoas {
    /// The campaign.
    pub campaign_id: Id,
    /// Attributed conversions (fractional under multi-touch models).
    pub conversions: f64,
    /// Attributed revenue.
    pub revenue_micros: Micros,
    /// Media cost of all its events.
    pub cost_micros: Micros,
    /// Revenue over cost; infinite without cost.
    pub roas: f64,
}

/// All campaigns of one model on a [`RoasBoard`], summed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ModelTotals {
    /// Attributed conversions.
    pub conversions: f64,
    /// Attributed revenue.
    pub revenue_micros: Micros,
    /// Media cost of every campaign.
    pub cost_micros: Micros,
}

impl ModelTotals {
    /// Revenue over cost, if there is cost.
    pub fn roas(&self) -> Option<f64> {
        roas(self.revenue_micros, self.cost_micros)
    }
}

impl RoasBoard {
    /// Follows `analytics`' daily metrics and attribution; attaches the
    /// followers to `probe`, so a finished run has updated the board.
    pub fn watch(&self, analytics: &Analytics<'_>, probe: &ProbeHandle<Time>) {
        let totals = Arc::clone(&self.totals);
        analytics
            .metrics
            .daily
            .inner
            .clone()
            .exchange(|_| 0)
            .inspect(move |(row, _time, diff): &(MetricsRow, Time, isize)| {
                if let Some(campaign) = row.campaign_id {
                    *lock(&totals).cost.entry(campaign).or_default() +=
                        row.cost_micros * *diff as i64;
                }
            })
            .probe_with(probe);
        let totals = Arc::clone(&self.totals);
        analytics
            .attribution
            .by_campaign_day
            .inner
            .clone()
            .exchange(|_| 0)
            .inspect(
                move |(row, _time, diff): &(CampaignDayAttribution, Time, isize)| {
                    let mut totals = lock(&totals);
                    let entry = totals
                        .attributed
                        .entry((row.model, row.campaign_id))
                        .or_default();
                    entry.0 += row.revenue_micros * *diff as i64;
                    entry.1 += row.conversion_micros * *diff as i64;
                },
            )
            .probe_with(probe);
    }

    /// The `count` campaigns with the highest ROAS under `model`, ties by
    /// campaign id.
    pub fn top(&self, model: &Model, count: usize) -> Vec<CampaignRoas> {
        let totals = lock(&self.totals);
        let mut rows: Vec<CampaignRoas> = totals
            .attributed
            .iter()
            .filter(|((m, _), _)| m == model)
            .map(
                |(&(_, campaign_id), &(revenue_micros, conversion_micros))| {
                    let cost_micros = totals.cost.get(&campaign_id).copied().unwrap_or(0);
                    CampaignRoas {
                        campaign_id,
                        conversions: conversion_micros as f64 / CONVERSION_MICROS as f64,
                        revenue_micros,
                        cost_micros,
                        roas: roas(revenue_micros, cost_micros).unwrap_or(f64::INFINITY),
                    }
                },
            )
            .collect();
        rows.sort_by(|a, b| {
            b.roas
                .total_cmp(&a.roas)
                .then(a.campaign_id.cmp(&b.campaign_id))
        });
        rows.truncate(count);
        rows
    }

    /// Every campaign of `model` summed: what the whole log has returned so far.
    pub fn totals(&self, model: &Model) -> ModelTotals {
        let totals = lock(&self.totals);
        let (revenue_micros, conversion_micros) = totals
            .attributed
            .iter()
            .filter(|((m, _), _)| m == model)
            .fold((0, 0), |(revenue, conversions), (_, (r, c))| {
                (revenue + r, conversions + c)
            });
        ModelTotals {
            conversions: conversion_micros as f64 / CONVERSION_MICROS as f64,
            revenue_micros,
            cost_micros: totals.cost.values().sum(),
        }
    }

    /// The top `count` campaigns of each model as text tables, each
    /// campaign by its name ([`adflow::names::id_text`]).
    pub fn render(&self, models: &[Model], count: usize) -> String {
        let mut text = String::new();
        for model in models {
            let rows: Vec<(String, CampaignRoas)> = self
                .top(model, count)
                .into_iter()
                .map(|row| (table_cell(&adflow::names::id_text(row.campaign_id)), row))
                .collect();
            // Wide enough for the longest name, so the columns stay aligned.
            let width = rows
                .iter()
                .map(|(name, _)| name.chars().count())
                .max()
                .unwrap_or(0)
                .max(18);
            let _ = writeln!(text, "\n  top campaigns by ROAS, {model}");
            let _ = writeln!(
                text,
                "  {:<width$} {:>12} {:>14} {:>14} {:>8}",
                "campaign", "conversions", "revenue", "cost", "ROAS"
            );
            for (name, row) in rows {
                let _ = writeln!(
                    text,
                    "  {:<width$} {:>12.2} {:>14} {:>14} {:>8.2}",
                    name,
                    row.conversions,
                    format_micros(row.revenue_micros),
                    format_micros(row.cost_micros),
                    row.roas
                );
            }
        }
        text
    }
}

fn lock(totals: &Mutex<Totals>) -> MutexGuard<'_, Totals> {
    totals.lock().unwrap_or_else(|e| e.into_inner())
}
