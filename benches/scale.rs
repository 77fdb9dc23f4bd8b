//! Scaling: the subset pipeline of `benches/engines.rs` (dedup, hourly
//! metrics, last-touch attribution, no fraud) from Parquet on 2 workers at
//! growing sizes, each in a child process whose peak resident memory
//! (`VmHWM`) is reported; and the memory each retained click costs in
//! attribution's touch arrangement.
//!
//! ```text
//! cargo bench --bench scale                                         # 1M, 10M, 100M events
//! ADFLOW_SCALE_EVENTS=1000000,10000000 cargo bench --bench scale
//! ADFLOW_SCALE_MAX_RSS_GB=12 ADFLOW_SCALE_CLICKS=1000000,4000000 cargo bench --bench scale
//! ADFLOW_SCALE_HORIZON_HOURS=none cargo bench --bench scale        # backfill series only
//! ```
//!
//! Sizes: adgen's default traffic (a week, seed 7), cached as for
//! `backfill`. Two series: a **backfill** (no horizon: every event's state
//! is kept until the input ends, so memory grows with the input), and a
//! **bounded** run of the same files with a horizon of
//! `ADFLOW_SCALE_HORIZON_HOURS` (default 1): the pipeline dead-letters
//! events older than its watermark minus the horizon, and every family
//! retires state older than its window plus the horizon, so memory follows
//! the windows, not the input. A size whose peak memory, extrapolated
//! linearly from the series' previous size, would exceed
//! `ADFLOW_SCALE_MAX_RSS_GB` (default 12) is skipped and reported as such,
//! so the bench never pushes a shared machine into swap or the OOM killer.
//!
//! Memory per retained click: a child builds N synthetic clicks (distinct
//! event ids, 50K users, 1000 ads, spread over 29 days so none leaves the
//! 30-day click window), reads its resident memory (`VmRSS`), feeds them to
//! `arrange_touches` on one worker until the arrangement has absorbed
//! them, and reads `VmRSS` again while the arrangement is alive. The
//! growth per click between two sizes (the slope, which cancels the fixed
//! costs) is the figure reported, for three ways the trace is read:
//! `held` (a reader that never lets it compact, so every click keeps its
//! own update time), `compacted` (as the pipeline's joins read it: the
//! trace compacts to the input frontier, so absorbed clicks share one
//! update, which differential stores once), and `retired` (a stream's:
//! compacted, and retiring each click from the trace after its expiry;
//! until 2026-11-24 each click's `-1` waited in the batcher until then).
//!
//! ```text
//! ADFLOW_SCALE_EVENTS=none cargo bench --bench scale                # clicks only
//! ```

use std::process::Command;
use std::time::Duration;

use adflow::event::{AgentClass, Country, DeviceType, Event, EventId, EventKind, Id};
use adflow::pipeline::{Time, TimeConfig};
use adflow::sources::discover;
use adflow::timestamp::{Millis, DAY_MS, HOUR_MS};
use adflow_operators::attribution::{AttributionConfig, AttributionExt, Model};
use differential_dataflow::input::Input;
use differential_dataflow::trace::TraceReader;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;
use timely::progress::frontier::AntichainRef;

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/subset.rs"]
mod subset;

use e2e::{dataset, env_list, env_or, pipeline_run, record};
use subset::subset_with_horizon;

/// Workers of the pipeline runs.
const WORKERS: usize = 2;

/// `VmRSS` (current) or `VmHWM` (peak) of this process, in bytes.
fn memory(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0)
        * 1024
}

/// Child: the subset pipeline over `events` rows, with `horizon` or as a
/// backfill; prints its figures.
fn pipeline_child(events: u64, horizon: Option<Millis>) -> anyhow::Result<()> {
    let dir = dataset(events)?;
    let inputs = discover(&[dir.to_string_lossy()])?;
    let time = TimeConfig {
        horizon,
        ..TimeConfig::backfill()
    };
    let (elapsed, answer) = pipeline_run(&inputs, WORKERS, time, move |events| {
        subset_with_horizon(events, horizon)
    })?;
    println!("elapsed_seconds={}", elapsed.as_secs_f64());
    println!("rows={}", answer.len());
    println!("peak_rss_bytes={}", memory("VmHWM:"));
    Ok(())
}

/// How the click child's arrangement is read, which decides how its
/// updates are stored.
#[derive(Clone, Copy, Debug)]
enum Retention {
    /// A reader that never lets the trace compact: every click keeps its
    /// own update time (the most a trace can hold).
    Held,
    /// As the pipeline's joins read it: the trace compacts to the input
    /// frontier, so absorbed clicks share one update time (the backfill).
    Compacted,
    /// As a stream's: compacted, and retiring each click from the trace
    /// once it has expired (none does here: the figure is what retiring
    /// costs while the clicks are live).
    Retired,
}

impl Retention {
    const ALL: [Retention; 3] = [Retention::Held, Retention::Compacted, Retention::Retired];

    fn name(self) -> &'static str {
        match self {
            Retention::Held => "held",
            Retention::Compacted => "compacted",
            Retention::Retired => "retired",
        }
    }

    fn of(name: &str) -> anyhow::Result<Retention> {
        Retention::ALL
            .into_iter()
            .find(|mode| mode.name() == name)
            .ok_or_else(|| anyhow::anyhow!("unknown retention {name}"))
    }
}

/// Child: `clicks` synthetic clicks into attribution's touch arrangement.
fn clicks_child(clicks: u64, retention: Retention) -> anyhow::Result<()> {
    let start = 1_793_491_200_000; // 2026-11-01
    let span = 29 * DAY_MS;
    let input: Vec<Event> = (0..clicks)
        .map(|n| {
            let hash = xxhash_rust::xxh3::xxh3_64(&n.to_le_bytes());
            let ad = hash % 1000;
            Event {
                ts: start + (n as i64) * span / clicks.max(1) as i64,
                kind: EventKind::Click,
                event_id: EventId(u128::from(hash) << 64 | u128::from(n)),
                user_id: Id::of(&format!("u-{}", (hash >> 10) % 50_000)),
                device_id: None,
                campaign_id: Id::of(&format!("cmp-{:03}", ad / 10)),
                ad_id: Id::of(&format!("ad-{ad}")),
                publisher_id: None,
                ip: None,
                user_agent: None,
                agent: AgentClass::Browser,
                country: Country::UNKNOWN,
                device_type: DeviceType::Unknown,
                cost_micros: 500_000,
                revenue_micros: 0,
                conversion_type: None,
                order_id: None,
            }
        })
        .collect();
    let before = memory("VmRSS:");
    let after = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let config = AttributionConfig {
            models: vec![Model::LastTouch],
            horizon: matches!(retention, Retention::Retired).then_some(DAY_MS),
            ..AttributionConfig::default()
        };
        let (mut events, mut touches) = worker.dataflow::<Time, _, _>(|scope| {
            let (events_in, events) = scope.new_collection::<Event, isize>();
            let touches = events.arrange_touches("Attribution", &config);
            touches.by_identity.stream.clone().probe_with(&probe);
            (events_in, touches.by_identity.trace)
        });
        for chunk in input.chunks(1 << 16) {
            for event in chunk {
                events.update_at(*event, event.ts as Time, 1);
            }
            let next = chunk.last().map_or(0, |event| event.ts as Time + 1);
            events.advance_to(next);
            events.flush();
            worker.step_while(|| probe.less_than(&next));
            if !matches!(retention, Retention::Held) {
                let frontier = [next];
                touches.set_logical_compaction(AntichainRef::new(&frontier));
                touches.set_physical_compaction(AntichainRef::new(&frontier));
            }
        }
        let end = (start + span + 1) as Time;
        events.advance_to(end);
        events.flush();
        worker.step_while(|| probe.less_than(&end));
        if !matches!(retention, Retention::Held) {
            let frontier = [end];
            touches.set_logical_compaction(AntichainRef::new(&frontier));
            touches.set_physical_compaction(AntichainRef::new(&frontier));
        }
        // Let pending merges finish with nothing new arriving.
        for _ in 0..1000 {
            worker.step();
        }
        let after = memory("VmRSS:");
        drop(touches);
        after
    });
    println!("rss_before_bytes={before}");
    println!("rss_after_bytes={after}");
    Ok(())
}

/// Runs this bench again as a child with `variable=value`; returns its
/// `key=value` lines.
fn child(variable: &str, value: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let output = Command::new(std::env::current_exe()?)
        .env(variable, value)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "child {variable}={value} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    Ok(stdout
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

fn value(lines: &[(String, f64)], key: &str) -> anyhow::Result<f64> {
    lines
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| *value)
        .ok_or_else(|| anyhow::anyhow!("child printed no {key}"))
}

fn main() -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var("ADFLOW_SCALE_CHILD") {
        let (events, horizon) = match spec.split_once(':') {
            Some((events, horizon)) => (events, Some(horizon.parse()?)),
            None => (spec.as_str(), None),
        };
        return pipeline_child(events.parse()?, horizon);
    }
    if let Ok(spec) = std::env::var("ADFLOW_SCALE_CLICKS_CHILD") {
        let (clicks, retention) = spec
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("ADFLOW_SCALE_CLICKS_CHILD is clicks:retention"))?;
        return clicks_child(clicks.parse()?, Retention::of(retention)?);
    }
    let max_rss = env_or("ADFLOW_SCALE_MAX_RSS_GB", 12.0) * 1e9;

    let mut table = Vec::new();
    let mut figures = Vec::new();
    let horizon_hours: Option<Millis> = match std::env::var("ADFLOW_SCALE_HORIZON_HOURS") {
        Ok(hours) if hours == "none" => None,
        Ok(hours) => Some(hours.parse()?),
        Err(_) => Some(1),
    };
    for hours in std::iter::once(None).chain(horizon_hours.map(Some)) {
        let horizon = hours.map(|hours| hours.saturating_mul(HOUR_MS));
        let name = match hours {
            None => "backfill".to_owned(),
            Some(hours) => format!("horizon {hours} h"),
        };
        let mut previous: Option<(u64, f64)> = None;
        for events in env_list::<u64>("ADFLOW_SCALE_EVENTS", "1000000,10000000,100000000") {
            if let Some((size, rss)) = previous {
                let estimate = rss * events as f64 / size as f64;
                if estimate > max_rss {
                    println!(
                        "skipped {events} events, {name}: ~{:.1} GB peak expected (linear from {size}), above {:.1} GB",
                        estimate / 1e9,
                        max_rss / 1e9
                    );
                    table.push(format!(
                        "| {events} | {name} | skipped: ~{:.0} GB expected | | |",
                        estimate / 1e9
                    ));
                    continue;
                }
            }
            // Generate the dataset here, so that the child's time and memory are the run's.
            dataset(events)?;
            let spec = match horizon {
                None => events.to_string(),
                Some(horizon) => format!("{events}:{horizon}"),
            };
            let lines = child("ADFLOW_SCALE_CHILD", &spec)?;
            let elapsed = Duration::from_secs_f64(value(&lines, "elapsed_seconds")?);
            let rss = value(&lines, "peak_rss_bytes")?;
            table.push(format!(
                "| {events} | {name} | {elapsed:.2?} | {:.3} M | {:.2} GB ({:.0} B/event) |",
                events as f64 / elapsed.as_secs_f64() / 1e6,
                rss / 1e9,
                rss / events as f64
            ));
            figures.push((
                format!(
                    "{}M events | {name} | {:.2} M ev/s",
                    events as f64 / 1e6,
                    events as f64 / elapsed.as_secs_f64() / 1e6
                ),
                rss / 1e9,
            ));
            previous = Some((events, rss));
        }
    }

    let mut per_click = Vec::new();
    for retention in Retention::ALL {
        let mut clicks = Vec::new();
        for count in env_list::<u64>("ADFLOW_SCALE_CLICKS", "1000000,4000000") {
            let lines = child(
                "ADFLOW_SCALE_CLICKS_CHILD",
                &format!("{count}:{}", retention.name()),
            )?;
            let grown = value(&lines, "rss_after_bytes")? - value(&lines, "rss_before_bytes")?;
            println!(
                "{count} clicks, {}: arrangement grew resident memory by {:.1} MB ({:.1} B/click)",
                retention.name(),
                grown / 1e6,
                grown / count as f64
            );
            clicks.push((count as f64, grown));
        }
        if let [(n1, m1), .., (n2, m2)] = clicks[..] {
            per_click.push((retention, n1, n2, (m2 - m1) / (n2 - n1)));
        }
    }

    println!();
    println!("| events | series | wall time, {WORKERS} workers | events/s | peak RSS |");
    println!("|---|---|---|---|---|");
    for row in &table {
        println!("{row}");
    }
    println!();
    for (retention, n1, n2, bytes) in per_click {
        println!(
            "memory per retained click, {} (slope from {n1} to {n2} clicks): {bytes:.1} bytes",
            retention.name()
        );
    }
    // A clicks-only run (`ADFLOW_SCALE_EVENTS=none`) keeps the last sizes' figures.
    if figures.is_empty() {
        return Ok(());
    }
    record("scale", &figures)
}
