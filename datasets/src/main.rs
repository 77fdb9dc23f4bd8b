//! `adgen`: writes deterministic synthetic ad traffic with labelled
//! anomalies to a directory of date-partitioned event files.
//!
//! ```text
//! cargo run --release -p adflow-datagen --bin adgen -- \
//!     --events 1000000 --format parquet --out /tmp/adgen --seed 7
//! ```
//!
//! Writes `DIR/dt=YYYY-MM-DD/part-NNNNN.<ext>`, `DIR/_labels.jsonl` and
//! `DIR/_manifest.json`; see `docs/adgen.md`.

use std::path::PathBuf;

use adflow::timestamp::parse_duration;
use adflow::timestamp::{parse_rfc3339, Millis};
use adflow::write::{FileFormat, WriteOptions};
use adflow_datagen::{generate_to_dir_with, AnomalyRates, GeneratorConfig, OutputOptions};
use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Generate deterministic synthetic ad traffic (impressions, clicks, page
/// views, conversions) with labelled anomalies.
#[derive(Parser, Debug)]
#[command(name = "adgen", version)]
struct Args {
    /// Rows to write, exactly (duplicates included).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Output format: jsonl, jsonl-gz, csv, csv-gz or parquet.
    #[arg(long, default_value_t = FileFormat::Parquet)]
    format: FileFormat,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Event time of the first impression (RFC 3339).
    #[arg(long, default_value = "2026-11-01T00:00:00Z", value_parser = parse_time)]
    start: Millis,
    /// Simulated time the rows are spread over (e.g. 7d, 12h).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    span: Millis,
    /// Number of campaigns.
    #[arg(long, default_value_t = 100)]
    campaigns: u32,
    /// Ads per campaign.
    #[arg(long, default_value_t = 10)]
    ads_per_campaign: u32,
    /// Number of publishers.
    #[arg(long, default_value_t = 50)]
    publishers: u32,
    /// User pool size [default: events / 40].
    #[arg(long)]
    users: Option<u64>,
    /// Share of users without a user_id (device id only).
    #[arg(long, default_value_t = 0.05)]
    anonymous_users: f64,
    /// Zipf exponent of ad popularity.
    #[arg(long, default_value_t = 1.1)]
    zipf: f64,
    /// Lowest per-ad click-through rate.
    #[arg(long, default_value_t = 0.01)]
    ctr_min: f64,
    /// Highest per-ad click-through rate.
    #[arg(long, default_value_t = 0.03)]
    ctr_max: f64,
    /// Lowest per-campaign conversion rate (per genuine click).
    #[arg(long, default_value_t = 0.02)]
    cvr_min: f64,
    /// Highest per-campaign conversion rate (per genuine click).
    #[arg(long, default_value_t = 0.05)]
    cvr_max: f64,
    /// Longest delay from a click to its conversion (log-uniform from 1 minute).
    #[arg(long, default_value = "3d", value_parser = parse_duration)]
    max_conversion_delay: Millis,
    /// Share of rows resent with the same event_id shortly after (label duplicate).
    #[arg(long, default_value_t = 0.01)]
    duplicate_rate: f64,
    /// Share of rows jittered by up to --max-jitter (label out_of_order when displaced).
    #[arg(long, default_value_t = 0.02)]
    out_of_order_rate: f64,
    /// Largest emission jitter of out-of-order rows.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    max_jitter: Millis,
    /// Displacement beyond which a row is labelled out_of_order.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    out_of_order_threshold: Millis,
    /// Share of rows emitted late, up to --max-lateness after their event time (label late).
    #[arg(long, default_value_t = 0.005)]
    late_rate: f64,
    /// Largest delay of a late row.
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    max_lateness: Millis,
    /// Click floods (150–400 clicks in a minute from one IP on one ad) per million rows.
    #[arg(long, default_value_t = 5.0)]
    click_floods_per_million: f64,
    /// Share of users that are bots (label bot_user_agent on all their rows).
    #[arg(long, default_value_t = 0.01)]
    bot_user_rate: f64,
    /// Share of rows without a user agent (label missing_user_agent).
    #[arg(long, default_value_t = 0.002)]
    missing_user_agent_rate: f64,
    /// Share of clicks from datacenter addresses (label datacenter_ip).
    #[arg(long, default_value_t = 0.01)]
    datacenter_click_rate: f64,
    /// Share of conversions preceded by an injected click 1–10 s before (label click_injection).
    #[arg(long, default_value_t = 0.05)]
    click_injection_rate: f64,
    /// Clicks without any impression, per genuine click (label click_without_impression).
    #[arg(long, default_value_t = 0.01)]
    click_without_impression_rate: f64,
    /// Share of conversions from another country than their click (label geo_mismatch).
    #[arg(long, default_value_t = 0.03)]
    geo_mismatch_rate: f64,
    /// Turn every anomaly off (clean, unique, in-order traffic).
    #[arg(long)]
    no_anomalies: bool,
    /// Rows per Parquet row group.
    #[arg(long, default_value_t = 128 * 1024)]
    row_group_rows: usize,
    /// Most partition files open at once.
    #[arg(long, default_value_t = 8)]
    max_open_partitions: usize,
    /// Replace a previous run's output in --out (dt=* partitions, labels, manifest).
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_time(text: &str) -> Result<Millis, String> {
    parse_rfc3339(text).ok_or_else(|| format!("not an RFC 3339 time: {text:?}"))
}

impl Args {
    fn config(&self) -> GeneratorConfig {
        let anomalies = if self.no_anomalies {
            AnomalyRates::none()
        } else {
            AnomalyRates {
                duplicate: self.duplicate_rate,
                out_of_order: self.out_of_order_rate,
                late: self.late_rate,
                click_floods_per_million: self.click_floods_per_million,
                bot_users: self.bot_user_rate,
                missing_user_agent: self.missing_user_agent_rate,
                datacenter_clicks: self.datacenter_click_rate,
                click_injection: self.click_injection_rate,
                clicks_without_impression: self.click_without_impression_rate,
                geo_mismatch: self.geo_mismatch_rate,
            }
        };
        GeneratorConfig {
            seed: self.seed,
            events: self.events,
            start_ms: self.start,
            span_ms: self.span,
            campaigns: self.campaigns,
            ads_per_campaign: self.ads_per_campaign,
            publishers: self.publishers,
            users: self.users,
            anonymous_users: self.anonymous_users,
            zipf_exponent: self.zipf,
            ctr_range: (self.ctr_min, self.ctr_max),
            cvr_range: (self.cvr_min, self.cvr_max),
            max_conversion_delay_ms: self.max_conversion_delay,
            anomalies,
            max_jitter_ms: self.max_jitter,
            out_of_order_threshold_ms: self.out_of_order_threshold,
            max_lateness_ms: self.max_lateness,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.config();
    config.validate().context("invalid options")?;

    let progress = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(args.events), ProgressDrawTarget::stderr())
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows ({per_sec}, eta {eta})",
        )?
        .progress_chars("=> "),
    );
    let options = OutputOptions {
        write: WriteOptions {
            row_group_rows: args.row_group_rows.max(1),
            max_open_partitions: args.max_open_partitions.max(1),
        },
        replace_existing: args.force,
        ..OutputOptions::default()
    };
    let summary = generate_to_dir_with(config, &args.out, args.format, &options, |rows| {
        progress.set_position(rows)
    })
    .with_context(|| format!("generating into {}", args.out.display()))?;
    progress.finish_and_clear();

    let kinds: Vec<String> = summary
        .rows_per_kind
        .iter()
        .map(|(kind, rows)| format!("{kind} {rows}"))
        .collect();
    println!(
        "adgen: wrote {} rows ({}) in {} files, {} labels, events {} .. {}, to {} in {:.2} s: {:.3} M events/s",
        summary.rows,
        kinds.join(", "),
        summary.files.len(),
        summary.labels,
        summary.first_event_time,
        summary.last_event_time,
        args.out.display(),
        summary.elapsed.as_secs_f64(),
        summary.events_per_second() / 1e6,
    );
    Ok(())
}
