//! The differential operators of adflow, one family per module: dedup,
//! fraud, metrics and attribution, each an extension trait on
//! `VecCollection<'_, Time, Event>` with a sequential twin in [`reference`](mod@reference)
//! that property tests compare it against. See `docs/operators.md`.
#![deny(missing_docs)]

pub mod analytics;
pub mod attribution;
pub mod dedup;
pub mod fraud;
pub mod kinds;
pub mod metrics;
pub mod outputs;
pub mod pre_aggregate;
pub mod reference;
pub mod retention;
pub mod testing;
