//! The fraud family against its sequential reference: random streams on
//! the shared harness (shuffled arrival, batches, lateness, deletions, 1 and
//! 2 workers) with windows and thresholds scaled to the small domain so
//! every rule fires; the same with a horizon (retired state, frozen
//! verdicts); and explicit incremental stories: a flood flagged once it
//! crosses its threshold, a page view that clears a click, a conversion
//! that convicts the click just before it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use adflow::event::{Country, Event, EventId, EventKind};
use adflow::pipeline::{Time, TimeConfig};
use adflow::timestamp::{Millis, DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
use adflow_operators::fraud::{
    event_key, CountRule, EventKey, FraudConfig, FraudExt, IpNetwork, Rule, Verdict, WindowRule,
};
use adflow_operators::reference::fraud::{flag_fraud, invalid_events};
use adflow_operators::testing::{arb_events, arb_feed, id, multiset, run, Feed, START};
use differential_dataflow::collection::{AsCollection, VecCollection};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;

/// Both outputs of the operator in one collection, for the harness.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Out {
    Verdict(Verdict),
    Invalid(EventKey),
}

fn flagged<'s>(
    events: VecCollection<'s, Time, Event>,
    config: &FraudConfig,
) -> VecCollection<'s, Time, Out> {
    let fraud = events.flag_fraud(config);
    fraud
        .verdicts
        .map(Out::Verdict)
        .concat(fraud.invalid.map(Out::Invalid))
}

/// What the reference says the final output is.
fn expected(admitted: &[Event], config: &FraudConfig) -> BTreeMap<Out, isize> {
    let verdicts = flag_fraud(admitted, config);
    let ids = invalid_events(&verdicts);
    multiset(
        verdicts
            .into_iter()
            .map(Out::Verdict)
            .chain(ids.into_iter().map(Out::Invalid)),
    )
}

fn count_rule(enabled: bool, window: Millis, threshold: i64) -> CountRule {
    CountRule {
        enabled,
        window,
        threshold,
    }
}

fn window_rule(enabled: bool, window: Millis) -> WindowRule {
    WindowRule { enabled, window }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

/// Rules scaled to `arb_events` (4 IPs, 6 users, ~20 clicks over three
/// days): windows of minutes to days, thresholds of a few clicks; each rule
/// on in most cases; a blocklist and a datacenter range over the 4 IPs; an
/// extra bot agent (the hash of one of the three agents).
fn arb_config() -> impl Strategy<Value = FraudConfig> {
    let windows = prop_oneof![
        Just(MINUTE_MS),
        Just(HOUR_MS),
        Just(7 * HOUR_MS),
        Just(DAY_MS),
        Just(3 * DAY_MS)
    ];
    let count = (proptest::bool::weighted(0.8), windows.clone(), 0i64..4)
        .prop_map(|(enabled, window, threshold)| count_rule(enabled, window, threshold));
    let sequence = (
        proptest::bool::weighted(0.8),
        prop_oneof![Just(0), Just(10 * SECOND_MS), windows],
    )
        .prop_map(|(enabled, window)| window_rule(enabled, window));
    // Geo mismatch and click injection need a conversion near a click of
    // the same user: longer windows make that happen in more cases.
    let long = (
        proptest::bool::weighted(0.8),
        prop_oneof![
            Just(10 * SECOND_MS),
            Just(HOUR_MS),
            Just(DAY_MS),
            Just(3 * DAY_MS)
        ],
    )
        .prop_map(|(enabled, window)| window_rule(enabled, window));
    (
        (count.clone(), count.clone(), count),
        (long.clone(), long, sequence.clone(), sequence),
        (
            proptest::bool::weighted(0.8),
            proptest::bool::weighted(0.8),
            proptest::bool::weighted(0.8),
            proptest::bool::weighted(0.8),
        ),
        (
            proptest::collection::btree_set(0u8..4, 0..3),
            prop_oneof![Just("10.0.0.0/31"), Just("10.0.0.3"), Just("192.0.2.0/24")],
            proptest::bool::ANY,
        ),
    )
        .prop_map(
            |(
                (flood_ip, flood_user, velocity),
                (geo, injection, impression, page_view),
                (bot, missing, blocked, datacenter),
                (blocklist, network, extra_bot),
            )| {
                let network: Option<IpNetwork> = network.parse().ok();
                FraudConfig {
                    click_flood_ip: flood_ip,
                    click_flood_user: flood_user,
                    device_velocity: velocity,
                    bot_user_agent: bot,
                    bot_agents: if extra_bot {
                        BTreeSet::from([id(402)])
                    } else {
                        BTreeSet::new()
                    },
                    missing_user_agent: missing,
                    blocked_ip: blocked,
                    blocked_ips: blocklist.into_iter().map(ip).collect(),
                    datacenter_ip: datacenter,
                    datacenter_cidrs: network.into_iter().collect(),
                    geo_mismatch: geo,
                    click_injection: injection,
                    click_without_impression: impression,
                    no_page_view: page_view,
                    horizon: None,
                }
            },
        )
}

/// Events from `arb_events`, their times sometimes rounded down to the
/// minute or the hour, so that ties, copies at one time and evidence
/// exactly at a window's edge are common.
fn arb_case(max: usize) -> impl Strategy<Value = (Vec<Event>, Feed, FraudConfig)> {
    let rounding = prop_oneof![3 => Just(1), 1 => Just(MINUTE_MS), 1 => Just(HOUR_MS)];
    (arb_events(max), rounding)
        .prop_map(|(mut events, rounding)| {
            for event in &mut events {
                event.ts -= event.ts.rem_euclid(rounding);
            }
            events
        })
        .prop_flat_map(|events| {
            let len = events.len();
            (Just(events), arb_feed(len), arb_config())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn dataflow_matches_reference((events, feed, config) in arb_case(70)) {
        let config_in_dataflow = config.clone();
        let outcome = run(&feed, &events, move |events| flagged(events, &config_in_dataflow));
        prop_assert_eq!(outcome.output, expected(&outcome.admitted, &config));
    }

    #[test]
    fn the_arrival_judge_agrees_with_the_reference((events, _feed, config) in arb_case(70)) {
        let verdicts = flag_fraud(&events, &config);
        for verdict in &verdicts {
            prop_assert!(verdict.rule.may_flag(verdict.kind), "{:?}", verdict);
        }
        let invalid = invalid_events(&verdicts);
        // An event judged on arrival is flagged exactly when the reference
        // flags it, unless another event shares its id and time (which
        // dedup rules out): their verdicts could not be told apart.
        let mut sharing: BTreeMap<EventKey, BTreeSet<Event>> = BTreeMap::new();
        for event in &events {
            sharing.entry(event_key(event)).or_default().insert(*event);
        }
        let judge = config.arrival_judge();
        let mut judged = 0;
        for event in &events {
            if sharing[&event_key(event)].len() > 1 {
                continue;
            }
            if let Some(flagged) = judge(event) {
                judged += 1;
                prop_assert_eq!(flagged, invalid.contains(&event_key(event)), "{:?}", event);
            }
        }
        // Impressions and page views are always judged on arrival.
        let always = events
            .iter()
            .filter(|event| matches!(event.kind, EventKind::Impression | EventKind::PageView))
            .filter(|event| sharing[&event_key(event)].len() == 1)
            .count();
        prop_assert!(judged >= always);
    }

    #[test]
    fn with_a_horizon_state_retires_and_verdicts_stay((events, feed, config) in arb_case(70)) {
        // Exact when nothing is admitted or deleted after the horizon: late
        // events are dropped by the clock, deletions are not made.
        let horizon = 2 * HOUR_MS;
        let mut feed = Feed { deletions: Vec::new(), ..feed };
        feed.time.horizon = Some(horizon);
        let config = FraudConfig { horizon: Some(horizon), ..config };
        let config_in_dataflow = config.clone();
        let outcome = run(&feed, &events, move |events| flagged(events, &config_in_dataflow));

        let verdicts = flag_fraud(&outcome.admitted, &config);
        let flagged_events = invalid_events(&verdicts);
        let expected = multiset(
            verdicts
                .into_iter()
                .map(Out::Verdict)
                .chain(flagged_events.into_iter().map(Out::Invalid)),
        );
        prop_assert_eq!(outcome.output, expected);
    }
}

/// Feeds events one at a time in event-time order (each at its own
/// millisecond, the watermark right behind) and returns the changelog:
/// every output record with the time it changed at and the change.
fn changelog(events: &[Event], config: &FraudConfig) -> Vec<((Out, Time), isize)> {
    let feed = Feed {
        workers: 2,
        batch: 1,
        time: TimeConfig {
            tick: 1,
            allowed_lateness: Some(0),
            horizon: None,
            ..TimeConfig::backfill()
        },
        deletions: Vec::new(),
        every_worker_reads: false,
    };
    let config = config.clone();
    let outcome = run(&feed, events, move |events| {
        flagged(events, &config)
            .inner
            .map(|(out, time, diff)| ((out, time), time, diff))
            .as_collection()
    });
    outcome.output.into_iter().collect()
}

fn at(ts: Millis) -> Time {
    Time::try_from(ts).unwrap_or(0)
}

/// A browser click by user `user` on ad 0, from `10.0.0.<ip>`, in the US.
fn click(n: u64, ts: Millis, user: u64, ip_last: u8) -> Event {
    Event {
        ts,
        kind: EventKind::Click,
        event_id: EventId(u128::from(n)),
        user_id: Some(id(user)),
        device_id: Some(id(1_000 + user)),
        campaign_id: Some(id(100)),
        ad_id: Some(id(200)),
        publisher_id: Some(id(300)),
        ip: Some(ip(ip_last)),
        user_agent: Some(id(400)),
        agent: adflow::event::AgentClass::Browser,
        country: Country(*b"US"),
        device_type: adflow::event::DeviceType::Mobile,
        cost_micros: 250_000,
        revenue_micros: 0,
        conversion_type: None,
        order_id: None,
    }
}

fn of_kind(n: u64, ts: Millis, user: u64, kind: EventKind) -> Event {
    let placed = matches!(kind, EventKind::Impression | EventKind::Click);
    Event {
        kind,
        campaign_id: placed.then(|| id(100)),
        ad_id: placed.then(|| id(200)),
        cost_micros: 0,
        ..click(n, ts, user, 1)
    }
}

#[test]
fn a_flood_is_flagged_when_it_crosses_the_threshold_and_then_wholly() {
    // 101 clicks from one IP within a minute, each by another user; the
    // defaults: more than 100 clicks in 60 s.
    let config = FraudConfig::only(&[Rule::ClickFloodIp]);
    let start = START + 7 * SECOND_MS;
    let clicks: Vec<Event> = (0..101)
        .map(|n| click(n, start + 500 * n as Millis, n, 9))
        .collect();
    let crossing = at(start + 500 * 100);
    let log = changelog(&clicks, &config);

    // Nothing is flagged before the 101st click ...
    assert!(
        log.iter().all(|((_, time), _)| *time == crossing),
        "{log:?}"
    );
    // ... at which every click of the flood is, and every id becomes invalid.
    let verdicts: Vec<&Verdict> = log
        .iter()
        .filter_map(|((out, _), diff)| match out {
            Out::Verdict(verdict) if *diff == 1 => Some(verdict),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 101);
    assert!(verdicts
        .iter()
        .all(|verdict| verdict.rule == Rule::ClickFloodIp
            && verdict.key == "10.0.0.9"
            && verdict.count == 101
            && verdict.threshold == 100));
    let invalid: BTreeSet<EventKey> = log
        .iter()
        .filter_map(|((out, _), diff)| match out {
            Out::Invalid(event) if *diff == 1 => Some(*event),
            _ => None,
        })
        .collect();
    assert_eq!(invalid, clicks.iter().map(event_key).collect());
    assert_eq!(log.len(), 202, "no other change: {log:?}");

    // Downstream, valid clicks are the clicks antijoined with `invalid`:
    // they count up to 100 and drop to 0 when the verdict arrives.
    let feed_log = {
        let feed = Feed {
            workers: 1,
            batch: 1,
            time: TimeConfig {
                tick: 1,
                allowed_lateness: Some(0),
                horizon: None,
                ..TimeConfig::backfill()
            },
            deletions: Vec::new(),
            every_worker_reads: false,
        };
        let config = config.clone();
        run(&feed, &clicks, move |events| {
            let invalid = events.clone().flag_fraud(&config).invalid;
            events
                .map(|event| (event_key(&event), ()))
                .antijoin(invalid)
                .map(|((event_id, _), ())| event_id)
                .inner
                .map(|(event_id, time, diff)| ((event_id, time), time, diff))
                .as_collection()
        })
        .output
    };
    let valid_before: isize = feed_log
        .iter()
        .filter(|((_, time), _)| *time < crossing)
        .map(|(_, diff)| diff)
        .sum();
    let valid_after: isize = feed_log.values().sum();
    assert_eq!((valid_before, valid_after), (100, 0));
}

#[test]
fn one_click_short_of_a_flood_is_not_flagged() {
    let config = FraudConfig::only(&[Rule::ClickFloodIp]);
    // 101 clicks, but over 61 s: no window of 60 s holds more than 100.
    let clicks: Vec<Event> = (0..101)
        .map(|n| click(n, START + 610 * n as Millis, n, 9))
        .collect();
    assert!(changelog(&clicks, &config).is_empty());
    assert!(flag_fraud(&clicks, &config).is_empty());
}

#[test]
fn a_flood_across_a_minute_boundary_is_caught_whole() {
    // Sliding, not tumbling: 150 clicks in 30 s, half each side of 10:01.
    let config = FraudConfig::only(&[Rule::ClickFloodIp]);
    let start = START + 10 * HOUR_MS + 45 * SECOND_MS;
    let clicks: Vec<Event> = (0..150)
        .map(|n| click(n, start + 200 * n as Millis, n, 9))
        .collect();
    let verdicts = flag_fraud(&clicks, &config);
    assert_eq!(verdicts.len(), 150);
    let log = changelog(&clicks, &config);
    let flagged: BTreeSet<EventId> = log
        .iter()
        .filter_map(|((out, _), diff)| match out {
            Out::Verdict(verdict) if *diff > 0 => Some(verdict.event_id),
            _ => None,
        })
        .collect();
    assert_eq!(flagged.len(), 150);
    // Each click's verdict is set once, with `count` = threshold + 1: the
    // flood growing click by click never retracts or rewrites a verdict.
    let verdict_updates: Vec<&((Out, Time), isize)> = log
        .iter()
        .filter(|((out, _), _)| matches!(out, Out::Verdict(_)))
        .collect();
    assert_eq!(verdict_updates.len(), 150);
    assert!(verdict_updates.iter().all(|((out, _), diff)| {
        *diff == 1 && matches!(out, Out::Verdict(verdict) if verdict.count == 101)
    }));
}

#[test]
fn a_page_view_after_a_click_retracts_its_no_page_view_verdict() {
    let config = FraudConfig::only(&[Rule::NoPageView]);
    let clicked = START + HOUR_MS;
    let viewed = clicked + 5 * MINUTE_MS;
    let events = [
        click(1, clicked, 7, 1),
        // Another user's click, never followed by a page view of theirs.
        click(3, clicked + SECOND_MS, 8, 2),
        of_kind(2, viewed, 7, EventKind::PageView),
    ];
    let log = changelog(&events, &config);
    let verdict = |n: u64| {
        log.iter()
            .filter(move |((out, _), _)| {
                matches!(out, Out::Verdict(verdict) if verdict.event_id == EventId(u128::from(n)))
            })
            .map(|((_, time), diff)| (*time, *diff))
            .collect::<Vec<_>>()
    };
    // Flagged when the click arrives, cleared when the page view does.
    assert_eq!(verdict(1), vec![(at(clicked), 1), (at(viewed), -1)]);
    assert_eq!(verdict(3), vec![(at(clicked + SECOND_MS), 1)]);
    let invalid_1: Vec<(Time, isize)> = log
        .iter()
        .filter(|((out, _), _)| *out == Out::Invalid((EventId(1), clicked)))
        .map(|((_, time), diff)| (*time, *diff))
        .collect();
    assert_eq!(invalid_1, vec![(at(clicked), 1), (at(viewed), -1)]);
    // A page view more than 30 minutes later does not clear the click.
    let late_view = [
        click(1, clicked, 7, 1),
        of_kind(2, clicked + 31 * MINUTE_MS, 7, EventKind::PageView),
    ];
    assert_eq!(flag_fraud(&late_view, &config).len(), 1);
    assert_eq!(changelog(&late_view, &config).len(), 2);
}

#[test]
fn a_conversion_seconds_after_a_click_convicts_the_click_late() {
    let config = FraudConfig::only(&[Rule::ClickInjection]);
    let clicked = START + HOUR_MS;
    let converted = clicked + 4 * SECOND_MS;
    let events = [
        of_kind(1, clicked - 20 * SECOND_MS, 7, EventKind::Impression),
        click(2, clicked, 7, 1),
        of_kind(3, converted, 7, EventKind::Conversion),
    ];
    let log = changelog(&events, &config);
    let expected_verdict = Verdict {
        event_id: EventId(2),
        ts: clicked,
        kind: EventKind::Click,
        rule: Rule::ClickInjection,
        key: format!("user {:?}", id(7)),
        count: 4 * SECOND_MS,
        threshold: 10 * SECOND_MS,
    };
    assert_eq!(
        log,
        vec![
            ((Out::Verdict(expected_verdict.clone()), at(converted)), 1),
            ((Out::Invalid((EventId(2), clicked)), at(converted)), 1),
        ]
    );
    assert_eq!(flag_fraud(&events, &config), vec![expected_verdict]);
}

#[test]
fn geo_mismatch_flags_the_conversion_against_the_latest_click() {
    let config = FraudConfig::only(&[Rule::GeoMismatch]);
    let mut early = click(1, START, 7, 1);
    early.country = Country(*b"DE");
    let latest = click(2, START + DAY_MS, 7, 1); // US
    let mut from_de = of_kind(3, START + 2 * DAY_MS, 7, EventKind::Conversion);
    from_de.country = Country(*b"DE");
    let from_us = of_kind(4, START + 2 * DAY_MS + HOUR_MS, 7, EventKind::Conversion);
    let events = [early, latest, from_de, from_us];
    let verdicts = flag_fraud(&events, &config);
    assert_eq!(
        verdicts,
        vec![Verdict {
            event_id: EventId(3),
            ts: START + 2 * DAY_MS,
            kind: EventKind::Conversion,
            rule: Rule::GeoMismatch,
            key: format!("user {:?}: click US, conversion DE", id(7)),
            count: DAY_MS,
            threshold: 7 * DAY_MS,
        }]
    );
    let log = changelog(&events, &config);
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.contains(&(
        (Out::Verdict(verdicts[0].clone()), at(START + 2 * DAY_MS)),
        1
    )));
}

#[test]
fn context_rules_flag_every_kind_of_event() {
    let mut config = FraudConfig::only(&[
        Rule::BotUserAgent,
        Rule::MissingUserAgent,
        Rule::BlockedIp,
        Rule::DatacenterIp,
    ]);
    config.blocked_ips = FraudConfig::parse_ips("10.0.0.1").expect("an address");
    config.datacenter_cidrs =
        FraudConfig::parse_cidrs("10.0.0.0/8\n10.0.0.0/24").expect("networks");
    let mut bot_impression = of_kind(1, START, 7, EventKind::Impression);
    bot_impression.agent = adflow::event::AgentClass::Bot;
    let mut anonymous = of_kind(2, START, 7, EventKind::PageView);
    anonymous.agent = adflow::event::AgentClass::Missing;
    anonymous.user_agent = None;
    anonymous.ip = Some(ip(2));
    let events = [bot_impression, anonymous];
    let rules: Vec<(u128, Rule, String)> = flag_fraud(&events, &config)
        .into_iter()
        .map(|verdict| (verdict.event_id.0, verdict.rule, verdict.key))
        .collect();
    assert_eq!(
        rules,
        vec![
            (1, Rule::BotUserAgent, format!("user agent {:?}", id(400))),
            (1, Rule::BlockedIp, "10.0.0.1".to_owned()),
            (1, Rule::DatacenterIp, "10.0.0.1 in 10.0.0.0/8".to_owned()),
            (2, Rule::MissingUserAgent, format!("user {:?}", id(7))),
            (2, Rule::DatacenterIp, "10.0.0.2 in 10.0.0.0/8".to_owned()),
        ]
    );
    let outcome = run(&Feed::one_batch(), &events, move |events| {
        flagged(events, &config)
    });
    assert_eq!(outcome.output.len(), 5 + 2);
}

#[test]
fn the_datacenter_fixture_loads_and_bad_lists_are_errors() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../datasets/fixtures/datacenter_cidrs.txt"
    );
    let networks = FraudConfig::load_datacenter_cidrs(fixture).expect("the fixture loads");
    assert_eq!(networks.len(), 18);
    assert_eq!(networks[0].to_string(), "3.208.0.0/12");
    let dir = std::env::temp_dir().join(format!("adflow-fraud-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "# ok\n1.2.3.0/24\nnot-a-network\n").expect("write");
    let error = FraudConfig::load_datacenter_cidrs(&bad)
        .map(|_| ())
        .unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("bad.txt: line 3: not a network (address/prefix): \"not-a-network\""),
        "{error}"
    );
    assert!(FraudConfig::load_blocked_ips(dir.join("missing.txt")).is_err());
    let agents = dir.join("agents.txt");
    std::fs::write(&agents, "SuspiciousAgent/1.0\n# comment\n\n").expect("write");
    let loaded = FraudConfig::load_bot_agents(&agents).expect("agents load");
    assert_eq!(
        loaded,
        BTreeSet::from_iter(adflow::event::Id::of("SuspiciousAgent/1.0"))
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn reason_codes_are_stable_and_distinct() {
    let codes: BTreeSet<&str> = Rule::ALL.iter().map(|rule| rule.code()).collect();
    assert_eq!(codes.len(), Rule::ALL.len());
    for rule in Rule::ALL {
        assert_eq!(Rule::parse(rule.code()), Some(rule));
        assert_eq!(rule.to_string(), rule.code());
    }
}

#[test]
fn every_rule_fires_on_the_generated_cases() {
    // The properties above only mean something if the rules fire (and stay
    // quiet) on the generated streams: count, over as many cases as they run.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut fired = std::collections::BTreeMap::<Rule, usize>::new();
    let mut quiet_cases = 0;
    for _ in 0..96 {
        let Ok(tree) = arb_case(70).new_tree(&mut runner) else {
            continue;
        };
        let (events, _, config) = tree.current();
        let verdicts = flag_fraud(&events, &config);
        quiet_cases += usize::from(verdicts.is_empty());
        for rule in verdicts
            .iter()
            .map(|verdict| verdict.rule)
            .collect::<BTreeSet<_>>()
        {
            *fired.entry(rule).or_insert(0) += 1;
        }
    }
    for rule in Rule::ALL {
        let cases = fired.get(&rule).copied().unwrap_or(0);
        assert!(
            cases >= 5,
            "{rule} fired in only {cases} of 96 cases: {fired:?}"
        );
    }
    assert!(quiet_cases < 48, "{quiet_cases} of 96 cases flag nothing");
}

#[test]
fn with_only_context_rules_clicks_are_judged_on_arrival_too() {
    let config = FraudConfig::only(&Rule::CONTEXT);
    assert!(EventKind::ALL
        .iter()
        .all(|kind| config.judged_on_arrival(*kind)));
    let mut bot = click(1, START, 7, 1);
    bot.agent = adflow::event::AgentClass::Bot;
    let human = click(2, START + SECOND_MS, 8, 2);
    let events = [bot, human];
    let invalid = invalid_events(&flag_fraud(&events, &config));
    let judge = config.arrival_judge();
    assert_eq!(judge(&bot), Some(true));
    assert_eq!(judge(&human), Some(false));
    for event in &events {
        assert_eq!(judge(event), Some(invalid.contains(&event_key(event))));
    }
    // One rule relating clicks to other events, and clicks wait for it.
    let config = FraudConfig::only(&[Rule::BotUserAgent, Rule::NoPageView]);
    assert!(!config.judged_on_arrival(EventKind::Click));
    assert!(config.judged_on_arrival(EventKind::Impression));
    assert_eq!(config.arrival_judge()(&bot), None);
}

/// A click without an impression names its ad in the verdict's key as
/// outputs show ads (by the text a source parsed), in the dataflow and in
/// the reference alike; an ad no source named shows as its hash's hex.
#[test]
fn a_click_without_impression_names_its_ad() {
    let named = adflow::event::Id::of("fraud-test-ad-named").expect("an id");
    adflow::names::remember(named, "fraud-test-ad-named");
    let unnamed = adflow::event::Id::of("fraud-test-ad-never-parsed").expect("an id");
    let clicks = [
        Event {
            ad_id: Some(named),
            ..click(1, START + HOUR_MS, 1, 1)
        },
        Event {
            ad_id: Some(unnamed),
            ..click(2, START + 2 * HOUR_MS, 2, 2)
        },
    ];
    let config = FraudConfig::only(&[Rule::ClickWithoutImpression]);
    let identity = |event: &Event| {
        adflow::event::Identity::of(event)
            .expect("a user")
            .to_string()
    };
    let expected = BTreeSet::from([
        format!("{}, ad fraud-test-ad-named", identity(&clicks[0])),
        format!("{}, ad {:016x}", identity(&clicks[1]), unnamed.get()),
    ]);
    let keys = |verdicts: Vec<Verdict>| -> BTreeSet<String> {
        verdicts.into_iter().map(|verdict| verdict.key).collect()
    };
    let dataflow: Vec<Verdict> = changelog(&clicks, &config)
        .into_iter()
        .filter_map(|((out, _), diff)| match out {
            Out::Verdict(verdict) if diff == 1 => Some(verdict),
            _ => None,
        })
        .collect();
    assert_eq!(keys(dataflow), expected);
    assert_eq!(keys(flag_fraud(&clicks, &config)), expected);
}
