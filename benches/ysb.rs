//! A Yahoo Streaming Benchmark-shaped query on adgen events: keep the ad
//! views (impressions), join each ad to its campaign against a static
//! table, and count views per campaign per 10-second event-time window.
//!
//! ```text
//! cargo bench --bench ysb                                  # 10M events, 1 and 2 workers
//! ADFLOW_YSB_EVENTS=1000000 cargo bench --bench ysb        # a quick look
//! ADFLOW_YSB_WORKERS=2 ADFLOW_YSB_RUNS=9 cargo bench --bench ysb
//! ```
//!
//! Data: adgen (seed 7, 100 campaigns × 10 ads) with its event time
//! compressed to 100K events per second (`span = events / 100` ms, at
//! least the minute adgen requires), about the seeds' peak load, so that a
//! campaign's 10 s window holds about 10K views as in a live stream
//! (adgen's default week would leave ~1.5 views per campaign and window). Generated once as Parquet into
//! `target/adflow-bench/ysb-<events>/`.
//!
//! Untimed: reading and parsing the files into `Event`s in memory, and
//! building the static ad → campaign table (adgen's catalogue, as the
//! impressions and clicks carry it). Timed, from the in-memory events to
//! the complete answer:
//! - `baseline`: a plain loop on one thread with the standard library's
//!   `HashMap`s (filter, look the ad up, count per (campaign, window));
//! - `dataflow, W workers`: timely on W threads; each worker reads its
//!   share of the events in chunks, keeps views, joins the ad to its
//!   campaign and pre-aggregates per (campaign, window) in a local table;
//!   after each chunk the partial counts (a few hundred small records) are
//!   exchanged by campaign and summed by the worker that owns the campaign.
//!   The campaign on the event is never read: only `ts`, `kind` and `ad_id`.
//!
//! Each dataflow answer is checked equal to the baseline's before its time
//! is printed. Every configuration runs `ADFLOW_YSB_RUNS` times (default
//! 5); the median is reported, with the fastest. Throughput is input events
//! (all kinds) per second of wall time.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adflow::event::{Event, EventKind, Id};
use adflow::sources::discover;
use adflow::write::FileFormat;
use adflow_datagen::GeneratorConfig;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::{source, Operator};

#[path = "support/e2e.rs"]
mod e2e;

use e2e::{dataset_with, env_list, env_or, read_all, record, SEED};

/// Window length, as in YSB.
const WINDOW_MS: i64 = 10_000;

/// Events a worker reads between two emissions of its partial counts.
const CHUNK: usize = 1 << 20;

/// The answer: views per (campaign, window start).
type Counts = BTreeMap<(Id, i64), u64>;

/// Multiplicative hashing (Fibonacci), for keys that are hashes already
/// (ad ids) or small packed integers.
#[derive(Default)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(26);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The static table: ad → campaign, and the campaigns by index.
struct Catalog {
    /// Ad id → index into `campaigns`.
    ads: FastMap<Id, u32>,
    /// Campaign ids, in the order first seen.
    campaigns: Vec<Id>,
}

impl Catalog {
    /// adgen's ad → campaign table, as its impressions and clicks carry it;
    /// fails if an ad appears under two campaigns.
    fn of(events: &[Event]) -> anyhow::Result<Catalog> {
        let mut ads = FastMap::default();
        let mut campaigns = Vec::new();
        let mut index_of = HashMap::new();
        for event in events {
            let (Some(ad), Some(campaign)) = (event.ad_id, event.campaign_id) else {
                continue;
            };
            let index = *index_of.entry(campaign).or_insert_with(|| {
                campaigns.push(campaign);
                (campaigns.len() - 1) as u32
            });
            let known = *ads.entry(ad).or_insert(index);
            anyhow::ensure!(known == index, "ad {ad:?} belongs to two campaigns");
        }
        Ok(Catalog { ads, campaigns })
    }
}

/// A partial count: (campaign index, window number) packed, and views.
type Partial = (u64, u64);

fn pack(campaign: u32, window: i64) -> u64 {
    (u64::from(campaign) << 40) | ((window as u64) & ((1 << 40) - 1))
}

fn unpack(key: u64, catalog: &Catalog) -> (Id, i64) {
    let window = (key & ((1 << 40) - 1)) as i64;
    // Windows are after 1970, so the 40 low bits hold them unsigned.
    (catalog.campaigns[(key >> 40) as usize], window * WINDOW_MS)
}

/// The plain loop: one thread, standard collections, the join as a lookup.
fn baseline(events: &[Event], ads: &HashMap<Id, Id>) -> Counts {
    let mut counts: HashMap<(Id, i64), u64> = HashMap::new();
    for event in events {
        if event.kind != EventKind::Impression {
            continue;
        }
        let Some(campaign) = event.ad_id.and_then(|ad| ads.get(&ad)) else {
            continue;
        };
        let window = event.ts.div_euclid(WINDOW_MS) * WINDOW_MS;
        *counts.entry((*campaign, window)).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

/// The query on `workers` timely workers.
fn dataflow(events: &Arc<Vec<Event>>, catalog: &Arc<Catalog>, workers: usize) -> Counts {
    let answers: Arc<Mutex<FastMap<u64, u64>>> = Arc::default();
    let (events, catalog_for_workers, sink) = (
        Arc::clone(events),
        Arc::clone(catalog),
        Arc::clone(&answers),
    );
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (events, catalog, sink) = (
            Arc::clone(&events),
            Arc::clone(&catalog_for_workers),
            Arc::clone(&sink),
        );
        let start = events.len() * index / peers;
        let end = events.len() * (index + 1) / peers;
        worker.dataflow::<u64, _, _>(move |scope| {
            source(scope, "YSB: views by campaign", move |capability, info| {
                let activator = scope.activator_for(info.address);
                let mut capability = Some(capability);
                let mut position = start;
                let mut local: FastMap<u64, u64> = FastMap::default();
                move |output| {
                    let Some(cap) = capability.as_mut() else {
                        return;
                    };
                    let until = (position + CHUNK).min(end);
                    for event in &events[position..until] {
                        if event.kind != EventKind::Impression {
                            continue;
                        }
                        let Some(&campaign) = event.ad_id.and_then(|ad| catalog.ads.get(&ad))
                        else {
                            continue;
                        };
                        *local
                            .entry(pack(campaign, event.ts.div_euclid(WINDOW_MS)))
                            .or_insert(0) += 1;
                    }
                    position = until;
                    output.session(&*cap).give_iterator(local.drain());
                    if position == end {
                        capability = None;
                    } else {
                        let next = cap.time() + 1;
                        cap.downgrade(&next);
                        activator.activate();
                    }
                }
            })
            .sink(
                // Campaign in the high bits: each campaign goes to one worker.
                Exchange::new(|(key, _): &Partial| key >> 40),
                "YSB: sum per campaign and window",
                move |(input, _frontier)| {
                    let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
                    input.for_each(|_time, partials| {
                        for (key, views) in partials.drain(..) {
                            *sink.entry(key).or_insert(0) += views;
                        }
                    });
                },
            );
        });
    })
    .unwrap_or_else(|error| panic!("timely: {error}"));
    for result in guards.join() {
        result.unwrap_or_else(|error| panic!("worker: {error}"));
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    answers
        .into_iter()
        .map(|(key, views)| (unpack(key, catalog), views))
        .collect()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let events: u64 = env_or("ADFLOW_YSB_EVENTS", 10_000_000);
    let runs: usize = env_or("ADFLOW_YSB_RUNS", 5).max(1);
    let workers: Vec<usize> = env_list("ADFLOW_YSB_WORKERS", "1,2");

    let config = GeneratorConfig {
        seed: SEED,
        events,
        // adgen takes at least a minute.
        span_ms: (events / 100).max(60_000) as i64,
        ..GeneratorConfig::default()
    };
    let dir = dataset_with(&format!("ysb-{events}"), config, FileFormat::Parquet)?;
    let started = Instant::now();
    let all = Arc::new(read_all(&discover(&[dir.to_string_lossy()])?));
    let catalog = Arc::new(Catalog::of(&all)?);
    let ads: HashMap<Id, Id> = catalog
        .ads
        .iter()
        .map(|(&ad, &campaign)| (ad, catalog.campaigns[campaign as usize]))
        .collect();
    let views = all
        .iter()
        .filter(|event| event.kind == EventKind::Impression)
        .count();
    println!(
        "read {} events ({views} views, {} ads, {} campaigns) in {:.2?} (untimed)",
        all.len(),
        catalog.ads.len(),
        catalog.campaigns.len(),
        started.elapsed()
    );

    let mut times = Vec::new();
    let mut expected = Counts::new();
    for _ in 0..runs {
        let started = Instant::now();
        expected = baseline(&all, &ads);
        times.push(started.elapsed());
    }
    println!(
        "baseline: {} (campaign, window) counts, {views} views",
        expected.len()
    );
    assert_eq!(expected.values().sum::<u64>() as usize, views);
    let reference = median(&mut times);
    let mut table = vec![(
        "baseline: plain loop, 1 thread".to_owned(),
        reference,
        times[0],
    )];
    let mut figures = vec![(
        "baseline | plain loop".to_owned(),
        all.len() as f64 / reference.as_secs_f64() / 1e6,
    )];

    for &workers in &workers {
        let mut times = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let answer = dataflow(&all, &catalog, workers);
            times.push(started.elapsed());
            assert!(
                answer == expected,
                "dataflow, {workers} workers: the answer differs from the baseline's"
            );
        }
        println!("dataflow, {workers} workers: answer equals the baseline's, {runs} runs");
        let typical = median(&mut times);
        figures.push((
            format!("dataflow | {workers} worker(s)"),
            all.len() as f64 / typical.as_secs_f64() / 1e6,
        ));
        table.push((format!("dataflow, {workers} workers"), typical, times[0]));
    }

    println!();
    println!("| run | median wall time | events/s (median) | events/s (fastest) | vs baseline |");
    println!("|---|---|---|---|---|");
    for (name, typical, fastest) in table {
        let rate = |time: Duration| all.len() as f64 / time.as_secs_f64() / 1e6;
        println!(
            "| {name} | {typical:.3?} | {:.1} M | {:.1} M | {:.2}× |",
            rate(typical),
            rate(fastest),
            reference.as_secs_f64() / typical.as_secs_f64()
        );
    }
    record("ysb", &figures)
}
