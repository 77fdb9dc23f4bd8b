//! Sequential reference of the attribution family: for every conversion,
//! scan every event of its user (or device) for its touches with plain
//! loops, then split credit.
//!
//! Which touches count (identity, validity, windows, clicks before views)
//! and their order are decided here independently of the dataflow; only the
//! arithmetic of dividing an amount over an ordered path,
//! [`split_credit`], is shared, and it has its own hand-checked tests.
//!
//! The events are a multiset, as the harness delivers them. Identical
//! copies of a touch are one touch; each copy of a conversion is a
//! conversion, credited again (as metrics count every copy). The horizon
//! plays no part: it bounds the dataflow's state, it must not change its
//! answer.

use std::collections::{BTreeMap, BTreeSet};

use adflow::event::{Country, DeviceType, Event, EventId, EventKind, Id};
use adflow::money::Micros;
use adflow::timestamp::{Millis, DAY_MS};

use crate::attribution::{
    split_credit, AttributionConfig, CampaignDayAttribution, Credit, Model, Unattributed,
    CONVERSION_MICROS,
};
use crate::fraud::{event_key, EventKey};

/// A conversion as the reference sees it: `(event id, ts, who, revenue,
/// country, device type)`, where who is `(true, user)` or `(false, device)`.
type ConversionRow = (EventId, Millis, (bool, Id), Micros, Country, DeviceType);

/// A touch in path order: `(ts, event id, kind, campaign, ad)`.
type TouchRow = (Millis, EventId, EventKind, Id, Id);

/// The user id if there is one, else the device id, tagged so a user and a
/// device with equal hashes differ.
fn who(event: &Event) -> Option<(bool, Id)> {
    match (event.user_id, event.device_id) {
        (Some(user), _) => Some((true, user)),
        (None, Some(device)) => Some((false, device)),
        (None, None) => None,
    }
}

/// The events of each user (or device), in input order: grouping first
/// keeps the reference linear in the stream for the 10M-event benchmark,
/// and changes nothing else (`path` checks the person again).
fn by_person(events: &[Event]) -> BTreeMap<(bool, Id), Vec<Event>> {
    let mut people: BTreeMap<(bool, Id), Vec<Event>> = BTreeMap::new();
    for event in events {
        if let Some(person) = who(event) {
            people.entry(person).or_default().push(*event);
        }
    }
    people
}

fn events_of(people: &BTreeMap<(bool, Id), Vec<Event>>, person: (bool, Id)) -> &[Event] {
    people.get(&person).map_or(&[], Vec::as_slice)
}

/// Each conversion with its number of copies.
fn conversions(events: &[Event]) -> BTreeMap<ConversionRow, usize> {
    let mut conversions = BTreeMap::new();
    for event in events {
        if event.kind != EventKind::Conversion {
            continue;
        }
        if let Some(person) = who(event) {
            let row = (
                event.event_id,
                event.ts,
                person,
                event.revenue_micros,
                event.country,
                event.device_type,
            );
            *conversions.entry(row).or_insert(0) += 1;
        }
    }
    conversions
}

/// The path of one conversion: its valid clicks in the click window, or if
/// there are none its valid impressions in the view window, ordered by
/// `(ts, event id)`.
fn path(
    conversion: &ConversionRow,
    events: &[Event],
    invalid: &BTreeSet<EventKey>,
    config: &AttributionConfig,
) -> Vec<TouchRow> {
    let (_, conversion_ts, person, ..) = *conversion;
    let mut clicks = BTreeSet::new();
    let mut views = BTreeSet::new();
    for event in events {
        let window = match event.kind {
            EventKind::Click => config.click_window,
            EventKind::Impression => config.view_window,
            _ => continue,
        };
        if invalid.contains(&event_key(event)) || who(event) != Some(person) {
            continue;
        }
        let (Some(campaign), Some(ad)) = (event.campaign_id, event.ad_id) else {
            continue;
        };
        if event.ts > conversion_ts || conversion_ts - event.ts > window {
            continue;
        }
        let row = (event.ts, event.event_id, event.kind, campaign, ad);
        if event.kind == EventKind::Click {
            clicks.insert(row);
        } else {
            views.insert(row);
        }
    }
    let chosen = if clicks.is_empty() { views } else { clicks };
    chosen.into_iter().collect()
}

fn models(config: &AttributionConfig) -> Vec<Model> {
    let mut models = Vec::new();
    for model in &config.models {
        if !models.contains(model) {
            models.push(*model);
        }
    }
    models
}

/// Credits per conversion, model and touch (zero shares omitted), and the
/// totals per (campaign, ad, model, day), both sorted.
pub fn attribute(
    events: &[Event],
    invalid: &BTreeSet<EventKey>,
    config: &AttributionConfig,
) -> (Vec<Credit>, Vec<CampaignDayAttribution>) {
    let mut credits = Vec::new();
    let people = by_person(events);
    for (conversion, &copies) in &conversions(events) {
        let (conversion_id, conversion_ts, person, revenue, country, device_type) = *conversion;
        let touches = path(conversion, events_of(&people, person), invalid, config);
        let times: Vec<Millis> = touches.iter().map(|touch| touch.0).collect();
        for model in models(config) {
            let money = split_credit(model, &times, conversion_ts, revenue);
            let shares = split_credit(model, &times, conversion_ts, CONVERSION_MICROS);
            for index in 0..touches.len() {
                if money[index] == 0 && shares[index] == 0 {
                    continue;
                }
                let (touch_ts, touch, touch_kind, campaign_id, ad_id) = touches[index];
                let credit = Credit {
                    model,
                    conversion: conversion_id,
                    conversion_ts,
                    touch,
                    touch_ts,
                    touch_kind,
                    campaign_id,
                    ad_id,
                    position: u32::try_from(index).unwrap_or(u32::MAX),
                    touches: u32::try_from(touches.len()).unwrap_or(u32::MAX),
                    credit_micros: money[index],
                    conversion_credit: shares[index],
                    country,
                    device_type,
                };
                credits.extend(std::iter::repeat_n(credit, copies));
            }
        }
    }
    credits.sort();

    let mut days: BTreeMap<(Id, Id, Model, Millis), (i64, Micros)> = BTreeMap::new();
    for credit in &credits {
        let day = credit.conversion_ts - credit.conversion_ts.rem_euclid(DAY_MS);
        let entry = days
            .entry((credit.campaign_id, credit.ad_id, credit.model, day))
            .or_insert((0, 0));
        entry.0 += credit.conversion_credit;
        entry.1 += credit.credit_micros;
    }
    let by_campaign_day = days
        .into_iter()
        .filter(|(_, totals)| *totals != (0, 0))
        .map(
            |((campaign_id, ad_id, model, day), (conversion_micros, revenue_micros))| {
                CampaignDayAttribution {
                    campaign_id,
                    ad_id,
                    model,
                    day,
                    conversion_micros,
                    revenue_micros,
                }
            },
        )
        .collect();
    (credits, by_campaign_day)
}

/// The conversions with no qualifying touch, sorted.
pub fn unattributed(
    events: &[Event],
    invalid: &BTreeSet<EventKey>,
    config: &AttributionConfig,
) -> Vec<Unattributed> {
    let people = by_person(events);
    let mut rows: Vec<Unattributed> = conversions(events)
        .iter()
        .filter(|(conversion, _)| {
            path(
                conversion,
                events_of(&people, conversion.2),
                invalid,
                config,
            )
            .is_empty()
        })
        .flat_map(
            |(&(conversion, conversion_ts, _, revenue_micros, country, device_type), &copies)| {
                let row = Unattributed {
                    conversion,
                    conversion_ts,
                    revenue_micros,
                    country,
                    device_type,
                };
                std::iter::repeat_n(row, copies)
            },
        )
        .collect();
    rows.sort();
    rows
}
