//! Sequential reference of the fraud family: every rule over the final
//! multiset of events, by plain loops over per-key lists sorted by time.
//! No buckets and no incremental state; the dataflow must agree with it.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;

use adflow::event::{AgentClass, Country, Event, EventId, EventKind, Id};
use adflow::timestamp::Millis;

use crate::fraud::{CountRule, EventKey, FraudConfig, Identity, Rule, Verdict, VerdictKey};

/// The verdicts of the enabled rules on `events` (a multiset: copies count
/// in the window rules), one per (event id, time, kind, rule, key), keeping
/// the strongest evidence, sorted.
pub fn flag_fraud(events: &[Event], config: &FraudConfig) -> Vec<Verdict> {
    let mut found = Found::default();
    let clicks: Vec<&Event> = events
        .iter()
        .filter(|event| event.kind == EventKind::Click)
        .collect();

    if config.click_flood_ip.enabled {
        window_counts(
            &mut found,
            &clicks,
            Rule::ClickFloodIp,
            config.click_flood_ip,
            |e| e.ip,
            |ip| ip.to_string(),
        );
    }
    if config.click_flood_user.enabled {
        window_counts(
            &mut found,
            &clicks,
            Rule::ClickFloodUser,
            config.click_flood_user,
            |e| e.user_id,
            |id| format!("user {id:?}"),
        );
    }
    if config.device_velocity.enabled {
        window_counts(
            &mut found,
            &clicks,
            Rule::DeviceVelocity,
            config.device_velocity,
            |e| e.device_id,
            |id| format!("device {id:?}"),
        );
    }

    for event in events {
        context(&mut found, event, config);
    }

    // Each identity's events, sorted by time.
    let mut by_identity: BTreeMap<Identity, Vec<&Event>> = BTreeMap::new();
    for event in events {
        if let Some(identity) = Identity::of(event) {
            by_identity.entry(identity).or_default().push(event);
        }
    }
    for (identity, history) in &mut by_identity {
        history.sort_by_key(|event| event.ts);
        sequences(&mut found, identity, history, config);
    }

    found
        .0
        .into_iter()
        .map(|(key, evidence)| Verdict::from_parts(key, evidence))
        .collect()
}

/// The flagged events, each once.
pub fn invalid_events(verdicts: &[Verdict]) -> BTreeSet<EventKey> {
    verdicts.iter().map(Verdict::event).collect()
}

/// Verdicts by (event id, time, kind, rule, key), with the strongest evidence.
#[derive(Default)]
struct Found(BTreeMap<VerdictKey, (i64, i64)>);

impl Found {
    fn flag(&mut self, event: &Event, rule: Rule, key: String, count: i64, threshold: i64) {
        let evidence = self
            .0
            .entry((event.event_id, event.ts, event.kind, rule, key))
            .or_insert((count, threshold));
        if (count, threshold) > *evidence {
            *evidence = (count, threshold);
        }
    }
}

/// Every click of a key in a window `[s, s + window)` that holds more than
/// the threshold of its clicks, with `count` = threshold + 1.
fn window_counts<K: Ord + Hash>(
    found: &mut Found,
    clicks: &[&Event],
    rule: Rule,
    settings: CountRule,
    key_of: fn(&Event) -> Option<K>,
    render: fn(&K) -> String,
) {
    let window = settings.sliding_window();
    let mut by_key: BTreeMap<K, Vec<&Event>> = BTreeMap::new();
    for click in clicks {
        if let Some(key) = key_of(click) {
            by_key.entry(key).or_default().push(click);
        }
    }
    for (key, mut list) in by_key {
        list.sort_by_key(|click| click.ts);
        let mut flagged = vec![false; list.len()];
        // A window over the threshold can always start at a click.
        for start in &list {
            let from = list.partition_point(|click| click.ts < start.ts);
            let to = list.partition_point(|click| click.ts < start.ts.saturating_add(window));
            if i64::try_from(to - from).unwrap_or(i64::MAX) > settings.threshold {
                flagged[from..to].fill(true);
            }
        }
        let count = settings.threshold.saturating_add(1);
        for (click, _) in list.iter().zip(flagged).filter(|(_, flagged)| *flagged) {
            found.flag(click, rule, render(&key), count, settings.threshold);
        }
    }
}

/// The rules decided by the event alone.
fn context(found: &mut Found, event: &Event, config: &FraudConfig) {
    let bot = event.agent == AgentClass::Bot
        || event
            .user_agent
            .is_some_and(|agent| config.bot_agents.contains(&agent));
    if config.bot_user_agent && bot {
        let key = match event.user_agent {
            Some(agent) => format!("user agent {agent:?}"),
            None => "user agent".to_owned(),
        };
        found.flag(event, Rule::BotUserAgent, key, 1, 0);
    }
    if config.missing_user_agent && event.agent == AgentClass::Missing {
        let key = match Identity::of(event) {
            Some(identity) => identity.to_string(),
            None => "unknown".to_owned(),
        };
        found.flag(event, Rule::MissingUserAgent, key, 1, 0);
    }
    let Some(ip) = event.ip else { return };
    if config.blocked_ip && config.blocked_ips.contains(&ip) {
        found.flag(event, Rule::BlockedIp, ip.to_string(), 1, 0);
    }
    if config.datacenter_ip {
        for network in &config.datacenter_cidrs {
            if network.contains(ip) {
                found.flag(
                    event,
                    Rule::DatacenterIp,
                    format!("{ip} in {network}"),
                    1,
                    0,
                );
                break;
            }
        }
    }
}

/// The rules that relate an identity's events to each other, over its
/// `history` sorted by time.
fn sequences(found: &mut Found, identity: &Identity, history: &[&Event], config: &FraudConfig) {
    for event in history {
        let ts = event.ts;
        match event.kind {
            EventKind::Conversion if config.geo_mismatch.enabled => {
                let window = config.geo_mismatch.span();
                let mut latest: Option<(Millis, EventId, Country)> = None;
                for click in between(history, ts.saturating_sub(window), ts) {
                    if click.kind == EventKind::Click {
                        let seen = (click.ts, click.event_id, click.country);
                        latest = Some(latest.map_or(seen, |before| before.max(seen)));
                    }
                }
                if let Some((clicked_at, _, clicked)) = latest {
                    let converted = event.country;
                    if clicked != converted
                        && clicked != Country::UNKNOWN
                        && converted != Country::UNKNOWN
                    {
                        let key = format!("{identity}: click {clicked}, conversion {converted}");
                        found.flag(
                            event,
                            Rule::GeoMismatch,
                            key,
                            ts.saturating_sub(clicked_at),
                            window,
                        );
                    }
                }
            }
            EventKind::Click => {
                click_rules(found, identity, event, history, config);
            }
            _ => {}
        }
    }
}

/// The events of `history` (sorted by time) with time in `[from, to]`.
fn between<'a>(history: &'a [&'a Event], from: Millis, to: Millis) -> &'a [&'a Event] {
    let first = history.partition_point(|event| event.ts < from);
    let last = history.partition_point(|event| event.ts <= to);
    &history[first..last.max(first)]
}

/// The rules that flag clicks by what the identity did around them.
fn click_rules(
    found: &mut Found,
    identity: &Identity,
    click: &Event,
    history: &[&Event],
    config: &FraudConfig,
) {
    let ts = click.ts;
    if config.click_injection.enabled {
        let window = config.click_injection.span();
        let mut shortest: Option<Millis> = None;
        for later in between(history, ts, ts.saturating_add(window)) {
            if later.kind == EventKind::Conversion {
                let lead = later.ts.saturating_sub(ts);
                shortest = Some(shortest.map_or(lead, |before| before.min(lead)));
            }
        }
        if let Some(lead) = shortest {
            found.flag(
                click,
                Rule::ClickInjection,
                identity.to_string(),
                lead,
                window,
            );
        }
    }
    if config.click_without_impression.enabled {
        let window = config.click_without_impression.span();
        let served = between(history, ts.saturating_sub(window), ts)
            .iter()
            .any(|before| {
                // Only an impression that names its campaign and ad (as
                // the parser requires) shows an ad.
                before.kind == EventKind::Impression
                    && before.campaign_id.is_some()
                    && before.ad_id.is_some()
                    && before.ad_id == click.ad_id
            });
        if !served {
            found.flag(
                click,
                Rule::ClickWithoutImpression,
                ad_key(identity, click.ad_id),
                0,
                1,
            );
        }
    }
    if config.no_page_view.enabled {
        let window = config.no_page_view.span();
        let viewed = between(history, ts, ts.saturating_add(window))
            .iter()
            .any(|after| after.kind == EventKind::PageView);
        if !viewed {
            found.flag(click, Rule::NoPageView, identity.to_string(), 0, 1);
        }
    }
}

/// The identity and the ad by name (its hash's hex if no source named it).
fn ad_key(identity: &Identity, ad: Option<Id>) -> String {
    match ad {
        Some(ad) => format!("{identity}, ad {}", adflow::names::id_text(ad)),
        None => format!("{identity}, no ad"),
    }
}
