//! What to generate: [`GeneratorConfig`] and its [`AnomalyRates`].

use adflow::timestamp::{Millis, DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};

/// 2026-11-01T00:00:00Z, the default start of generated traffic.
pub const DEFAULT_START_MS: Millis = 1_793_491_200_000;

/// How often each anomaly is injected. Every rate is a probability in
/// `[0, 1]` except [`AnomalyRates::click_floods_per_million`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnomalyRates {
    /// Share of rows resent a second time, 0.1–30 s after the original (`duplicate`).
    pub duplicate: f64,
    /// Share of rows whose emission is jittered by up to `max_jitter_ms`;
    /// those displaced by more than `out_of_order_threshold_ms` are labelled
    /// `out_of_order`.
    pub out_of_order: f64,
    /// Share of rows emitted between `max_jitter_ms` and `max_lateness_ms`
    /// after their event time (`late`).
    pub late: f64,
    /// Click floods per million rows (`click_flood`); each is 150–400 clicks
    /// within a minute from one IP on one ad. The count is
    /// `round(rate × events / 10^6)`, placed at random points of the run.
    pub click_floods_per_million: f64,
    /// Share of users that are bots: every row of theirs carries a bot user
    /// agent (`bot_user_agent`); they click at 10% and never convert.
    pub bot_users: f64,
    /// Share of (non-bot) rows sent without a user agent (`missing_user_agent`).
    pub missing_user_agent: f64,
    /// Share of clicks sent from a datacenter address (`datacenter_ip`); such
    /// clicks have no page views and never convert.
    pub datacenter_clicks: f64,
    /// Share of conversions preceded by an injected click on another ad
    /// 1–10 s before them (`click_injection`).
    pub click_injection: f64,
    /// Clicks without any impression, as a share of genuine clicks
    /// (`click_without_impression`): each comes from a user never served an ad.
    pub clicks_without_impression: f64,
    /// Share of conversions reported from another country than their click
    /// (`geo_mismatch`).
    pub geo_mismatch: f64,
}

impl Default for AnomalyRates {
    fn default() -> Self {
        AnomalyRates {
            duplicate: 0.01,
            out_of_order: 0.02,
            late: 0.005,
            click_floods_per_million: 5.0,
            bot_users: 0.01,
            missing_user_agent: 0.002,
            datacenter_clicks: 0.01,
            click_injection: 0.05,
            clicks_without_impression: 0.01,
            geo_mismatch: 0.03,
        }
    }
}

impl AnomalyRates {
    /// No anomalies at all: clean, in-order, unique traffic.
    pub fn none() -> Self {
        AnomalyRates {
            duplicate: 0.0,
            out_of_order: 0.0,
            late: 0.0,
            click_floods_per_million: 0.0,
            bot_users: 0.0,
            missing_user_agent: 0.0,
            datacenter_clicks: 0.0,
            click_injection: 0.0,
            clicks_without_impression: 0.0,
            geo_mismatch: 0.0,
        }
    }

    fn probabilities(&self) -> [(&'static str, f64); 9] {
        [
            ("duplicate", self.duplicate),
            ("out_of_order", self.out_of_order),
            ("late", self.late),
            ("bot_users", self.bot_users),
            ("missing_user_agent", self.missing_user_agent),
            ("datacenter_clicks", self.datacenter_clicks),
            ("click_injection", self.click_injection),
            ("clicks_without_impression", self.clicks_without_impression),
            ("geo_mismatch", self.geo_mismatch),
        ]
    }
}

/// What [`crate::Generator`] produces. `Default` is a week of traffic from
/// 2026-11-01 over 100 campaigns × 10 ads with every anomaly at its default rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneratorConfig {
    /// Seed of every random choice; the same config gives the same bytes.
    pub seed: u64,
    /// Rows to emit, exactly (duplicates included).
    pub events: u64,
    /// Event time of the first impression (ms since the epoch).
    pub start_ms: Millis,
    /// Simulated time the rows are spread over (the impression rate is set
    /// so that `events` rows take about this long; a diurnal cycle modulates it).
    pub span_ms: Millis,
    /// Number of campaigns (`cmp-001`…).
    pub campaigns: u32,
    /// Ads per campaign (`cmp-001-ad-1`…).
    pub ads_per_campaign: u32,
    /// Number of publishers (`pub-001`…).
    pub publishers: u32,
    /// Size of the user pool; `None` sizes it to `events / 40` so that users
    /// come back many times over the days of the run.
    pub users: Option<u64>,
    /// Share of users without a `user_id` (identified by `device_id` only).
    pub anonymous_users: f64,
    /// Zipf exponent of ad popularity.
    pub zipf_exponent: f64,
    /// Range of per-ad click-through rates, `[low, high]`.
    pub ctr_range: (f64, f64),
    /// Range of per-campaign conversion rates (conversions per genuine click).
    pub cvr_range: (f64, f64),
    /// Longest delay from a click to its conversion (the delay is
    /// log-uniform between one minute, or a sixtieth of this when that is
    /// shorter, and this). At least a second.
    pub max_conversion_delay_ms: Millis,
    /// How often each anomaly occurs.
    pub anomalies: AnomalyRates,
    /// Largest emission jitter of out-of-order rows.
    pub max_jitter_ms: Millis,
    /// Displacement beyond which a jittered row is labelled `out_of_order`.
    pub out_of_order_threshold_ms: Millis,
    /// Largest delay of a late row.
    pub max_lateness_ms: Millis,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 7,
            events: 1_000_000,
            start_ms: DEFAULT_START_MS,
            span_ms: 7 * DAY_MS,
            campaigns: 100,
            ads_per_campaign: 10,
            publishers: 50,
            users: None,
            anonymous_users: 0.05,
            zipf_exponent: 1.1,
            ctr_range: (0.01, 0.03),
            cvr_range: (0.02, 0.05),
            max_conversion_delay_ms: 3 * DAY_MS,
            anomalies: AnomalyRates::default(),
            max_jitter_ms: 10 * SECOND_MS,
            out_of_order_threshold_ms: SECOND_MS,
            max_lateness_ms: 2 * HOUR_MS,
        }
    }
}

impl GeneratorConfig {
    /// The user pool size: `users`, or `events / 40` (at least 16).
    pub fn user_pool(&self) -> u64 {
        self.users.unwrap_or(self.events / 40).max(16)
    }

    /// Checks that every value is usable; [`crate::Generator::new`] clamps
    /// instead, so call this to report mistakes to a user.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.campaigns >= 1 && self.campaigns <= 999_999,
            "campaigns must be 1..=999999"
        );
        ensure!(
            self.ads_per_campaign >= 1,
            "ads_per_campaign must be at least 1"
        );
        ensure!(
            u64::from(self.campaigns) * u64::from(self.ads_per_campaign) <= 10_000_000,
            "at most 10 million ads"
        );
        ensure!(
            self.publishers >= 1 && self.publishers <= 65_535,
            "publishers must be 1..=65535"
        );
        ensure!(self.span_ms >= MINUTE_MS, "span must be at least a minute");
        ensure!(
            (adflow::timestamp::MIN_EVENT_TIME..adflow::timestamp::MAX_EVENT_TIME - 30 * DAY_MS)
                .contains(&self.start_ms),
            "start must be between 2000 and 2100"
        );
        ensure!(
            self.zipf_exponent.is_finite() && self.zipf_exponent >= 0.0,
            "zipf exponent must be finite and non-negative"
        );
        for (name, (low, high)) in [("ctr", self.ctr_range), ("cvr", self.cvr_range)] {
            ensure!(
                (0.0..=1.0).contains(&low) && (0.0..=1.0).contains(&high) && low <= high,
                "{name} range must satisfy 0 <= low <= high <= 1"
            );
        }
        let mut probabilities = self.anomalies.probabilities().to_vec();
        probabilities.push(("anonymous_users", self.anonymous_users));
        for (name, rate) in probabilities {
            ensure!(
                (0.0..=1.0).contains(&rate),
                "{name} rate must be in [0, 1], got {rate}"
            );
        }
        ensure!(
            self.anomalies.late + self.anomalies.out_of_order <= 1.0,
            "late + out_of_order rates must not exceed 1"
        );
        let floods = self.anomalies.click_floods_per_million;
        ensure!(
            floods.is_finite() && (0.0..=100_000.0).contains(&floods),
            "click floods per million must be in [0, 100000]"
        );
        ensure!(self.max_jitter_ms >= 0, "max jitter must not be negative");
        ensure!(
            self.out_of_order_threshold_ms >= 0,
            "out-of-order threshold must not be negative"
        );
        ensure!(
            self.max_conversion_delay_ms >= SECOND_MS,
            "max conversion delay must be at least a second"
        );
        if self.anomalies.late > 0.0 && self.max_lateness_ms <= self.max_jitter_ms {
            bail!("max lateness must exceed max jitter when late rows are generated");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_mistakes_are_reported() {
        assert!(GeneratorConfig::default().validate().is_ok());
        let bad = GeneratorConfig {
            ctr_range: (0.05, 0.01),
            ..GeneratorConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = GeneratorConfig {
            anomalies: AnomalyRates {
                duplicate: 1.5,
                ..AnomalyRates::default()
            },
            ..GeneratorConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = GeneratorConfig {
            max_lateness_ms: 5,
            ..GeneratorConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
