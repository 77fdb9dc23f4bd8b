//! Rules decided by an event alone: bot and missing user agents, blocked
//! and datacenter IP addresses. They apply to events of every kind (a bot's
//! impressions are no more billable than its clicks) and hold no state of
//! their own: a flat map feeding the verdicts reduce.

use adflow::event::{AgentClass, Event, EventKind};
use adflow::pipeline::Time;
use differential_dataflow::collection::VecCollection;

use super::{FraudConfig, Identity, Rule, Rules, Verdict};

/// The verdicts of the enabled context rules.
pub(super) fn flag<'scope>(rules: &Rules<'_, 'scope>) -> Vec<VecCollection<'scope, Time, Verdict>> {
    let config = rules.config;
    if !Rule::CONTEXT.iter().any(|rule| config.enabled(*rule)) {
        return Vec::new();
    }
    let config = config.clone();
    // Evidence and verdict are the event itself: retire the verdicts after
    // the horizon (the same as retiring the events they come from, without
    // a cancellation of every event to judge again).
    let verdicts = rules.events().flat_map(move |event| judge(&event, &config));
    vec![rules.retire("context", verdicts, 0, |verdict| verdict.ts)]
}

/// Whether the context `rule`, if enabled, flags `event`.
fn fires(config: &FraudConfig, rule: Rule, event: &Event) -> bool {
    if !config.enabled(rule) {
        return false;
    }
    match rule {
        Rule::BotUserAgent => config.is_bot_agent(event),
        Rule::MissingUserAgent => event.agent == AgentClass::Missing,
        Rule::BlockedIp => event.ip.is_some_and(|ip| config.blocked_ips.contains(&ip)),
        Rule::DatacenterIp => event
            .ip
            .is_some_and(|ip| config.datacenter_network(ip).is_some()),
        Rule::ClickFloodIp
        | Rule::ClickFloodUser
        | Rule::DeviceVelocity
        | Rule::GeoMismatch
        | Rule::ClickInjection
        | Rule::ClickWithoutImpression
        | Rule::NoPageView => false,
    }
}

/// The context verdicts on one event (usually none, so no allocation).
fn judge(event: &Event, config: &FraudConfig) -> Vec<Verdict> {
    Rule::CONTEXT
        .into_iter()
        .filter(|rule| fires(config, *rule, event))
        .map(|rule| Verdict {
            event_id: event.event_id,
            ts: event.ts,
            kind: event.kind,
            rule,
            key: key(rule, event, config),
            count: 1,
            threshold: 0,
        })
        .collect()
}

/// The `key` of a context verdict: what matched.
fn key(rule: Rule, event: &Event, config: &FraudConfig) -> String {
    match (rule, event.ip) {
        (Rule::BotUserAgent, _) => agent_key(event),
        (Rule::BlockedIp, Some(ip)) => ip.to_string(),
        (Rule::DatacenterIp, Some(ip)) => match config.datacenter_network(ip) {
            Some(network) => format!("{ip} in {network}"),
            None => ip.to_string(),
        },
        // A missing user agent; or a rule that does not fire here (not a
        // context rule, or one that needs an IP the event lacks).
        _ => identity_key(event),
    }
}

impl FraudConfig {
    /// Whether events of `kind` are judged on arrival: every enabled rule
    /// that may flag them decides by the event alone, so their verdicts
    /// are known when they arrive and never change. Impressions and page
    /// views are, under every configuration; clicks and conversions are
    /// unless every rule relating them to other events is switched off.
    pub fn judged_on_arrival(&self, kind: EventKind) -> bool {
        Rule::ALL.iter().all(|rule| {
            !self.enabled(*rule) || rule.decides_by_event_alone() || !rule.may_flag(kind)
        })
    }

    /// The verdict on an event as it arrives: `Some(flagged)` if its kind is
    /// [judged on arrival](FraudConfig::judged_on_arrival) (flagged when a
    /// context rule fires), `None` if a verdict may still come later. For a
    /// consumer of verdicts that need not hold such events for one to find
    /// them (metrics' [`Invalid::judged_on_arrival`](crate::metrics::Invalid::judged_on_arrival)).
    ///
    /// ```
    /// use adflow::event::{Event, EventRecord};
    /// use adflow::parsing::EventValidator;
    /// use adflow_operators::fraud::FraudConfig;
    ///
    /// let event = |kind: &str, user_agent: &str| -> Event {
    ///     let record = EventRecord {
    ///         event_id: format!("{kind}-{user_agent}"),
    ///         kind: kind.into(),
    ///         ts: 1_793_491_200_000,
    ///         user_id: "u".into(),
    ///         campaign_id: "c".into(),
    ///         ad_id: "a".into(),
    ///         user_agent: user_agent.into(),
    ///         ..EventRecord::default()
    ///     };
    ///     EventValidator::default().validate_record(&record).unwrap()
    /// };
    /// let judge = FraudConfig::default().arrival_judge();
    /// assert_eq!(judge(&event("impression", "Mozilla/5.0 (iPhone)")), Some(false));
    /// assert_eq!(judge(&event("impression", "Googlebot/2.1")), Some(true));
    /// // A click may be flagged later (a flood, a missing page view…).
    /// assert_eq!(judge(&event("click", "Googlebot/2.1")), None);
    /// ```
    pub fn arrival_judge(&self) -> impl Fn(&Event) -> Option<bool> + 'static {
        let judged = EventKind::ALL.map(|kind| self.judged_on_arrival(kind));
        let config = self.clone();
        move |event| {
            judged[event.kind.index()].then(|| {
                Rule::CONTEXT
                    .iter()
                    .any(|rule| fires(&config, *rule, event))
            })
        }
    }
}

/// `user agent #…` (the hash of the string), the key of `bot_user_agent`.
pub(crate) fn agent_key(event: &Event) -> String {
    match event.user_agent {
        Some(agent) => format!("user agent {agent:?}"),
        None => "user agent".to_owned(),
    }
}

/// The identity, or `unknown`, the key of `missing_user_agent`.
pub(crate) fn identity_key(event: &Event) -> String {
    Identity::of(event).map_or_else(|| "unknown".to_owned(), |identity| identity.to_string())
}
