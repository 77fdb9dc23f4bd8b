//! `adflow-datagen`: deterministic synthetic ad traffic with labelled
//! anomalies, shaped like a real platform's, for tests and benchmarks of
//! adflow. The `adgen` binary wraps [`generate_to_dir_with`]; see
//! `docs/adgen.md` for every option and label.
//!
//! - **Traffic**: impressions as a Poisson process with a daily cycle over
//!   campaigns × ads with Zipf popularity; a user pool sized to the run so
//!   users return over days; clicks at a per-ad CTR seconds after an
//!   impression; page views minutes after every genuine click; conversions
//!   at a per-campaign CVR, minutes to days after a click, with revenue,
//!   order id and type; CPM cost on impressions and CPC cost on clicks.
//! - **Anomalies**, each labelled ([`Anomaly`]): duplicate resends,
//!   out-of-order and late arrival, click floods, bot and missing user
//!   agents, datacenter IPs, click injection, clicks without impression,
//!   geo mismatch between click and conversion.
//! - **Determinism**: a private PRNG ([`rng`]), so the same
//!   [`GeneratorConfig`] gives the same bytes whatever other crates' versions.
//! - **Streaming**: rows are produced in arrival order in bounded memory, so
//!   10^8 rows need no more memory than 10^6.
//!
//! ```
//! use adflow_datagen::{Anomaly, Generator, GeneratorConfig};
//! let config = GeneratorConfig { events: 50_000, ..GeneratorConfig::default() };
//! let mut clicks = 0;
//! let mut duplicates = 0;
//! for event in Generator::new(config) {
//!     clicks += usize::from(event.record.kind == "click");
//!     duplicates += event.labels.iter().filter(|l| l.anomaly == Anomaly::Duplicate).count();
//! }
//! assert!(clicks > 500 && duplicates > 200);
//! ```
#![deny(missing_docs)]

pub mod catalog;
pub mod config;
pub mod generator;
pub mod labels;
pub mod output;
pub mod rng;

pub use config::{AnomalyRates, GeneratorConfig, DEFAULT_START_MS};
pub use generator::{GeneratedEvent, Generator};
pub use labels::{Anomaly, Label, LabelLine};
pub use output::{
    generate_to_dir, generate_to_dir_with, read_labels, GenerationSummary, ManifestFile,
    OutputOptions, LABELS_FILE, MANIFEST_FILE,
};

#[doc = include_str!("../../docs/adgen.md")]
#[cfg(doctest)]
pub struct AdgenDocDoctests;
