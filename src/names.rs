//! The text behind hashed campaign and ad ids, so that outputs read
//! `cmp-003`, not `9d2f61c0a3b5e817`.
//!
//! Inside the dataflow every identifier is an [`Id`], a hash of its text
//! (docs/schema.md). Sources remember the text of the campaign and ad ids
//! they parse in one dictionary per process ([`remember`]), and outputs
//! render the campaign and ad columns through it ([`id_text`],
//! [`crate::sinks::Value::named`]): the text when known, else the 16 hex
//! digits. Other ids (users, devices, orders: too many to hold) always
//! show as hex, even when a campaign's text hashes to the same id, so
//! that how they render never depends on what else was read.
//!
//! An id's rendering must not depend on which worker or process renders it,
//! or a changelog topic would key one row two ways. Within a process every
//! source remembers a text before the event carrying it enters the
//! dataflow, so any row derived from that event finds it. Across the
//! processes of a cluster, [`crate::pipeline::Pipeline`] broadcasts each
//! worker's new names through the dataflow at a time no later than the
//! events that carry them, and holds the events' frontier until every
//! process has them: a file sink renders a row only once the frontier has
//! passed its time, so every process renders the same text. (A Kafka sink
//! renders message keys as rows arrive, which is sound only because the
//! Kafka pipeline runs in one process.)
//!
//! The dictionary is never emptied: it holds one entry per campaign and ad
//! ever seen (about 100 bytes each), which a stream's traffic bounds.

use std::collections::hash_map::Entry;
use std::sync::{LazyLock, PoisonError, RwLock};

use crate::event::Id;
use crate::hashing::PrehashedMap;

/// Every name this process has seen.
static NAMES: LazyLock<RwLock<PrehashedMap<Id, Box<str>>>> = LazyLock::new(Default::default);

/// Remembers that `id` is the hash of `text`. Returns whether the process
/// did not know it yet.
///
/// ```
/// use adflow::event::Id;
/// use adflow::names::{id_text, remember};
///
/// let id = Id::of("campaign-names-doctest").unwrap();
/// assert_eq!(id_text(id), format!("{:016x}", id.get()));
/// remember(id, "campaign-names-doctest");
/// assert_eq!(id_text(id), "campaign-names-doctest");
/// ```
pub fn remember(id: Id, text: &str) -> bool {
    debug_assert_eq!(Id::of(text), Some(id), "{text:?} is not the text of {id:?}");
    // Most calls bring a name the process knows: a read lock, shared with
    // the sinks that render, settles them.
    if NAMES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .contains_key(&id)
    {
        return false;
    }
    let mut names = NAMES.write().unwrap_or_else(PoisonError::into_inner);
    match names.entry(id) {
        Entry::Occupied(_) => false,
        Entry::Vacant(vacant) => {
            vacant.insert(Box::from(text));
            true
        }
    }
}

/// How outputs show a campaign or ad id: its text if known, else its 16
/// hex digits.
pub fn id_text(id: Id) -> String {
    let names = NAMES.read().unwrap_or_else(PoisonError::into_inner);
    match names.get(&id) {
        Some(name) => name.to_string(),
        None => format!("{:016x}", id.get()),
    }
}
