//! Rules decided by an event alone: bot and missing user agents, blocked
//! and datacenter IP addresses. They apply to events of every kind (a bot's
//! impressions are no more billable than its clicks) and hold no state of
//! their own: a flat map feeding the verdicts reduce.

use adflow::event::{AgentClass, Event};
use adflow::pipeline::Time;
use differential_dataflow::collection::VecCollection;

use super::{FraudConfig, Identity, Rule, Rules, Verdict};

/// The verdicts of the enabled context rules.
pub(super) fn flag<'scope>(rules: &Rules<'_, 'scope>) -> Vec<VecCollection<'scope, Time, Verdict>> {
    let config = rules.config;
    let context = [
        Rule::BotUserAgent,
        Rule::MissingUserAgent,
        Rule::BlockedIp,
        Rule::DatacenterIp,
    ];
    if !context.iter().any(|rule| config.enabled(*rule)) {
        return Vec::new();
    }
    let config = config.clone();
    // Evidence and verdict are the event itself: retire the verdicts after
    // the horizon (the same as retiring the events they come from, without
    // a cancellation of every event to judge again).
    let verdicts = rules.events().flat_map(move |event| judge(&event, &config));
    vec![rules.retire("context", verdicts, 0, |verdict| verdict.ts)]
}

/// The context verdicts on one event (usually none, so no allocation).
fn judge(event: &Event, config: &FraudConfig) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let mut flag = |rule: Rule, key: String| {
        verdicts.push(Verdict {
            event_id: event.event_id,
            ts: event.ts,
            kind: event.kind,
            rule,
            key,
            count: 1,
            threshold: 0,
        })
    };
    if config.bot_user_agent && config.is_bot_agent(event) {
        flag(Rule::BotUserAgent, agent_key(event));
    }
    if config.missing_user_agent && event.agent == AgentClass::Missing {
        flag(Rule::MissingUserAgent, identity_key(event));
    }
    if let Some(ip) = event.ip {
        if config.blocked_ip && config.blocked_ips.contains(&ip) {
            flag(Rule::BlockedIp, ip.to_string());
        }
        if config.datacenter_ip {
            if let Some(network) = config.datacenter_network(ip) {
                flag(Rule::DatacenterIp, format!("{ip} in {network}"));
            }
        }
    }
    verdicts
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
