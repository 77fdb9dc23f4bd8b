//! The traffic simulation: impressions as a diurnal Poisson process, the
//! clicks, page views and conversions they lead to, and the injected
//! anomalies, emitted in arrival order.
//!
//! Every event is created eagerly, with its future consequences, and parked
//! in a min-heap keyed by arrival time. Rows leave the heap once simulated
//! time has passed their arrival, so the output is in arrival order (late
//! and jittered rows really are out of order) while memory holds only the
//! events still in flight: a few seconds of traffic, the late rows, and the
//! conversions of the last few days. That is what lets 10^8 rows stream.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use adflow::event::{EventKind, EventRecord, BOT_AGENT_PATTERNS};
use adflow::money::{Micros, MICROS_PER_UNIT};
use adflow::timestamp::{Millis, DAY_MS, MINUTE_MS, SECOND_MS};

use crate::catalog::{
    browser_agent_range, datacenter_networks, pick_weighted, total_weight, Ipv4Net, BOT_AGENTS,
    BROWSER_AGENTS, CONVERSION_TYPES, COUNTRIES, DEVICE_TYPES, RESIDENTIAL_FIRST_OCTETS,
};
use crate::config::GeneratorConfig;
use crate::labels::{Anomaly, AnomalySet, Label};
use crate::rng::{mix64, Rng};

/// One emitted row and its ground-truth labels (empty for normal rows).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeneratedEvent {
    /// The row as written to files.
    pub record: EventRecord,
    /// Why this row is anomalous, if it is. A resend carries only
    /// `duplicate`: its other labels were reported with its original.
    pub labels: Vec<Label>,
}

/// Click-through rate of bot users.
const BOT_CTR: f64 = 0.10;
/// Emission jitter of ordinary rows (network noise), capped at half the
/// out-of-order threshold so that ordinary rows are never labelled.
const BASE_JITTER_MS: Millis = 200;
/// Clicks per flood.
const FLOOD_CLICKS: (i64, i64) = (150, 400);
/// Revenue of a conversion, in currency units (log-uniform).
const REVENUE_UNITS: (f64, f64) = (5.0, 500.0);
/// Media cost per impression in micros (a CPM of 0.5–5 units).
const CPM_MICROS_PER_IMPRESSION: (i64, i64) = (500, 5_000);
/// Media cost per click in micros (a CPC of 0.1–2 units).
const CPC_MICROS: (i64, i64) = (100_000, 2_000_000);
/// Page views after every genuine click.
const PAGE_VIEWS: (i64, i64) = (1, 3);

const NO_AD: u32 = u32::MAX;
/// Catalogues up to this many ads have their names rendered once.
const MAX_RENDERED_ADS: usize = 1 << 16;
const NO_PUBLISHER: u16 = u16::MAX;
const NO_AGENT: u16 = u16::MAX;
/// Agent codes at or above this are indices into `BOT_AGENTS`.
const BOT_AGENT_BASE: u16 = 0x100;

/// Salts that keep the per-entity hash streams independent.
const SALT_ACTOR: u64 = 0x6163_746f_7273_0001;
const SALT_AD: u64 = 0x6164_7300_0000_0002;
const SALT_CAMPAIGN: u64 = 0x6361_6d70_0000_0003;
const SALT_SETUP: u64 = 0x7365_7475_7000_0004;

fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Who sends an event: a user of the pool, or an anomaly's made-up actor.
#[derive(Clone, Copy, Debug)]
struct Actor {
    id: u64,
    device_hash: u64,
    anonymous: bool,
    bot: bool,
    country: u8,
    device: u8,
    agent: u16,
    ip: u32,
}

/// An event in flight, compact; rendered to an `EventRecord` on emission.
#[derive(Clone, Copy, Debug)]
struct Sim {
    ts: Millis,
    no: u64,
    kind: EventKind,
    user: u64,
    device_hash: u64,
    anonymous: bool,
    ad: u32,
    publisher: u16,
    agent: u16,
    country: u8,
    device: u8,
    conversion_type: u8,
    ip: u32,
    cost: Micros,
    revenue: Micros,
    labels: AnomalySet,
    /// Label detail: the flood number, or the partner event's number.
    aux: u64,
    /// Label detail: the flood size, the injection lead, the click's country.
    aux2: u32,
    /// Non-zero on a resend: its delay after the original.
    resend_delay: u32,
}

struct Pending {
    arrival: Millis,
    seq: u64,
    sim: Sim,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// Reversed, so that `BinaryHeap` pops the earliest arrival first; ties
    /// go to the event scheduled first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.arrival, other.seq).cmp(&(self.arrival, self.seq))
    }
}

/// A deterministic stream of ad traffic: an iterator of exactly
/// `config.events` [`GeneratedEvent`]s in arrival order.
///
/// ```
/// use adflow_datagen::{Generator, GeneratorConfig};
/// let config = GeneratorConfig { events: 1_000, ..GeneratorConfig::default() };
/// let rows: Vec<_> = Generator::new(config.clone()).collect();
/// assert_eq!(rows.len(), 1_000);
/// assert_eq!(rows, Generator::new(config).collect::<Vec<_>>());
/// assert!(rows.iter().any(|row| row.record.kind == "impression"));
/// ```
pub struct Generator {
    config: GeneratorConfig,
    rng: Rng,
    seed_text: String,
    /// `e-<seed>-`, the prefix of every event id.
    event_prefix: String,
    /// `(campaign_id, ad_id)` of every ad, rendered once (small catalogues only).
    ad_names: Vec<(String, String)>,
    /// `pub-NNN` of every publisher.
    publisher_names: Vec<String>,
    actor_key: u64,
    // Catalogue.
    ad_cdf: Vec<f64>,
    ad_by_rank: Vec<u32>,
    ad_ctr: Vec<f64>,
    campaign_cvr: Vec<f64>,
    campaign_cpm: Vec<Micros>,
    campaign_cpc: Vec<Micros>,
    publisher_cdf: Vec<f64>,
    datacenter: Vec<Ipv4Net>,
    diurnal: Vec<f64>,
    base_rate_per_ms: f64,
    user_pool: u64,
    orphan_chance: f64,
    base_jitter_ms: Millis,
    campaign_width: usize,
    log_delay: (f64, f64),
    log_revenue: (f64, f64),
    // Simulation state.
    clock: f64,
    next_base_ts: Millis,
    next_no: u64,
    next_seq: u64,
    next_extra_actor: u64,
    heap: BinaryHeap<Pending>,
    impressions: u64,
    flood_at: Vec<u64>,
    floods: u64,
    emitted: u64,
    max_emitted_ts: Option<Millis>,
}

/// Normalised cumulative weights of `1 / rank^exponent` for ranks `1..=n`.
fn zipf_cdf(n: usize, exponent: f64) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(n);
    let mut total = 0.0;
    for rank in 1..=n {
        total += (rank as f64).powf(-exponent);
        cdf.push(total);
    }
    for value in &mut cdf {
        *value /= total;
    }
    cdf
}

fn pick_cdf(cdf: &[f64], draw: f64) -> usize {
    cdf.partition_point(|&value| value <= draw)
        .min(cdf.len() - 1)
}

fn sanitize(mut config: GeneratorConfig) -> GeneratorConfig {
    let probability = |rate: f64| {
        if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        }
    };
    let range = |(low, high): (f64, f64)| {
        let (low, high) = (probability(low), probability(high));
        (low.min(high), low.max(high))
    };
    config.campaigns = config.campaigns.clamp(1, 999_999);
    config.ads_per_campaign = config
        .ads_per_campaign
        .clamp(1, 10_000_000 / config.campaigns);
    config.publishers = config.publishers.clamp(1, u32::from(NO_PUBLISHER));
    config.span_ms = config.span_ms.max(MINUTE_MS);
    config.anonymous_users = probability(config.anonymous_users);
    if !config.zipf_exponent.is_finite() || config.zipf_exponent < 0.0 {
        config.zipf_exponent = 1.1;
    }
    config.ctr_range = range(config.ctr_range);
    config.cvr_range = range(config.cvr_range);
    config.max_conversion_delay_ms = config.max_conversion_delay_ms.max(SECOND_MS);
    let rates = &mut config.anomalies;
    for rate in [
        &mut rates.duplicate,
        &mut rates.out_of_order,
        &mut rates.late,
        &mut rates.bot_users,
        &mut rates.missing_user_agent,
        &mut rates.datacenter_clicks,
        &mut rates.click_injection,
        &mut rates.clicks_without_impression,
        &mut rates.geo_mismatch,
    ] {
        *rate = probability(*rate);
    }
    rates.out_of_order = rates.out_of_order.min(1.0 - rates.late);
    let floods = rates.click_floods_per_million;
    rates.click_floods_per_million = if floods.is_finite() {
        floods.clamp(0.0, 100_000.0)
    } else {
        0.0
    };
    config.max_jitter_ms = config.max_jitter_ms.max(0);
    config.out_of_order_threshold_ms = config.out_of_order_threshold_ms.max(0);
    config.max_lateness_ms = config.max_lateness_ms.max(config.max_jitter_ms + 1);
    config
}

impl Generator {
    /// A generator of `config` (out-of-range values are clamped; use
    /// [`GeneratorConfig::validate`] to report them instead).
    pub fn new(config: GeneratorConfig) -> Generator {
        let config = sanitize(config);
        let seed = config.seed;
        let mut setup = Rng::seed_from_u64(seed ^ SALT_SETUP);
        let campaigns = config.campaigns as usize;
        let per_campaign = config.ads_per_campaign as usize;
        let ads = campaigns * per_campaign;

        // Popularity rank -> ad, shuffled so that popular ads spread over campaigns.
        let mut ad_by_rank: Vec<u32> = (0..ads as u32).collect();
        for i in (1..ads).rev() {
            let j = setup.below(i as u64 + 1) as usize;
            ad_by_rank.swap(i, j);
        }
        let (ctr_low, ctr_high) = config.ctr_range;
        let ad_ctr = (0..ads as u64)
            .map(|ad| ctr_low + (ctr_high - ctr_low) * unit(mix64(seed ^ SALT_AD ^ mix64(ad))))
            .collect();
        let (cvr_low, cvr_high) = config.cvr_range;
        let campaign_hash = |campaign: u64, field: u64| {
            unit(mix64(seed ^ SALT_CAMPAIGN ^ mix64(campaign * 4 + field)))
        };
        let campaign_cvr = (0..campaigns as u64)
            .map(|c| cvr_low + (cvr_high - cvr_low) * campaign_hash(c, 0))
            .collect();
        let scaled = |(low, high): (i64, i64), draw: f64| low + ((high - low) as f64 * draw) as i64;
        let campaign_cpm = (0..campaigns as u64)
            .map(|c| scaled(CPM_MICROS_PER_IMPRESSION, campaign_hash(c, 1)))
            .collect();
        let campaign_cpc = (0..campaigns as u64)
            .map(|c| scaled(CPC_MICROS, campaign_hash(c, 2)))
            .collect();

        // Traffic peaks at 20:00 UTC (1.6x the mean) and bottoms at 08:00 (0.4x).
        let diurnal = (0..1440)
            .map(|minute| {
                let hours = f64::from(minute) / 60.0;
                1.0 + 0.6 * ((hours - 20.0) / 24.0 * std::f64::consts::TAU).cos()
            })
            .collect();

        // Expected rows per impression, to turn `events` into an impression rate.
        let rates = &config.anomalies;
        let mean_ctr = (ctr_low + ctr_high) / 2.0;
        let mean_cvr = (cvr_low + cvr_high) / 2.0;
        let mean_page_views = (PAGE_VIEWS.0 + PAGE_VIEWS.1) as f64 / 2.0;
        let genuine = 1.0 - rates.datacenter_clicks;
        let per_click =
            1.0 + genuine * (mean_page_views + mean_cvr * (1.0 + rates.click_injection));
        let per_impression = (1.0
            + (1.0 - rates.bot_users) * mean_ctr * per_click
            + rates.bot_users * BOT_CTR
            + rates.clicks_without_impression * mean_ctr)
            * (1.0 + rates.duplicate);
        let flood_count =
            (rates.click_floods_per_million * config.events as f64 / 1e6).round() as u64;
        let flood_rows = flood_count as f64 * (FLOOD_CLICKS.0 + FLOOD_CLICKS.1 + 2) as f64 / 2.0;
        let expected_impressions = ((config.events as f64 - flood_rows) / per_impression).max(1.0);
        let base_rate_per_ms = expected_impressions / config.span_ms as f64;
        let mut flood_at: Vec<u64> = (0..flood_count)
            .map(|_| (expected_impressions * setup.uniform(0.02, 0.9)) as u64)
            .collect();
        flood_at.sort_unstable();
        flood_at.reverse(); // popped from the end, earliest first

        let user_pool = config.user_pool();
        let log = |low: f64, high: f64| (low.ln(), high.ln());
        let mut generator = Generator {
            rng: Rng::seed_from_u64(seed),
            seed_text: seed.to_string(),
            event_prefix: format!("e-{seed}-"),
            ad_names: Vec::new(),
            publisher_names: (1..=u64::from(config.publishers))
                .map(|publisher| {
                    let mut name = String::from("pub-");
                    push_padded(&mut name, publisher, 3);
                    name
                })
                .collect(),
            actor_key: mix64(seed ^ SALT_ACTOR),
            ad_cdf: zipf_cdf(ads, config.zipf_exponent),
            ad_by_rank,
            ad_ctr,
            campaign_cvr,
            campaign_cpm,
            campaign_cpc,
            publisher_cdf: zipf_cdf(config.publishers as usize, 0.8),
            datacenter: datacenter_networks(),
            diurnal,
            base_rate_per_ms,
            user_pool,
            orphan_chance: rates.clicks_without_impression * mean_ctr,
            base_jitter_ms: BASE_JITTER_MS.min(config.out_of_order_threshold_ms / 2),
            campaign_width: campaigns.to_string().len().max(3),
            // A feed squeezed into seconds (the stream example's) still
            // converts within its span.
            log_delay: log(
                MINUTE_MS.min(config.max_conversion_delay_ms / 60) as f64,
                config.max_conversion_delay_ms as f64,
            ),
            log_revenue: log(REVENUE_UNITS.0, REVENUE_UNITS.1),
            clock: config.start_ms as f64,
            next_base_ts: config.start_ms,
            next_no: 0,
            next_seq: 0,
            next_extra_actor: user_pool,
            heap: BinaryHeap::new(),
            impressions: 0,
            flood_at,
            floods: 0,
            emitted: 0,
            max_emitted_ts: None,
            config,
        };
        if ads <= MAX_RENDERED_ADS {
            generator.ad_names = (0..ads as u32)
                .map(|ad| {
                    let (mut campaign_id, mut ad_id) = (String::new(), String::new());
                    generator.render_ad(ad, &mut campaign_id, &mut ad_id);
                    (campaign_id, ad_id)
                })
                .collect();
        }
        generator.advance_clock();
        generator
    }

    /// The (clamped) configuration in use.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Rows emitted so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Writes the next row into `out`, reusing its buffers (no allocation
    /// per row once they have grown); `false` once `config.events` rows have
    /// been emitted.
    pub fn next_into(&mut self, out: &mut GeneratedEvent) -> bool {
        if self.emitted >= self.config.events {
            return false;
        }
        loop {
            if let Some(top) = self.heap.peek() {
                // Everything generated from now on has event time, hence
                // arrival, at or after `next_base_ts`.
                if top.arrival <= self.next_base_ts {
                    if let Some(pending) = self.heap.pop() {
                        self.emit(&pending, out);
                        return true;
                    }
                }
            }
            self.step();
        }
    }

    /// Draws the time of the next impression.
    fn advance_clock(&mut self) {
        let minute = (self.next_base_ts.rem_euclid(DAY_MS) / MINUTE_MS) as usize;
        let rate = self.base_rate_per_ms * self.diurnal[minute.min(1439)];
        self.clock += self.rng.exponential() / rate;
        self.next_base_ts = self.clock as Millis;
    }

    /// Generates the impression at `next_base_ts` (and the anomalies due
    /// then) with all their consequences.
    fn step(&mut self) {
        let ts = self.next_base_ts;
        self.impressions += 1;
        while self
            .flood_at
            .last()
            .is_some_and(|&at| at <= self.impressions)
        {
            self.flood_at.pop();
            self.click_flood(ts);
        }
        if self.rng.chance(self.orphan_chance) {
            self.click_without_impression(ts);
        }
        self.impression(ts);
        self.advance_clock();
    }

    fn pick_user(&mut self) -> u64 {
        // Density falling as 1/x^(1/3): a few heavy users, a long tail.
        let u = self.rng.next_f64();
        ((self.user_pool as f64 * u * u.sqrt()) as u64).min(self.user_pool - 1)
    }

    fn pick_ad(&mut self) -> u32 {
        let rank = pick_cdf(&self.ad_cdf, self.rng.next_f64());
        self.ad_by_rank[rank]
    }

    fn pick_publisher(&mut self) -> u16 {
        pick_cdf(&self.publisher_cdf, self.rng.next_f64()) as u16
    }

    fn campaign_of(&self, ad: u32) -> usize {
        (ad / self.config.ads_per_campaign) as usize
    }

    /// A price around `base` (±20%), in micros.
    fn price(&mut self, base: Micros) -> Micros {
        (base as f64 * self.rng.uniform(0.8, 1.2)).round().max(1.0) as Micros
    }

    fn residential_ip(hash: u64) -> u32 {
        let first =
            RESIDENTIAL_FIRST_OCTETS[(hash % RESIDENTIAL_FIRST_OCTETS.len() as u64) as usize];
        let last = 1 + (hash >> 40) % 254;
        (u32::from(first) << 24) | (((hash >> 8) & 0xffff) as u32) << 8 | last as u32
    }

    /// The attributes of actor `id`, a pure function of the seed and `id`.
    fn actor(&self, id: u64, may_be_bot: bool) -> Actor {
        let hash = mix64(self.actor_key ^ mix64(id));
        let more = mix64(hash ^ SALT_ACTOR);
        let country = pick_weighted(
            &COUNTRIES,
            ((hash & 0xffff) * total_weight(&COUNTRIES)) >> 16,
        );
        let device = pick_weighted(
            &DEVICE_TYPES,
            (((hash >> 16) & 0xffff) * total_weight(&DEVICE_TYPES)) >> 16,
        );
        let bot = may_be_bot && unit(more) < self.config.anomalies.bot_users;
        let agent = if bot {
            BOT_AGENT_BASE + ((hash >> 32) % BOT_AGENTS.len() as u64) as u16
        } else {
            let agents = browser_agent_range(device);
            (agents.start + ((hash >> 32) % agents.len() as u64) as usize) as u16
        };
        Actor {
            id,
            device_hash: mix64(more ^ hash),
            anonymous: unit(mix64(more)) < self.config.anonymous_users,
            bot,
            country: country as u8,
            device: device as u8,
            agent,
            ip: Self::residential_ip(more),
        }
    }

    fn extra_actor(&mut self) -> Actor {
        let id = self.next_extra_actor;
        self.next_extra_actor += 1;
        self.actor(id, false)
    }

    /// A new event of `actor` (numbered now), with its user-agent labels.
    fn sim(
        &mut self,
        ts: Millis,
        kind: EventKind,
        actor: &Actor,
        ad: u32,
        publisher: u16,
        cost: Micros,
    ) -> Sim {
        let no = self.next_no;
        self.next_no += 1;
        let mut labels = AnomalySet::default();
        let mut agent = actor.agent;
        if actor.bot {
            labels = labels.with(Anomaly::BotUserAgent);
        } else if self.rng.chance(self.config.anomalies.missing_user_agent) {
            agent = NO_AGENT;
            labels = labels.with(Anomaly::MissingUserAgent);
        }
        Sim {
            ts,
            no,
            kind,
            user: actor.id,
            device_hash: actor.device_hash,
            anonymous: actor.anonymous,
            ad,
            publisher,
            agent,
            country: actor.country,
            device: actor.device,
            conversion_type: 0,
            ip: actor.ip,
            cost,
            revenue: 0,
            labels,
            aux: 0,
            aux2: 0,
            resend_delay: 0,
        }
    }

    /// Parks `sim` until its arrival (and maybe a resend after it).
    fn schedule(&mut self, mut sim: Sim) {
        let rates = &self.config.anomalies;
        let draw = self.rng.next_f64();
        let delay = if draw < rates.late {
            sim.labels = sim.labels.with(Anomaly::Late);
            self.rng
                .between(self.config.max_jitter_ms + 1, self.config.max_lateness_ms)
        } else if draw < rates.late + rates.out_of_order {
            self.rng.between(0, self.config.max_jitter_ms)
        } else {
            self.rng.between(0, self.base_jitter_ms)
        };
        let arrival = sim.ts + delay;
        self.push(arrival, sim);
        if self.rng.chance(self.config.anomalies.duplicate) {
            let resend_delay = self.rng.between(100, 30 * SECOND_MS);
            let mut copy = sim;
            copy.resend_delay = resend_delay as u32;
            self.push(arrival + resend_delay, copy);
        }
    }

    fn push(&mut self, arrival: Millis, sim: Sim) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Pending { arrival, seq, sim });
    }

    fn impression(&mut self, ts: Millis) {
        let user = self.pick_user();
        let actor = self.actor(user, true);
        let ad = self.pick_ad();
        let publisher = self.pick_publisher();
        let campaign = self.campaign_of(ad);
        let cost = self.price(self.campaign_cpm[campaign]);
        let impression = self.sim(ts, EventKind::Impression, &actor, ad, publisher, cost);
        self.schedule(impression);

        if actor.bot {
            if self.rng.chance(BOT_CTR) {
                let click_ts = ts + self.rng.between(500, 5 * SECOND_MS);
                let cost = self.price(self.campaign_cpc[campaign]);
                let click = self.sim(click_ts, EventKind::Click, &actor, ad, publisher, cost);
                self.schedule(click);
            }
            return;
        }
        if !self.rng.chance(self.ad_ctr[ad as usize]) {
            return;
        }
        let click_ts = ts + self.rng.between(SECOND_MS, 30 * SECOND_MS);
        let cost = self.price(self.campaign_cpc[campaign]);
        let mut click = self.sim(click_ts, EventKind::Click, &actor, ad, publisher, cost);
        if self.rng.chance(self.config.anomalies.datacenter_clicks) && !self.datacenter.is_empty() {
            click.ip = self.datacenter_ip();
            click.labels = click.labels.with(Anomaly::DatacenterIp);
            self.schedule(click);
            return;
        }
        self.schedule(click);
        let mut page_ts = click_ts;
        for _ in 0..self.rng.between(PAGE_VIEWS.0, PAGE_VIEWS.1) {
            page_ts += self.rng.between(2 * SECOND_MS, 2 * MINUTE_MS);
            let page_view = self.sim(page_ts, EventKind::PageView, &actor, ad, NO_PUBLISHER, 0);
            self.schedule(page_view);
        }
        if self.rng.chance(self.campaign_cvr[campaign]) {
            self.conversion(&actor, &click);
        }
    }

    fn conversion(&mut self, actor: &Actor, click: &Sim) {
        let (low, high) = self.log_delay;
        let delay = self.rng.uniform(low, high).exp() as Millis;
        let ts = click.ts + delay;
        let mut conversion = self.sim(ts, EventKind::Conversion, actor, NO_AD, NO_PUBLISHER, 0);
        let (low, high) = self.log_revenue;
        conversion.revenue =
            (self.rng.uniform(low, high).exp() * MICROS_PER_UNIT as f64).round() as Micros;
        let draw = self.rng.below(total_weight(&CONVERSION_TYPES));
        conversion.conversion_type = pick_weighted(&CONVERSION_TYPES, draw) as u8;
        if self.rng.chance(self.config.anomalies.geo_mismatch) {
            let shift = 1 + self.rng.below(COUNTRIES.len() as u64 - 1) as u8;
            conversion.country = (click.country + shift) % COUNTRIES.len() as u8;
            conversion.ip = Self::residential_ip(self.rng.next_u64());
            conversion.labels = conversion.labels.with(Anomaly::GeoMismatch);
            conversion.aux = click.no;
            conversion.aux2 = u32::from(click.country);
        }
        self.schedule(conversion);

        if self.rng.chance(self.config.anomalies.click_injection) {
            let lead = self.rng.between(SECOND_MS, 10 * SECOND_MS);
            let mut ad = self.pick_ad();
            for _ in 0..8 {
                if ad != click.ad {
                    break;
                }
                ad = self.pick_ad();
            }
            let publisher = self.pick_publisher();
            let cost = self.price(self.campaign_cpc[self.campaign_of(ad)]);
            let mut injected = self.sim(ts - lead, EventKind::Click, actor, ad, publisher, cost);
            injected.labels = injected.labels.with(Anomaly::ClickInjection);
            injected.aux = conversion.no;
            injected.aux2 = lead as u32;
            self.schedule(injected);
        }
    }

    fn click_flood(&mut self, ts: Millis) {
        self.floods += 1;
        let actor = self.extra_actor();
        let ad = self.pick_ad();
        let publisher = self.pick_publisher();
        let campaign = self.campaign_of(ad);
        // The flooder loads the ad once, then hammers it.
        let cost = self.price(self.campaign_cpm[campaign]);
        let impression = self.sim(ts, EventKind::Impression, &actor, ad, publisher, cost);
        self.schedule(impression);
        let clicks = self.rng.between(FLOOD_CLICKS.0, FLOOD_CLICKS.1);
        let first = ts + self.rng.between(SECOND_MS, 5 * SECOND_MS);
        let window = self.rng.between(20 * SECOND_MS, 59 * SECOND_MS);
        for _ in 0..clicks {
            let click_ts = first + self.rng.between(0, window);
            let cost = self.price(self.campaign_cpc[campaign]);
            let mut click = self.sim(click_ts, EventKind::Click, &actor, ad, publisher, cost);
            click.labels = click.labels.with(Anomaly::ClickFlood);
            click.aux = self.floods;
            click.aux2 = clicks as u32;
            self.schedule(click);
        }
    }

    fn click_without_impression(&mut self, ts: Millis) {
        let actor = self.extra_actor();
        let ad = self.pick_ad();
        let publisher = self.pick_publisher();
        let cost = self.price(self.campaign_cpc[self.campaign_of(ad)]);
        let mut click = self.sim(ts, EventKind::Click, &actor, ad, publisher, cost);
        click.labels = click.labels.with(Anomaly::ClickWithoutImpression);
        self.schedule(click);
    }

    fn datacenter_ip(&mut self) -> u32 {
        let network = self.datacenter[self.rng.below(self.datacenter.len() as u64) as usize];
        let host_mask = u32::MAX.checked_shr(u32::from(network.prefix)).unwrap_or(0);
        let host = (self.rng.next_u64() as u32 & host_mask).max(1);
        network.network | host
    }

    fn emit(&mut self, pending: &Pending, out: &mut GeneratedEvent) {
        let sim = &pending.sim;
        self.render(sim, &mut out.record);
        out.labels.clear();
        if sim.resend_delay > 0 {
            out.labels.push(Label {
                anomaly: Anomaly::Duplicate,
                detail: format!("resent {} ms after the original", sim.resend_delay),
            });
        } else {
            let mut labels = sim.labels;
            let behind = self
                .max_emitted_ts
                .map_or(0, |max| max.saturating_sub(sim.ts));
            if !labels.contains(Anomaly::Late) && behind > self.config.out_of_order_threshold_ms {
                labels = labels.with(Anomaly::OutOfOrder);
            }
            if !labels.is_empty() {
                for anomaly in Anomaly::ALL {
                    if labels.contains(anomaly) {
                        let detail = self.detail(anomaly, pending, &out.record, behind);
                        out.labels.push(Label { anomaly, detail });
                    }
                }
            }
        }
        self.max_emitted_ts = Some(self.max_emitted_ts.map_or(sim.ts, |max| max.max(sim.ts)));
        self.emitted += 1;
    }

    fn detail(
        &self,
        anomaly: Anomaly,
        pending: &Pending,
        record: &EventRecord,
        behind: Millis,
    ) -> String {
        let sim = &pending.sim;
        let seed = &self.seed_text;
        match anomaly {
            Anomaly::Duplicate => format!("resent {} ms after the original", sim.resend_delay),
            Anomaly::OutOfOrder => {
                format!("arrived after rows up to {behind} ms later in event time")
            }
            Anomaly::Late => format!(
                "arrived {} ms after its event time",
                pending.arrival - sim.ts
            ),
            Anomaly::ClickFlood => format!(
                "flood {}: {} clicks within a minute from {} on {}",
                sim.aux, sim.aux2, record.ip, record.ad_id
            ),
            Anomaly::BotUserAgent => {
                let lower = record.user_agent.to_ascii_lowercase();
                let pattern = BOT_AGENT_PATTERNS
                    .iter()
                    .find(|pattern| lower.contains(*pattern))
                    .unwrap_or(&"?");
                format!("user agent matches bot pattern {pattern:?}")
            }
            Anomaly::MissingUserAgent => "no user agent".to_owned(),
            Anomaly::DatacenterIp => {
                let network = self
                    .datacenter
                    .iter()
                    .find(|network| network.contains(sim.ip))
                    .map_or_else(|| "?".to_owned(), ToString::to_string);
                format!("{} is in datacenter range {network}", record.ip)
            }
            Anomaly::ClickInjection => format!(
                "injected {} ms before conversion e-{seed}-{}",
                sim.aux2, sim.aux
            ),
            Anomaly::ClickWithoutImpression => "the user was never served an impression".to_owned(),
            Anomaly::GeoMismatch => format!(
                "conversion from {} but click e-{seed}-{} from {}",
                record.country,
                sim.aux,
                COUNTRIES[usize::from(sim.aux2 as u8)].0
            ),
        }
    }

    /// Writes `cmp-NNN` and `cmp-NNN-ad-M` of `ad`.
    fn render_ad(&self, ad: u32, campaign_id: &mut String, ad_id: &mut String) {
        let campaign = u64::from(ad / self.config.ads_per_campaign) + 1;
        let number = u64::from(ad % self.config.ads_per_campaign) + 1;
        campaign_id.push_str("cmp-");
        push_padded(campaign_id, campaign, self.campaign_width);
        ad_id.push_str(campaign_id);
        ad_id.push_str("-ad-");
        push_u64(ad_id, number);
    }

    fn render(&self, sim: &Sim, record: &mut EventRecord) {
        record.event_id.clear();
        record.event_id.push_str(&self.event_prefix);
        push_u64(&mut record.event_id, sim.no);

        record.kind.clear();
        record.kind.push_str(sim.kind.as_str());
        record.ts = sim.ts;

        record.user_id.clear();
        if !sim.anonymous {
            record.user_id.push_str("u-");
            push_u64(&mut record.user_id, sim.user);
        }
        record.device_id.clear();
        record.device_id.push_str("d-");
        push_hex(&mut record.device_id, sim.device_hash);

        record.campaign_id.clear();
        record.ad_id.clear();
        if sim.ad != NO_AD {
            match self.ad_names.get(sim.ad as usize) {
                Some((campaign_id, ad_id)) => {
                    record.campaign_id.push_str(campaign_id);
                    record.ad_id.push_str(ad_id);
                }
                None => self.render_ad(sim.ad, &mut record.campaign_id, &mut record.ad_id),
            }
        }
        record.publisher_id.clear();
        if let Some(name) = self.publisher_names.get(usize::from(sim.publisher)) {
            record.publisher_id.push_str(name);
        }
        record.ip.clear();
        push_ipv4(&mut record.ip, sim.ip);
        record.user_agent.clear();
        if sim.agent != NO_AGENT {
            let agent = if sim.agent >= BOT_AGENT_BASE {
                BOT_AGENTS[usize::from(sim.agent - BOT_AGENT_BASE) % BOT_AGENTS.len()]
            } else {
                BROWSER_AGENTS[usize::from(sim.agent) % BROWSER_AGENTS.len()]
            };
            record.user_agent.push_str(agent);
        }
        record.country.clear();
        record
            .country
            .push_str(COUNTRIES[usize::from(sim.country) % COUNTRIES.len()].0);
        record.device_type.clear();
        record
            .device_type
            .push_str(DEVICE_TYPES[usize::from(sim.device) % DEVICE_TYPES.len()].0);
        record.cost_micros = sim.cost;
        record.revenue_micros = sim.revenue;
        record.conversion_type.clear();
        record.order_id.clear();
        if sim.kind == EventKind::Conversion {
            record.conversion_type.push_str(
                CONVERSION_TYPES[usize::from(sim.conversion_type) % CONVERSION_TYPES.len()].0,
            );
            record.order_id.push_str("o-");
            record.order_id.push_str(&self.seed_text);
            record.order_id.push('-');
            push_u64(&mut record.order_id, sim.no);
        }
    }
}

impl Iterator for Generator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        let mut event = GeneratedEvent::default();
        self.next_into(&mut event).then_some(event)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = usize::try_from(self.config.events - self.emitted).unwrap_or(usize::MAX);
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for Generator {}

/// Appends ASCII bytes (digits, hex, dots) to a string.
fn push_ascii(text: &mut String, bytes: &[u8]) {
    // Always ASCII here; `from_utf8` is a cheap check on a few bytes.
    text.push_str(std::str::from_utf8(bytes).unwrap_or_default());
}

/// Writes the decimal digits of `value` at the end of `buffer`; returns where they start.
fn digits_into(buffer: &mut [u8; 20], mut value: u64) -> usize {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return start;
        }
    }
}

fn push_u64(text: &mut String, value: u64) {
    let mut buffer = [0u8; 20];
    let start = digits_into(&mut buffer, value);
    push_ascii(text, &buffer[start..]);
}

fn push_padded(text: &mut String, value: u64, width: usize) {
    let mut buffer = [0u8; 20];
    let start = digits_into(&mut buffer, value);
    for _ in buffer.len() - start..width {
        text.push('0');
    }
    push_ascii(text, &buffer[start..]);
}

fn push_hex(text: &mut String, value: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buffer = [0u8; 16];
    for (i, digit) in buffer.iter_mut().enumerate() {
        *digit = HEX[((value >> ((15 - i) * 4)) & 0xf) as usize];
    }
    push_ascii(text, &buffer);
}

fn push_ipv4(text: &mut String, address: u32) {
    let mut buffer = [0u8; 15];
    let mut length = 0;
    for (i, octet) in address.to_be_bytes().into_iter().enumerate() {
        if i > 0 {
            buffer[length] = b'.';
            length += 1;
        }
        let mut digits = [0u8; 20];
        let start = digits_into(&mut digits, u64::from(octet));
        let count = digits.len() - start;
        buffer[length..length + count].copy_from_slice(&digits[start..]);
        length += count;
    }
    push_ascii(text, &buffer[..length]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_rendering() {
        let mut text = String::new();
        push_u64(&mut text, 0);
        text.push(' ');
        push_u64(&mut text, u64::MAX);
        text.push(' ');
        push_padded(&mut text, 42, 3);
        text.push(' ');
        push_padded(&mut text, 1234, 3);
        text.push(' ');
        push_hex(&mut text, 0xabc);
        text.push(' ');
        push_ipv4(&mut text, 0x0a00_ff01);
        text.push(' ');
        push_ipv4(&mut text, u32::MAX);
        assert_eq!(
            text,
            "0 18446744073709551615 042 1234 0000000000000abc 10.0.255.1 255.255.255.255"
        );
    }

    #[test]
    fn zipf_cdf_is_monotone_and_skewed() {
        let cdf = zipf_cdf(1000, 1.1);
        assert!(cdf.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!((cdf[999] - 1.0).abs() < 1e-12);
        assert!(cdf[9] > 0.3, "top 10 of 1000 ads take {:.2}", cdf[9]);
        assert_eq!(pick_cdf(&cdf, 0.0), 0);
        assert_eq!(pick_cdf(&cdf, 0.999_999_999_999), 999);
    }

    #[test]
    fn rows_are_in_arrival_order_with_time_flowing() {
        let config = GeneratorConfig {
            events: 20_000,
            ..GeneratorConfig::default()
        };
        let rows: Vec<GeneratedEvent> = Generator::new(config).collect();
        assert_eq!(rows.len(), 20_000);
        let first = rows[0].record.ts;
        let last = rows[rows.len() - 1].record.ts;
        assert!(last - first > 5 * DAY_MS, "rows span {} ms", last - first);
    }

    #[test]
    fn sanitize_clamps_nonsense() {
        let config = GeneratorConfig {
            campaigns: 0,
            ads_per_campaign: 0,
            publishers: 0,
            ctr_range: (0.5, -1.0),
            zipf_exponent: f64::NAN,
            events: 100,
            ..GeneratorConfig::default()
        };
        let rows: Vec<GeneratedEvent> = Generator::new(config).collect();
        assert_eq!(rows.len(), 100);
    }
}
