//! Precision and recall of every fraud rule against adgen's ground-truth
//! labels, on 300K generated events (seed 7) at the default anomaly rates,
//! with the dataflow checked against the reference on the same events; and
//! again (reference only) with the rarer anomalies injected ten times as
//! often, so that their precision and recall rest on hundreds of events
//! rather than a handful.
//!
//! The measured table lives in `docs/fraud.md` between the
//! `fraud-labels` markers; this test fails if it is stale. Regenerate it:
//!
//! ```text
//! FRAUD_LABELS_WRITE=1 cargo test -p adflow-operators --test fraud_labels
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use adflow::event::{Event, EventId, EventKind};
use adflow::parsing::EventValidator;
use adflow::pipeline::TimeConfig;
use adflow_datagen::{Anomaly, AnomalyRates, Generator, GeneratorConfig};
use adflow_operators::fraud::{FraudConfig, FraudExt, Rule, Verdict};
use adflow_operators::reference::fraud::flag_fraud;
use adflow_operators::testing::{multiset, run, Feed};

const EVENTS: u64 = 300_000;
const SEED: u64 = 7;
const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/fraud.md");
const BEGIN: &str = "<!-- fraud-labels:begin -->";
const END: &str = "<!-- fraud-labels:end -->";

/// adgen's click-fraud labels: the clicks a genuine user did not make.
/// Genuine clicks always get page views; these never do.
const CLICK_FRAUD: [Anomaly; 5] = [
    Anomaly::ClickFlood,
    Anomaly::BotUserAgent,
    Anomaly::DatacenterIp,
    Anomaly::ClickInjection,
    Anomaly::ClickWithoutImpression,
];

/// The labels a rule is meant to find, and the kinds of event they mark.
fn targets(rule: Rule) -> (&'static [Anomaly], Option<EventKind>) {
    match rule {
        Rule::ClickFloodIp | Rule::ClickFloodUser | Rule::DeviceVelocity => {
            (&[Anomaly::ClickFlood], None)
        }
        Rule::BotUserAgent => (&[Anomaly::BotUserAgent], None),
        Rule::MissingUserAgent => (&[Anomaly::MissingUserAgent], None),
        Rule::BlockedIp => (&[], None),
        Rule::DatacenterIp => (&[Anomaly::DatacenterIp], None),
        Rule::GeoMismatch => (&[Anomaly::GeoMismatch], None),
        Rule::ClickInjection => (&[Anomaly::ClickInjection], None),
        Rule::ClickWithoutImpression => (&[Anomaly::ClickWithoutImpression], None),
        Rule::NoPageView => (&CLICK_FRAUD, Some(EventKind::Click)),
    }
}

/// The generated events, deduplicated by event id (fraud runs after dedup,
/// `docs/operators.md`), in arrival order; the labels of every id (a
/// resend's labels are its original's); the kind of every id.
struct Labelled {
    events: Vec<Event>,
    labels: BTreeMap<EventId, BTreeSet<Anomaly>>,
    kinds: BTreeMap<EventId, EventKind>,
}

/// Default rates, except the rare anomalies at about ten times theirs.
fn elevated() -> AnomalyRates {
    AnomalyRates {
        click_floods_per_million: 30.0,
        datacenter_clicks: 0.1,
        click_injection: 0.5,
        clicks_without_impression: 0.1,
        geo_mismatch: 0.3,
        ..AnomalyRates::default()
    }
}

fn generate(anomalies: AnomalyRates) -> Labelled {
    let config = GeneratorConfig {
        seed: SEED,
        events: EVENTS,
        anomalies,
        ..GeneratorConfig::default()
    };
    let mut validator = EventValidator::default();
    let mut labelled = Labelled {
        events: Vec::new(),
        labels: BTreeMap::new(),
        kinds: BTreeMap::new(),
    };
    for generated in Generator::new(config) {
        let event = match validator.validate_record(&generated.record) {
            Ok(event) => event,
            Err(rejection) => panic!("adgen wrote an invalid row: {rejection:?}"),
        };
        assert_eq!(event.event_id, EventId::of(&generated.record.event_id));
        labelled
            .labels
            .entry(event.event_id)
            .or_default()
            .extend(generated.labels.iter().map(|label| label.anomaly));
        if labelled.kinds.insert(event.event_id, event.kind).is_none() {
            labelled.events.push(event);
        }
    }
    labelled
}

fn config() -> FraudConfig {
    let cidrs = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../datasets/fixtures/datacenter_cidrs.txt"
    );
    FraudConfig {
        datacenter_cidrs: FraudConfig::load_datacenter_cidrs(cidrs).expect("the fixture loads"),
        ..FraudConfig::default()
    }
}

/// One row of the table.
struct Score {
    rule: Rule,
    flagged: usize,
    labelled: usize,
    hits: usize,
    any_fraud: usize,
}

impl Score {
    fn precision(&self) -> Option<f64> {
        ratio(self.hits, self.flagged)
    }
    fn recall(&self) -> Option<f64> {
        ratio(self.hits, self.labelled)
    }
    fn precision_any(&self) -> Option<f64> {
        ratio(self.any_fraud, self.flagged)
    }
}

fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn score(labelled: &Labelled, verdicts: &[Verdict]) -> Vec<Score> {
    let fraud: BTreeSet<EventId> = labelled
        .labels
        .iter()
        .filter(|(_, labels)| labels.iter().any(|label| label.is_fraud()))
        .map(|(event_id, _)| *event_id)
        .collect();
    Rule::ALL
        .into_iter()
        .map(|rule| {
            let (labels, kind) = targets(rule);
            let truth: BTreeSet<EventId> = labelled
                .labels
                .iter()
                .filter(|(event_id, seen)| {
                    seen.iter().any(|label| labels.contains(label))
                        && kind.is_none_or(|kind| labelled.kinds.get(event_id) == Some(&kind))
                })
                .map(|(event_id, _)| *event_id)
                .collect();
            let flagged: BTreeSet<EventId> = verdicts
                .iter()
                .filter(|verdict| verdict.rule == rule)
                .map(|verdict| verdict.event_id)
                .collect();
            Score {
                rule,
                flagged: flagged.len(),
                labelled: truth.len(),
                hits: flagged.intersection(&truth).count(),
                any_fraud: flagged.intersection(&fraud).count(),
            }
        })
        .collect()
}

/// A ratio in percent, rounded *down* to 0.1% so that only an exact 1 reads 100.0%.
fn percent(value: Option<f64>) -> String {
    value.map_or_else(
        || "n/a".to_owned(),
        |value| format!("{:.1}%", (1000.0 * value).floor() / 10.0),
    )
}

fn table(title: &str, labelled: &Labelled, scores: &[Score]) -> String {
    let mut text = String::new();
    let count = |kind: EventKind| {
        labelled
            .kinds
            .values()
            .filter(|seen| **seen == kind)
            .count()
    };
    let _ = writeln!(
        text,
        "{title}: {} events after dedup ({} clicks, {} conversions).\n",
        labelled.events.len(),
        count(EventKind::Click),
        count(EventKind::Conversion),
    );
    text.push_str("| rule | adgen label(s) | flagged | labelled | both | precision | recall | precision vs any fraud label |\n");
    text.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for score in scores {
        let (labels, kind) = targets(score.rule);
        let mut names: Vec<String> = labels.iter().map(|label| format!("`{label}`")).collect();
        if names.is_empty() {
            names.push("none injected".to_owned());
        }
        let mut targets = names.join(", ");
        if let Some(kind) = kind {
            targets.push_str(&format!(" ({kind}s)"));
        }
        let _ = writeln!(
            text,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            score.rule,
            targets,
            score.flagged,
            score.labelled,
            score.hits,
            percent(score.precision()),
            percent(score.recall()),
            percent(score.precision_any()),
        );
    }
    text
}

/// Asserts a rule's precision (against its own labels, or against any
/// fraud label) and recall floors.
fn at_least(
    scores: &[Score],
    rule: Rule,
    precision: f64,
    any_fraud: f64,
    recall: f64,
    table: &str,
) {
    let score = scores
        .iter()
        .find(|score| score.rule == rule)
        .expect("every rule scored");
    assert!(score.flagged > 0, "{rule} flags nothing\n{table}");
    let p = score.precision().unwrap_or(0.0);
    let a = score.precision_any().unwrap_or(0.0);
    let r = score.recall().unwrap_or(0.0);
    assert!(
        p >= precision,
        "{rule}: precision {p:.3} < {precision}\n{table}"
    );
    assert!(
        a >= any_fraud,
        "{rule}: precision vs any fraud {a:.3} < {any_fraud}\n{table}"
    );
    assert!(r >= recall, "{rule}: recall {r:.3} < {recall}\n{table}");
}

#[test]
fn precision_and_recall_against_adgen_labels() {
    let config = config();

    // Default rates. The dataflow (2 workers, adgen's arrival order with its
    // late and out-of-order rows, hourly ticks, a one-hour watermark lag)
    // agrees with the reference.
    let labelled = generate(AnomalyRates::default());
    let feed = Feed {
        workers: 2,
        batch: 20_000,
        time: TimeConfig::backfill(),
        deletions: Vec::new(),
        every_worker_reads: false,
    };
    let in_dataflow = config.clone();
    let outcome = run(&feed, &labelled.events, move |events| {
        events.flag_fraud(&in_dataflow).verdicts
    });
    assert_eq!(outcome.admitted.len(), labelled.events.len());
    let verdicts = flag_fraud(&outcome.admitted, &config);
    assert!(
        outcome.output == multiset(verdicts.iter().cloned()),
        "dataflow and reference disagree on adgen events"
    );
    let scores = score(&labelled, &verdicts);
    let default_table = table(
        &format!("Default anomaly rates (`GeneratorConfig {{ seed: {SEED}, events: {EVENTS}, ..default() }}`)"),
        &labelled,
        &scores,
    );
    println!("{default_table}");
    // Rules whose anomaly adgen injects exactly find all of it and nothing
    // else; the others are discussed in docs/fraud.md.
    let floors = |scores: &[Score], table: &str, cwi_precision: f64| {
        at_least(scores, Rule::ClickFloodIp, 0.99, 0.99, 0.99, table);
        at_least(scores, Rule::ClickFloodUser, 0.99, 0.99, 0.9, table);
        at_least(scores, Rule::DeviceVelocity, 0.99, 0.99, 0.95, table);
        at_least(scores, Rule::BotUserAgent, 0.999, 0.999, 0.999, table);
        at_least(scores, Rule::MissingUserAgent, 0.999, 0.999, 0.999, table);
        at_least(scores, Rule::DatacenterIp, 0.999, 0.999, 0.999, table);
        at_least(scores, Rule::GeoMismatch, 0.99, 0.99, 0.99, table);
        at_least(scores, Rule::ClickInjection, 0.95, 0.95, 0.99, table);
        // Injected clicks (on an ad the user was never shown) have no
        // impression either: flagged, but labelled `click_injection`.
        at_least(
            scores,
            Rule::ClickWithoutImpression,
            cwi_precision,
            0.95,
            0.99,
            table,
        );
        at_least(scores, Rule::NoPageView, 0.9, 0.95, 0.95, table);
    };
    floors(&scores, &default_table, 0.8);

    // Elevated rates, reference only (proven equal above and by the
    // property tests).
    let labelled = generate(elevated());
    let verdicts = flag_fraud(&labelled.events, &config);
    let scores = score(&labelled, &verdicts);
    let elevated_table = table(
        "Elevated rates (the same, with `click_floods_per_million: 30, datacenter_clicks: 0.1, \
         click_injection: 0.5, clicks_without_impression: 0.1, geo_mismatch: 0.3`)",
        &labelled,
        &scores,
    );
    println!("{elevated_table}");
    floors(&scores, &elevated_table, 0.3);

    let measured = format!("{default_table}\n{elevated_table}");
    // The table in docs/fraud.md is this run's.
    let doc = std::fs::read_to_string(DOC).unwrap_or_default();
    let block = format!("{BEGIN}\n{measured}{END}");
    let current = doc
        .find(BEGIN)
        .zip(doc.find(END))
        .map(|(begin, end)| &doc[begin..end + END.len()]);
    if std::env::var_os("FRAUD_LABELS_WRITE").is_some() {
        let Some(current) = current else {
            panic!("docs/fraud.md has no {BEGIN} … {END} block to replace");
        };
        std::fs::write(DOC, doc.replacen(current, &block, 1)).expect("write docs/fraud.md");
    } else {
        assert!(
            current == Some(block.as_str()),
            "docs/fraud.md's table is stale; regenerate it with\n  \
             FRAUD_LABELS_WRITE=1 cargo test -p adflow-operators --test fraud_labels\n{measured}"
        );
    }
}
