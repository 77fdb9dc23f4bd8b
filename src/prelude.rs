//! The types most pipelines need: `use adflow::prelude::*;`.

pub use crate::dead_letter::{DeadLetter, Position, Reason};
pub use crate::event::{AgentClass, Country, DeviceType, Event, EventId, EventKind, Id};
pub use crate::money::Micros;
pub use crate::pipeline::{Pipeline, RunSummary, Streams, Time, TimeConfig};
pub use crate::timestamp::Millis;
