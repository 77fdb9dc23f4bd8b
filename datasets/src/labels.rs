//! Ground-truth labels: which generated rows are anomalies, and why.
//!
//! A label names the mechanism that produced (or displaced) a row. The
//! labels file `_labels.jsonl` has one line per (row, label):
//! `{"event_id":"e-7-123","label":"late","detail":"arrived 3600000 ms after its event time"}`.

use serde::{Deserialize, Serialize};

/// The kinds of anomaly adgen injects. [`Anomaly::code`] is the label written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anomaly {
    /// A resend of an earlier row: same `event_id`, same content, sent shortly after.
    Duplicate,
    /// Arrived after rows whose event time is more than the out-of-order
    /// threshold later than its own (emission jitter of seconds).
    OutOfOrder,
    /// Deliberately delayed: arrived minutes to `max_lateness` after its event time.
    Late,
    /// One of a burst of 150–400 clicks within a minute from one IP on one ad.
    ClickFlood,
    /// The user agent is a crawler, headless browser or HTTP library.
    BotUserAgent,
    /// No user agent was sent.
    MissingUserAgent,
    /// A click from an address in a datacenter range (`fixtures/datacenter_cidrs.txt`).
    DatacenterIp,
    /// A click on some ad injected 1–10 s before a conversion of the same user.
    ClickInjection,
    /// A click from a user who was never served an impression.
    ClickWithoutImpression,
    /// A conversion whose country differs from the country of the click that led to it.
    GeoMismatch,
}

impl Anomaly {
    /// Every anomaly, in declaration order.
    pub const ALL: [Anomaly; 10] = [
        Anomaly::Duplicate,
        Anomaly::OutOfOrder,
        Anomaly::Late,
        Anomaly::ClickFlood,
        Anomaly::BotUserAgent,
        Anomaly::MissingUserAgent,
        Anomaly::DatacenterIp,
        Anomaly::ClickInjection,
        Anomaly::ClickWithoutImpression,
        Anomaly::GeoMismatch,
    ];

    /// The label code written to `_labels.jsonl` and the manifest.
    ///
    /// ```
    /// use adflow_datagen::Anomaly;
    /// assert_eq!(Anomaly::ClickWithoutImpression.code(), "click_without_impression");
    /// assert_eq!(Anomaly::parse("geo_mismatch"), Some(Anomaly::GeoMismatch));
    /// ```
    pub fn code(self) -> &'static str {
        match self {
            Anomaly::Duplicate => "duplicate",
            Anomaly::OutOfOrder => "out_of_order",
            Anomaly::Late => "late",
            Anomaly::ClickFlood => "click_flood",
            Anomaly::BotUserAgent => "bot_user_agent",
            Anomaly::MissingUserAgent => "missing_user_agent",
            Anomaly::DatacenterIp => "datacenter_ip",
            Anomaly::ClickInjection => "click_injection",
            Anomaly::ClickWithoutImpression => "click_without_impression",
            Anomaly::GeoMismatch => "geo_mismatch",
        }
    }

    /// The anomaly of a label code.
    pub fn parse(code: &str) -> Option<Anomaly> {
        Anomaly::ALL
            .into_iter()
            .find(|anomaly| anomaly.code() == code)
    }

    /// Whether this is fraud (as opposed to a delivery artefact: duplicate,
    /// out of order, late).
    pub fn is_fraud(self) -> bool {
        !matches!(
            self,
            Anomaly::Duplicate | Anomaly::OutOfOrder | Anomaly::Late
        )
    }

    pub(crate) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// One label of one generated row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// What is anomalous.
    pub anomaly: Anomaly,
    /// Human-readable specifics (delays, the flood, the partner event…).
    pub detail: String,
}

/// A line of `_labels.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelLine {
    /// The labelled row's `event_id` (a resend shares it with its original).
    pub event_id: String,
    /// An [`Anomaly::code`].
    pub label: String,
    /// The label's [`Label::detail`].
    pub detail: String,
}

/// A set of anomalies as a bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AnomalySet(u16);

impl AnomalySet {
    pub(crate) fn with(self, anomaly: Anomaly) -> AnomalySet {
        AnomalySet(self.0 | anomaly.bit())
    }

    pub(crate) fn contains(self, anomaly: Anomaly) -> bool {
        self.0 & anomaly.bit() != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_serde() {
        for anomaly in Anomaly::ALL {
            assert_eq!(Anomaly::parse(anomaly.code()), Some(anomaly));
            let json = serde_json::to_string(&anomaly).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", anomaly.code()));
        }
        let set = AnomalySet::default()
            .with(Anomaly::Late)
            .with(Anomaly::GeoMismatch);
        assert!(set.contains(Anomaly::Late) && set.contains(Anomaly::GeoMismatch));
        assert!(!set.contains(Anomaly::Duplicate));
    }
}
