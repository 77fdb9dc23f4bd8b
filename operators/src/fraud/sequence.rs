//! Rules that relate an event to the same identity's events shortly before
//! or after it: geo mismatch, click injection, click without impression,
//! click without a page view afterwards.
//!
//! Each rule judges *subjects* (the events it may flag) against *evidence*
//! (the events that decide), grouped by `(identity [, ad], bucket)` with
//! buckets as long as the rule's window. A subject goes to its own bucket
//! only, so it is judged exactly once; evidence goes to its own bucket and
//! to the one neighbour whose subjects can reach it (the next bucket for a
//! look back, the previous one for a look ahead). A group's work is
//! bounded by the identity's traffic over two windows, however long its
//! history. Click without impression is the exception: its evidence is
//! nearly all the traffic, so it joins the clicks with the arranged
//! impressions instead (see [`click_without_impression`]).

use std::hash::Hash;

use adflow::event::{Country, EventId, EventKind, Id};
use adflow::pipeline::Time;
use adflow::timestamp::Millis;
use differential_dataflow::collection::VecCollection;
use differential_dataflow::ExchangeData;
use serde::{Deserialize, Serialize};

use super::{Identity, Rule, Rules, Verdict};
use crate::attribution::{AttributionConfig, AttributionExt};

/// A value of a sequence rule's group. Evidence sorts before subjects, so
/// a group's evidence is complete (and sorted) when its subjects come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Item<E, S> {
    Evidence(E),
    Subject(S),
}

/// Where evidence lies relative to its subjects.
#[derive(Clone, Copy)]
enum Reach {
    /// Before them: evidence also serves the next bucket.
    Back,
    /// After them: evidence also serves the previous bucket.
    Ahead,
}

/// The verdicts of the enabled sequence rules.
pub(super) fn flag<'scope>(rules: &Rules<'_, 'scope>) -> Vec<VecCollection<'scope, Time, Verdict>> {
    let config = rules.config;
    let mut verdicts = Vec::new();
    if config.geo_mismatch.enabled {
        verdicts.push(geo_mismatch(rules, config.geo_mismatch.span()));
    }
    if config.click_injection.enabled {
        verdicts.push(click_injection(rules, config.click_injection.span()));
    }
    if config.click_without_impression.enabled {
        verdicts.push(click_without_impression(
            rules,
            config.click_without_impression.span(),
        ));
    }
    if config.no_page_view.enabled {
        verdicts.push(no_page_view(rules, config.no_page_view.span()));
    }
    verdicts
}

/// `(identity, ts, value)` of the events of `kind` that have an identity,
/// retired (with a horizon) after `window`.
fn keyed<'scope, V: ExchangeData>(
    rules: &Rules<'_, 'scope>,
    rule: Rule,
    kind: EventKind,
    window: Millis,
    value: fn(&adflow::event::Event) -> V,
) -> VecCollection<'scope, Time, (Identity, Millis, V)> {
    rules.retire(
        &format!("{rule} {kind}"),
        identified(rules, kind, value),
        window,
        |(_, ts, _)| *ts,
    )
}

/// `(identity, ts, value)` of the events of `kind` that have an identity.
fn identified<'scope, V: ExchangeData>(
    rules: &Rules<'_, 'scope>,
    kind: EventKind,
    value: fn(&adflow::event::Event) -> V,
) -> VecCollection<'scope, Time, (Identity, Millis, V)> {
    rules.of_kind(kind).flat_map(move |event| {
        Identity::of(&event).map(|identity| (identity, event.ts, value(&event)))
    })
}

/// Groups subjects and evidence by `(key, bucket)` and calls `judge` with
/// each subject and the sorted evidence of its group (all of it within the
/// window of the subject, and maybe more).
fn judged<'scope, K, E, S, O>(
    name: String,
    subjects: VecCollection<'scope, Time, (K, Millis, S)>,
    evidence: VecCollection<'scope, Time, (K, Millis, E)>,
    window: Millis,
    reach: Reach,
    judge: impl Fn(&[E], &S) -> Option<O> + 'static,
) -> VecCollection<'scope, Time, (K, O)>
where
    K: ExchangeData + Hash,
    E: ExchangeData,
    S: ExchangeData,
    O: ExchangeData,
{
    let bucket = window.max(1);
    let subjects = subjects
        .map(move |(key, ts, subject)| ((key, ts.div_euclid(bucket)), Item::Subject(subject)));
    let evidence = evidence.flat_map(move |(key, ts, seen)| {
        let own = ts.div_euclid(bucket);
        let neighbour = match reach {
            Reach::Back => own.saturating_add(1),
            Reach::Ahead => own.saturating_sub(1),
        };
        [
            ((key.clone(), own), Item::Evidence(seen.clone())),
            ((key, neighbour), Item::Evidence(seen)),
        ]
    });
    subjects
        .concat(evidence)
        .reduce_named(&name, move |_key, input, output| {
            // Most groups hold evidence only (page views, clicks) and have
            // nothing to judge.
            let judging = input
                .iter()
                .any(|(item, diff)| matches!(item, Item::Subject(_)) && *diff > 0);
            if !judging {
                return;
            }
            let mut seen = Vec::new();
            for (item, diff) in input {
                if *diff <= 0 {
                    continue;
                }
                match item {
                    Item::Evidence(evidence) => seen.push(evidence.clone()),
                    Item::Subject(subject) => {
                        if let Some(verdict) = judge(&seen, subject) {
                            output.push((verdict, 1isize));
                        }
                    }
                }
            }
        })
        .map(|((key, _bucket), verdict)| (key, verdict))
}

/// Conversions from another country than the identity's latest click
/// (ties: the largest event id, then country) at most `window` before;
/// both countries must be known.
fn geo_mismatch<'scope>(
    rules: &Rules<'_, 'scope>,
    window: Millis,
) -> VecCollection<'scope, Time, Verdict> {
    let rule = Rule::GeoMismatch;
    let placed = |event: &adflow::event::Event| (event.ts, event.event_id, event.country);
    let conversions = keyed(rules, rule, EventKind::Conversion, window, placed);
    let clicks = keyed(rules, rule, EventKind::Click, window, placed);
    judged(
        rules.operator(&format!("{rule} groups")),
        conversions,
        clicks,
        window,
        Reach::Back,
        move |clicks: &[(Millis, EventId, Country)], &(ts, event_id, country)| {
            let latest = clicks[..clicks.partition_point(|click| click.0 <= ts)].last()?;
            let mismatch =
                latest.2 != country && latest.2 != Country::UNKNOWN && country != Country::UNKNOWN;
            (latest.0 >= ts.saturating_sub(window) && mismatch).then_some((
                ts,
                event_id,
                latest.2,
                country,
                ts.saturating_sub(latest.0),
            ))
        },
    )
    .map(
        move |(identity, (ts, event_id, clicked, converted, age))| Verdict {
            event_id,
            ts,
            kind: EventKind::Conversion,
            rule,
            key: format!("{identity}: click {clicked}, conversion {converted}"),
            count: age,
            threshold: window,
        },
    )
}

/// Clicks followed within `window` by a conversion of the same identity;
/// `count` is the shortest lead from the click to such a conversion.
fn click_injection<'scope>(
    rules: &Rules<'_, 'scope>,
    window: Millis,
) -> VecCollection<'scope, Time, Verdict> {
    let rule = Rule::ClickInjection;
    let clicks = keyed(rules, rule, EventKind::Click, window, |event| {
        event.event_id
    });
    let conversions = keyed(rules, rule, EventKind::Conversion, window, |_| ());
    let subjects = clicks.map(|(identity, ts, event_id)| (identity, ts, (ts, event_id)));
    let evidence = conversions.map(|(identity, ts, ())| (identity, ts, ts));
    judged(
        rules.operator(&format!("{rule} groups")),
        subjects,
        evidence,
        window,
        Reach::Ahead,
        move |conversions: &[Millis], &(ts, event_id)| {
            let next = conversions.get(conversions.partition_point(|at| *at < ts))?;
            let lead = next.saturating_sub(ts);
            (lead <= window).then_some((ts, event_id, lead))
        },
    )
    .map(move |(identity, (ts, event_id, lead))| Verdict {
        event_id,
        ts,
        kind: EventKind::Click,
        rule,
        key: identity.to_string(),
        count: lead,
        threshold: window,
    })
}

/// Clicks with no impression of the same identity and ad in the `window`
/// up to (and including) the click's time. An impression counts if it is a
/// touch (it names a campaign and an ad, as the parser requires).
///
/// Impressions are most of the traffic and almost none is followed by a
/// click, so they are not judged in groups: the clicks, arranged by
/// identity, are joined with the touches arranged by identity, which
/// attribution arranges anyway (`Rules::touches`), so the pipeline holds
/// and merges the impressions once. Until 2026-12-03 this rule arranged
/// the impressions a second time, by `(bucket, identity, ad)`; that
/// arrangement and its merges were about an eighth of the backfill's
/// operator time (docs/benchmarks.md).
fn click_without_impression<'scope>(
    rules: &Rules<'_, 'scope>,
    window: Millis,
) -> VecCollection<'scope, Time, Verdict> {
    let rule = Rule::ClickWithoutImpression;
    let placed = |event: &adflow::event::Event| (event.event_id, event.ad_id);
    let clicks = keyed(rules, rule, EventKind::Click, window, placed);
    // The impressions by identity: attribution's touches when the pipeline
    // shares them (they hold every impression already), else arranged
    // here, retired a window after their time like the clicks.
    let arranged;
    let touches = match rules.touches {
        Some(touches) => touches,
        None => {
            let retention = AttributionConfig {
                models: Vec::new(),
                click_window: 0,
                view_window: window,
                horizon: rules.config.horizon,
            };
            arranged = rules
                .of_kind(EventKind::Impression)
                .arrange_touches(&rules.operator(&rule.to_string()), &retention);
            &arranged
        }
    };
    // Each click meets every touch of its identity still held (38 on
    // average, at most 2,410, over the 10M-event benchmark week): far less
    // work than a second arrangement of nearly all the traffic, keyed by
    // ad and time bucket, would take.
    let served = clicks
        .clone()
        .map(|(identity, ts, (event_id, ad))| (identity, (ts, event_id, ad)))
        .arrange_by_key_named(&rules.operator(&format!("{rule} clicks")))
        .join_core(
            touches.by_identity.clone(),
            move |identity, &(ts, event_id, ad), stored| {
                let shown = stored.touch();
                (shown.kind == EventKind::Impression
                    && ad == Some(shown.ad_id)
                    && shown.ts <= ts
                    && shown.ts >= ts.saturating_sub(window))
                .then_some(((ts, *identity, ad, event_id), Item::Evidence(())))
            },
        );
    clicks
        .map(|(identity, ts, (event_id, ad))| ((ts, identity, ad, event_id), Item::Subject(())))
        .concat(served)
        .reduce_named(
            &rules.operator(&format!("{rule} judge")),
            |_click, input, output| {
                let clicked = input
                    .iter()
                    .any(|(item, diff)| matches!(item, Item::Subject(())) && *diff > 0);
                let served = input
                    .iter()
                    .any(|(item, diff)| matches!(item, Item::Evidence(())) && *diff > 0);
                if clicked && !served {
                    output.push(((), 1isize));
                }
            },
        )
        .map(move |((ts, identity, ad, event_id), ())| Verdict {
            event_id,
            ts,
            kind: EventKind::Click,
            rule,
            key: ad_key(&identity, ad),
            count: 0,
            threshold: 1,
        })
}

/// Clicks with no page view of the same identity in the `window` from the
/// click's time on.
fn no_page_view<'scope>(
    rules: &Rules<'_, 'scope>,
    window: Millis,
) -> VecCollection<'scope, Time, Verdict> {
    let rule = Rule::NoPageView;
    let clicks = keyed(rules, rule, EventKind::Click, window, |event| {
        event.event_id
    })
    .map(|(identity, ts, event_id)| (identity, ts, (ts, event_id)));
    let page_views = keyed(rules, rule, EventKind::PageView, window, |_| ())
        .map(|(identity, ts, ())| (identity, ts, ts));
    judged(
        rules.operator(&format!("{rule} groups")),
        clicks,
        page_views,
        window,
        Reach::Ahead,
        move |page_views: &[Millis], &(ts, event_id)| {
            let viewed = page_views
                .get(page_views.partition_point(|at| *at < ts))
                .is_some_and(|at| *at <= ts.saturating_add(window));
            (!viewed).then_some((ts, event_id))
        },
    )
    .map(move |(identity, (ts, event_id))| Verdict {
        event_id,
        ts,
        kind: EventKind::Click,
        rule,
        key: identity.to_string(),
        count: 0,
        threshold: 1,
    })
}

/// `user #…, ad <name>`, the key of `click_without_impression`: the ad
/// as outputs show it ([`adflow::names::id_text`]). Built after the
/// judging reduce, so at a time the events' frontier has passed, by which
/// every worker has remembered the names sent with those events
/// (`Streams::new`): the same text on every process and at every time,
/// which a retraction needs to cancel its verdict.
pub(crate) fn ad_key(identity: &Identity, ad: Option<Id>) -> String {
    match ad {
        Some(ad) => format!("{identity}, ad {}", adflow::names::id_text(ad)),
        None => format!("{identity}, no ad"),
    }
}
