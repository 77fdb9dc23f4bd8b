//! Named outputs: the one interface through which a pipeline definition
//! hands its results to whatever writes them ([`NamedOutputs`]), and the
//! file/stdout implementation every CLI uses ([`SinkSet`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use differential_dataflow::collection::VecCollection;
use timely::dataflow::ProbeHandle;

use super::{OutputFormat, OutputRecord, SinkExt, SinkHandle, SinkMode, SinkSpec};
use crate::pipeline::Time;

/// Receives each named output collection of a pipeline.
///
/// A pipeline definition (adflow-operators' `Analytics::emit`) calls
/// [`NamedOutputs::output`] once per output on every worker; the
/// implementation decides where the rows go: files ([`SinkSet`]), Kafka
/// topics, or a test's capture. Because the definition is written once,
/// backfill, replay and stream cannot disagree on what an output contains.
pub trait NamedOutputs<'scope> {
    /// Takes the output `name`.
    fn output<D: OutputRecord>(&mut self, name: &str, collection: VecCollection<'scope, Time, D>);
}

/// File (or stdout) sinks for named outputs: `dir/<name>.<ext>` in one
/// format and mode, with one [`SinkHandle`] per name shared by all workers.
///
/// Create it outside `timely::execute`, clone it into the worker closure,
/// and attach each worker's outputs with [`SinkSet::attach`]; after the run,
/// [`SinkSet::handles`] reports every output.
///
/// ```
/// use adflow::prelude::*;
/// use adflow::sinks::{NamedOutputs, OutputFormat, SinkSet};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let input = dir.path().join("events.jsonl");
/// std::fs::write(&input, "not json\n")?;
/// let sinks = SinkSet::new(dir.path().join("out"), OutputFormat::Csv);
/// let worker_sinks = sinks.clone();
/// Pipeline::new(adflow::sources::discover(&[input.to_string_lossy()])?)
///     .workers(2)
///     .run(move |_scope, streams| {
///         worker_sinks
///             .attach(&streams.probe)
///             .output("dead_letters", streams.dead_letters);
///     })?;
/// let reports: Vec<_> = sinks.handles().iter().map(|handle| handle.report()).collect();
/// assert_eq!(reports.len(), 1);
/// assert!(reports[0].is_ok());
/// assert_eq!(reports[0].rows, 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SinkSet {
    dir: PathBuf,
    format: OutputFormat,
    mode: SinkMode,
    handles: Arc<Mutex<BTreeMap<String, SinkHandle>>>,
}

impl SinkSet {
    /// Snapshot sinks writing `dir/<name>.<ext>` in `format`;
    /// [`OutputFormat::Table`] writes to stdout instead.
    pub fn new(dir: impl Into<PathBuf>, format: OutputFormat) -> SinkSet {
        SinkSet {
            dir: dir.into(),
            format,
            mode: SinkMode::Snapshot,
            handles: Arc::default(),
        }
    }

    /// The same sinks writing in `mode`.
    pub fn with_mode(self, mode: SinkMode) -> SinkSet {
        SinkSet { mode, ..self }
    }

    /// This worker's view of the set: outputs given to it are written by
    /// sinks that report progress to `probe`.
    pub fn attach<'a>(&'a self, probe: &'a ProbeHandle<Time>) -> AttachedSinks<'a> {
        AttachedSinks { set: self, probe }
    }

    /// The handle of every output attached so far, by name.
    pub fn handles(&self) -> Vec<SinkHandle> {
        self.lock().values().cloned().collect()
    }

    fn spec(&self, name: &str) -> SinkSpec {
        let spec = match self.format {
            OutputFormat::Table => SinkSpec::stdout(name, OutputFormat::Table),
            format => SinkSpec::file(name, &self.dir, format),
        };
        spec.with_mode(self.mode)
    }

    fn handle(&self, name: &str) -> SinkHandle {
        self.lock()
            .entry(name.to_owned())
            .or_insert_with(|| SinkHandle::new(name))
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SinkHandle>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`SinkSet`] attached to one worker's probe; see [`SinkSet::attach`].
pub struct AttachedSinks<'a> {
    set: &'a SinkSet,
    probe: &'a ProbeHandle<Time>,
}

impl<'scope> NamedOutputs<'scope> for AttachedSinks<'_> {
    fn output<D: OutputRecord>(&mut self, name: &str, collection: VecCollection<'scope, Time, D>) {
        collection.sink_core(
            &format!("Sink: {name}"),
            self.set.spec(name),
            self.probe,
            self.set.handle(name),
        );
    }
}
