//! Naive sequential twins of every operator family: the oracles the
//! property tests compare the dataflows against. They take the final
//! multiset of events and compute the answer from scratch, as plainly as
//! possible, with no incremental state.

pub mod analytics;
pub mod attribution;
pub mod dedup;
pub mod fraud;
pub mod metrics;
