//! The whole pipeline (`analyze`: dedup → fraud → attribution → metrics)
//! against its sequential reference, the family references composed the
//! same way: random streams on the shared harness (shuffled arrival,
//! batches, lateness, deletions, 1 and 2 workers), with thresholds scaled to
//! the small domain so that fraud verdicts are common and move credit and
//! cost; and with the stream's horizon, which retires state and freezes
//! results.
//!
//! ```text
//! cargo test -p adflow-operators --test analytics
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use adflow::event::{Country, DeviceType, Event, EventKind, Id};
use adflow::pipeline::TimeConfig;
use adflow::timestamp::{DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
use adflow_operators::attribution::{AttributionConfig, Model, CONVERSION_MICROS};
use adflow_operators::dedup::DedupConfig;
use adflow_operators::fraud::{CountRule, FraudConfig, IpNetwork, WindowRule};
use adflow_operators::metrics::Granularity;
use adflow_operators::reference::analytics::{analyze, AnalyticsRow};
use adflow_operators::reference::dedup::dedup;
use adflow_operators::testing::{analytics_rows, arb_events, arb_feed, multiset, run, Feed};
use proptest::prelude::*;

/// Every rule on, scaled to `arb_events` (4 IPs, 6 users, ~20 clicks over
/// three days), so that most streams have verdicts of several rules.
fn config() -> AnalyticsConfig {
    let count = |window, threshold| CountRule {
        enabled: true,
        window,
        threshold,
    };
    let window = |window| WindowRule {
        enabled: true,
        window,
    };
    let network: Option<IpNetwork> = "10.0.0.3".parse().ok();
    AnalyticsConfig {
        dedup: DedupConfig {
            window: 6 * HOUR_MS,
            horizon: None,
        },
        fraud: FraudConfig {
            click_flood_ip: count(HOUR_MS, 2),
            click_flood_user: count(7 * HOUR_MS, 3),
            device_velocity: count(MINUTE_MS, 1),
            geo_mismatch: window(DAY_MS),
            click_injection: window(10 * SECOND_MS),
            click_without_impression: window(HOUR_MS),
            no_page_view: window(HOUR_MS),
            blocked_ips: BTreeSet::from([IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))]),
            datacenter_cidrs: network.into_iter().collect(),
            ..FraudConfig::default()
        },
        attribution: AttributionConfig {
            models: vec![
                Model::FirstTouch,
                Model::Linear,
                Model::TimeDecay {
                    half_life: 6 * HOUR_MS,
                },
                Model::PositionBased,
            ],
            click_window: DAY_MS,
            view_window: 2 * HOUR_MS,
            horizon: None,
        },
        ..AnalyticsConfig::default()
    }
}

fn events_and_feed() -> impl Strategy<Value = (Vec<Event>, Feed)> {
    arb_events(80).prop_flat_map(|events| {
        let len = events.len();
        (Just(events), arb_feed(len))
    })
}

/// Runs `analyze` on the harness and compares every output with the reference.
fn check(events: &[Event], feed: &Feed, config: AnalyticsConfig) -> Result<(), TestCaseError> {
    let in_dataflow = config.clone();
    let outcome = run(feed, events, move |events| {
        analytics_rows(events.analyze(&in_dataflow))
    });
    let expected = multiset(analyze(&outcome.admitted, &config));
    prop_assert!(
        outcome.output == expected,
        "dataflow and reference differ in:\n{}",
        difference(&outcome.output, &expected)
    );
    Ok(())
}

/// The rows whose multiplicities differ, one per line, for a readable failure.
fn difference(
    dataflow: &BTreeMap<AnalyticsRow, isize>,
    reference: &BTreeMap<AnalyticsRow, isize>,
) -> String {
    let rows: BTreeSet<&AnalyticsRow> = dataflow.keys().chain(reference.keys()).collect();
    rows.into_iter()
        .filter(|row| dataflow.get(*row) != reference.get(*row))
        .map(|row| {
            format!(
                "dataflow {:?}, reference {:?}: {row:?}",
                dataflow.get(row),
                reference.get(row)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Backfill time (no horizon): every output equals the reference.
    #[test]
    fn pipeline_matches_reference((events, feed) in events_and_feed()) {
        check(&events, &feed, config())?;
    }

    /// With a horizon longer than the stream's lateness, as in streaming:
    /// state is retired and results frozen, and nothing changes. Every
    /// family's horizon is the pipeline's, as `with_horizon_of` sets it.
    /// Exact when nothing is admitted or deleted beyond the horizon: the
    /// clock dead-letters late events; deletions are not made. Ids are
    /// reused by different events days apart: verdicts find an event by
    /// id and time, so nothing reaches an event whose rows the horizon
    /// already froze.
    #[test]
    fn pipeline_with_horizon_matches_reference((events, mut feed) in events_and_feed()) {
        feed.deletions.clear();
        feed.time = TimeConfig {
            horizon: Some(DAY_MS),
            allowed_lateness: feed.time.allowed_lateness.map(|lateness| lateness.min(6 * HOUR_MS)),
            ..feed.time
        };
        check(&events, &feed, config().with_horizon_of(&feed.time))?;
    }

    /// Dedup off (a window of zero): copies and events sharing an id and a
    /// time all count, and verdicts, which name events by id and time,
    /// reach every one of them, as in the reference.
    #[test]
    fn pipeline_without_dedup_matches_reference((events, feed) in events_and_feed()) {
        let mut config = config();
        config.dedup.window = 0;
        check(&events, &feed, config)?;
    }

    /// Metrics and attribution reconcile, with dedup on or off: every
    /// model credits as much revenue and as many conversions as metrics
    /// count, which are those of the conversions dedup kept, each copy
    /// counted; and metrics' conversions in each hour, campaign, ad,
    /// country and device are exactly last touch's credits there. Checked
    /// on the dataflow's output and on the reference's, so that the
    /// reference is not merely agreeing with a shared mistake.
    #[test]
    fn metrics_and_attribution_reconcile(
        (events, feed) in events_and_feed(),
        dedup_off in any::<bool>(),
    ) {
        let mut config = config();
        if dedup_off {
            config.dedup.window = 0;
        }
        let in_dataflow = config.clone();
        let outcome = run(&feed, &events, move |events| {
            analytics_rows(events.analyze(&in_dataflow))
        });
        let (unique, _) = dedup(&outcome.admitted, &config.dedup);
        let converted = unique
            .iter()
            .filter(|event| event.kind == EventKind::Conversion)
            .filter(|event| event.user_id.is_some() || event.device_id.is_some())
            .fold((0, 0), |(conversions, revenue), event| {
                (conversions + CONVERSION_MICROS, revenue + event.revenue_micros)
            });
        reconciles(&outcome.output, converted)?;
        reconciles(&multiset(analyze(&outcome.admitted, &config)), converted)?;
    }
}

/// Metrics cell: hour, campaign, ad, country, device.
type Cell = (i64, Option<Id>, Option<Id>, Country, DeviceType);

/// `(micro-conversions, revenue micros)` per cell, zero cells left out.
fn by_cell(rows: impl IntoIterator<Item = (Cell, (i64, i64))>) -> BTreeMap<Cell, (i64, i64)> {
    let mut cells: BTreeMap<Cell, (i64, i64)> = BTreeMap::new();
    for (cell, (conversions, revenue)) in rows {
        let entry = cells.entry(cell).or_default();
        entry.0 += conversions;
        entry.1 += revenue;
    }
    cells.retain(|_, totals| *totals != (0, 0));
    cells
}

/// The reconciliation of `metrics_and_attribution_reconcile` on one
/// output multiset, `converted` being the (micro-conversions, revenue) of
/// the conversions it must account for.
fn reconciles(
    rows: &BTreeMap<AnalyticsRow, isize>,
    converted: (i64, i64),
) -> Result<(), TestCaseError> {
    let times = |count: isize| i64::try_from(count).unwrap_or(i64::MAX);
    let hour = |ts: i64| Granularity::Hour.bucket(ts);
    let metrics = by_cell(rows.iter().filter_map(|(row, &count)| match row {
        AnalyticsRow::Metrics(m) if m.granularity == Granularity::Hour => Some((
            (m.bucket, m.campaign_id, m.ad_id, m.country, m.device_type),
            (
                m.conversions_micros * times(count),
                m.revenue_micros * times(count),
            ),
        )),
        _ => None,
    }));
    let unattributed = rows.iter().filter_map(|(row, &count)| match row {
        AnalyticsRow::Unattributed(lost) => Some((
            (
                hour(lost.conversion_ts),
                None,
                None,
                lost.country,
                lost.device_type,
            ),
            (
                CONVERSION_MICROS * times(count),
                lost.revenue_micros * times(count),
            ),
        )),
        _ => None,
    });
    let credited = |model: Model| {
        rows.iter().filter_map(move |(row, &count)| match row {
            AnalyticsRow::Credit(credit) if credit.model == model => Some((
                (
                    hour(credit.conversion_ts),
                    Some(credit.campaign_id),
                    Some(credit.ad_id),
                    credit.country,
                    credit.device_type,
                ),
                (
                    credit.conversion_credit * times(count),
                    credit.credit_micros * times(count),
                ),
            )),
            _ => None,
        })
    };
    let last_touch = by_cell(credited(Model::LastTouch).chain(unattributed.clone()));
    prop_assert_eq!(
        &last_touch,
        &metrics,
        "last-touch credits per cell against metrics"
    );

    let total = |cells: &BTreeMap<Cell, (i64, i64)>| {
        cells
            .values()
            .fold((0, 0), |sum, totals| (sum.0 + totals.0, sum.1 + totals.1))
    };
    prop_assert_eq!(
        total(&metrics),
        converted,
        "metrics against the conversions kept"
    );
    for model in config().attribution.models {
        let credits = by_cell(credited(model).chain(unattributed.clone()));
        prop_assert_eq!(
            total(&credits),
            total(&metrics),
            "{} against metrics",
            model
        );
        let days: i64 = rows
            .iter()
            .filter_map(|(row, &count)| match row {
                AnalyticsRow::Day(day) if day.model == model => {
                    Some(day.revenue_micros * times(count))
                }
                _ => None,
            })
            .sum();
        let unattributed_revenue: i64 = unattributed.clone().map(|(_, (_, revenue))| revenue).sum();
        prop_assert_eq!(
            days + unattributed_revenue,
            total(&metrics).1,
            "{} days",
            model
        );
    }
    Ok(())
}

/// Dedup off, by hand: two copies of one conversion are two conversions
/// in metrics and in attribution alike, and two different conversions
/// sharing an id and a time are each credited in their own country.
#[test]
fn without_dedup_copies_count_alike_everywhere() {
    use adflow::parsing::{json::parse_json, EventValidator};
    let conversion = |country: &str, revenue: u32| {
        format!(
            r#"{{"event_id":"o1","kind":"conversion","ts":"2026-11-01T11:00:00Z","user_id":"u","user_agent":"Mozilla/5.0","revenue":{revenue},"country":"{country}"}}"#
        )
    };
    // A valid click: an impression before it, a page view after it.
    let touch = [
        r#"{"event_id":"i1","kind":"impression","ts":"2026-11-01T10:00:00Z","user_id":"u","user_agent":"Mozilla/5.0","campaign_id":"c","ad_id":"a","cost":0.01}"#,
        r#"{"event_id":"k1","kind":"click","ts":"2026-11-01T10:00:05Z","user_id":"u","user_agent":"Mozilla/5.0","campaign_id":"c","ad_id":"a","cost":0.5}"#,
        r#"{"event_id":"v1","kind":"page_view","ts":"2026-11-01T10:00:09Z","user_id":"u","user_agent":"Mozilla/5.0"}"#,
    ]
    .map(str::to_owned);
    let parse = |lines: &[String]| -> Vec<Event> {
        lines
            .iter()
            .filter_map(|line| {
                parse_json(line.as_bytes())
                    .and_then(|raw| EventValidator::default().validate(&raw))
                    .ok()
            })
            .collect()
    };
    let mut config = AnalyticsConfig::default();
    config.dedup.window = 0;
    config.attribution.models = vec![Model::LastTouch];
    // Revenue per country of the hourly metrics, and of the last-touch credits.
    let revenue = |rows: &[AnalyticsRow]| {
        let mut metrics: BTreeMap<String, i64> = BTreeMap::new();
        let mut credits: BTreeMap<String, i64> = BTreeMap::new();
        for row in rows {
            match row {
                AnalyticsRow::Metrics(m) if m.granularity == Granularity::Hour => {
                    *metrics.entry(m.country.as_str().to_owned()).or_default() += m.revenue_micros;
                }
                AnalyticsRow::Credit(credit) => {
                    *credits
                        .entry(credit.country.as_str().to_owned())
                        .or_default() += credit.credit_micros;
                }
                _ => {}
            }
        }
        metrics.retain(|_, revenue| *revenue != 0);
        (metrics, credits)
    };

    let copies = parse(&[&touch[..], &[conversion("DE", 20), conversion("DE", 20)]].concat());
    assert_eq!(copies.len(), 5);
    let (metrics, credits) = revenue(&analyze(&copies, &config));
    let both = BTreeMap::from([("DE".to_owned(), 40_000_000)]);
    assert_eq!((&metrics, &credits), (&both, &both));

    let different = parse(&[&touch[..], &[conversion("DE", 20), conversion("FR", 30)]].concat());
    assert_eq!(different.len(), 5);
    let (metrics, credits) = revenue(&analyze(&different, &config));
    let apart = BTreeMap::from([("DE".to_owned(), 20_000_000), ("FR".to_owned(), 30_000_000)]);
    assert_eq!((&metrics, &credits), (&apart, &apart));

    // The dataflow agrees, on one and two workers.
    for events in [copies, different] {
        let expected = multiset(analyze(&events, &config));
        for workers in [1, 2] {
            let in_dataflow = config.clone();
            let feed = Feed {
                workers,
                ..Feed::one_batch()
            };
            let outcome = run(&feed, &events, move |events| {
                analytics_rows(events.analyze(&in_dataflow))
            });
            assert_eq!(outcome.output, expected, "{workers} workers");
        }
    }
}

/// The reference itself on a hand-made case, so that a bug shared by the
/// reference and the dataflow through a common helper would still show.
#[test]
fn reference_counts_a_click_and_its_conversion() {
    use adflow::parsing::{json::parse_json, EventValidator};
    let lines = [
        r#"{"event_id":"i1","kind":"impression","ts":"2026-11-01T10:00:00Z","user_id":"u","user_agent":"Mozilla/5.0","campaign_id":"c","ad_id":"a","cost":0.01}"#,
        r#"{"event_id":"k1","kind":"click","ts":"2026-11-01T10:00:05Z","user_id":"u","user_agent":"Mozilla/5.0","campaign_id":"c","ad_id":"a","cost":0.5}"#,
        r#"{"event_id":"v1","kind":"page_view","ts":"2026-11-01T10:00:09Z","user_id":"u","user_agent":"Mozilla/5.0"}"#,
        r#"{"event_id":"o1","kind":"conversion","ts":"2026-11-01T11:00:00Z","user_id":"u","user_agent":"Mozilla/5.0","revenue":20,"order_id":"A"}"#,
    ];
    let events: Vec<Event> = lines
        .iter()
        .filter_map(|line| {
            parse_json(line.as_bytes())
                .and_then(|raw| EventValidator::default().validate(&raw))
                .ok()
        })
        .collect();
    assert_eq!(events.len(), 4);
    let rows = analyze(&events, &AnalyticsConfig::default());
    let metrics: Vec<_> = rows
        .iter()
        .filter_map(|row| match row {
            AnalyticsRow::Metrics(row) => Some(*row),
            _ => None,
        })
        .collect();
    // Hour 10: the impression and the click; hour 11: the conversion (in
    // Germany, credited to c/a).
    let revenue: i64 = metrics
        .iter()
        .filter(|row| row.granularity == adflow_operators::metrics::Granularity::Hour)
        .map(|row| row.revenue_micros)
        .sum();
    assert_eq!(revenue, 20_000_000);
    let clicks: i64 = metrics
        .iter()
        .filter(|row| row.granularity == adflow_operators::metrics::Granularity::Day)
        .map(|row| row.valid_clicks)
        .sum();
    assert_eq!(clicks, 1);
    let verdicts: Vec<_> = rows
        .iter()
        .filter(|row| matches!(row, AnalyticsRow::Verdict(_)))
        .collect();
    assert!(verdicts.is_empty(), "{verdicts:?}");
}
