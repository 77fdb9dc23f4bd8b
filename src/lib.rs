//! adflow: ad tracking and attribution as incremental differential-dataflow
//! collections.
//!
//! This crate holds the event model, total parsing with dead letters, file
//! sources, sinks and the pipeline builder. The operators (dedup, fraud,
//! metrics, attribution) live in `adflow-operators`; the traffic generator
//! in `adflow-datagen`.
#![deny(missing_docs)]

pub mod compaction;
pub mod counts;
pub mod dead_letter;
pub mod event;
pub mod hashing;
pub mod kafka;
pub mod money;
pub mod names;
pub mod parsing;
pub mod pipeline;
pub mod prelude;
pub mod profile;
pub mod schema;
pub mod sinks;
pub mod sources;
pub mod timestamp;
pub mod write;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
