//! The fraud family: configurable rules that flag events, each verdict
//! carrying its reason code and evidence.
//!
//! [`FraudExt::flag_fraud`] turns a collection of events into a [`Fraud`]:
//! the [`Verdict`]s (one per flagged event and rule: the rule, the key it
//! counted by, the measured count and the configured threshold) and the
//! flagged events, each once by [`EventKey`] (id and event time), which
//! metrics and attribution antijoin.
//! Both are ordinary differential collections, so a verdict that appears
//! late — a flood recognised at its 101st click, a click whose page view
//! never came — retracts the event downstream as a correction, and one that
//! disappears (the page view arrived after all) restores it.
//!
//! The rules, grouped as in the files of `fraud/`:
//! - **sliding-window counts** (`windows.rs`): [`Rule::ClickFloodIp`],
//!   [`Rule::ClickFloodUser`], [`Rule::DeviceVelocity`];
//! - **context** (`context.rs`), decided by the event alone:
//!   [`Rule::BotUserAgent`], [`Rule::MissingUserAgent`], [`Rule::BlockedIp`],
//!   [`Rule::DatacenterIp`];
//! - **sequence** (`sequence.rs`), relating an event to the same identity's
//!   events shortly before or after it: [`Rule::GeoMismatch`],
//!   [`Rule::ClickInjection`], [`Rule::ClickWithoutImpression`],
//!   [`Rule::NoPageView`].
//!
//! Windowed rules key their state by `(key, time bucket)`, a bucket being
//! as long as the rule's window, and copy each piece of evidence into the
//! one neighbouring bucket that may need it; so the work of an update is
//! bounded by the traffic of one key over two windows, not by its history.
//! (`click_without_impression` joins clicks with arranged impressions
//! instead, so that its work follows the rare clicks, not the impressions.)
//! With a [`FraudConfig::horizon`] the inputs of each rule are retired and
//! its verdicts frozen once no admissible event can change them
//! (`retention.rs`), which bounds the state of an endless stream.
//!
//! The sequential twin is [`crate::reference::fraud::flag_fraud`]; the
//! semantics, defaults and measured precision and recall against adgen's
//! labels are in `docs/fraud.md`.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use adflow::event::{Event, EventRecord};
//! use adflow::parsing::EventValidator;
//! use adflow_operators::fraud::{FraudConfig, FraudExt, Rule};
//! use differential_dataflow::input::Input;
//!
//! // 101 clicks from one IP within a minute, each by another user: a flood.
//! let clicks: Vec<Event> = (0..101i64)
//!     .map(|n| {
//!         let record = EventRecord {
//!             event_id: format!("click-{n}"),
//!             kind: "click".into(),
//!             ts: 1_793_491_200_000 + 500 * n,
//!             user_id: format!("user-{n}"),
//!             campaign_id: "c1".into(),
//!             ad_id: "a1".into(),
//!             ip: "192.0.2.1".into(),
//!             user_agent: "Mozilla/5.0 (iPhone) Safari/604.1".into(),
//!             ..EventRecord::default()
//!         };
//!         EventValidator::default().validate_record(&record).unwrap()
//!     })
//!     .collect();
//! let config = FraudConfig::only(&[Rule::ClickFloodIp]);
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&seen);
//! timely::execute_directly(move |worker| {
//!     let mut input = worker.dataflow::<u64, _, _>(|scope| {
//!         let (input, events) = scope.new_collection::<Event, isize>();
//!         let sink = Arc::clone(&sink);
//!         events
//!             .flag_fraud(&config)
//!             .verdicts
//!             .inspect(move |(verdict, _time, diff)| sink.lock().unwrap().push((verdict.clone(), *diff)));
//!         input
//!     });
//!     for click in &clicks {
//!         input.insert(*click);
//!     }
//! });
//! let seen = seen.lock().unwrap();
//! assert_eq!(seen.len(), 101);
//! assert!(seen.iter().all(|(verdict, diff)| {
//!     *diff == 1 && verdict.rule == Rule::ClickFloodIp && verdict.key == "192.0.2.1"
//!         && verdict.count == 101 && verdict.threshold == 100
//! }));
//! ```

use std::fmt;

use adflow::event::{Event, EventId, EventKind};
use adflow::pipeline::Time;
use adflow::sinks::{Column, ColumnType, OutputRecord, Value};
use adflow::timestamp::Millis;
use differential_dataflow::collection::{concatenate, VecCollection};
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{KeyBuilder, KeySpine};
use differential_dataflow::Data;
use serde::{Deserialize, Serialize};

use crate::attribution::Touches;
use crate::kinds::{ByKind, SplitByKindExt};
use crate::retention::RetentionExt;

mod config;
mod context;
mod sequence;
mod windows;

pub use config::{CountRule, FraudConfig, FraudConfigError, IpNetwork, WindowRule};

/// An event as a verdict names it: its id and event time. After dedup no
/// two events share both (a copy of an id within the dedup window is a
/// duplicate), so a verdict on one event never reaches another event that
/// reuses its id later.
pub type EventKey = (EventId, Millis);

/// The key of `event` as verdicts name it.
pub fn event_key(event: &Event) -> EventKey {
    (event.event_id, event.ts)
}

/// The arranged set of flagged events that [`flagged_set`] returns.
pub(crate) type FlaggedSet<'scope> = Arranged<'scope, TraceAgent<KeySpine<EventKey, Time, isize>>>;

/// Flagged events as a set, arranged for joins: an event with a positive
/// count is present once, so a repeated verdict never subtracts twice.
/// Operators are named `{name}: arrange` and `{name}: set`.
pub(crate) fn flagged_set<'scope>(
    flagged: VecCollection<'scope, Time, EventKey>,
    name: &str,
) -> FlaggedSet<'scope> {
    flagged
        .arrange_by_self_named(&format!("{name}: arrange"))
        .reduce_abelian::<_, KeyBuilder<EventKey, Time, isize>, KeySpine<EventKey, Time, isize>, _, _>(
            &format!("{name}: set"),
            |_key, counts, output| {
                if counts[0].1 > 0 {
                    output.push(((), 1));
                }
            },
            |buffer, key, updates| {
                buffer.clear();
                buffer.extend(
                    updates
                        .drain(..)
                        .map(|(unit, time, diff)| ((*key, unit), time, diff)),
                );
            },
        )
}

/// A fraud rule; its [`Rule::code`] is the stable reason code of its verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Too many clicks from one IP address in a sliding window.
    ClickFloodIp,
    /// Too many clicks by one user in a sliding window.
    ClickFloodUser,
    /// Too many clicks from one device in a (short) sliding window.
    DeviceVelocity,
    /// The user agent is a crawler, headless browser or HTTP library.
    BotUserAgent,
    /// No user agent was sent.
    MissingUserAgent,
    /// The IP address is on the blocklist.
    BlockedIp,
    /// The IP address is in a datacenter range.
    DatacenterIp,
    /// A conversion from another country than the identity's latest click.
    GeoMismatch,
    /// A click shortly before a conversion of the same identity.
    ClickInjection,
    /// A click with no impression of the same identity and ad before it.
    ClickWithoutImpression,
    /// A click with no page view of the same identity after it.
    NoPageView,
}

impl Rule {
    /// Every rule, in declaration order.
    pub const ALL: [Rule; 11] = [
        Rule::ClickFloodIp,
        Rule::ClickFloodUser,
        Rule::DeviceVelocity,
        Rule::BotUserAgent,
        Rule::MissingUserAgent,
        Rule::BlockedIp,
        Rule::DatacenterIp,
        Rule::GeoMismatch,
        Rule::ClickInjection,
        Rule::ClickWithoutImpression,
        Rule::NoPageView,
    ];

    /// The rules decided by the event alone (`context.rs`), in declaration order.
    pub const CONTEXT: [Rule; 4] = [
        Rule::BotUserAgent,
        Rule::MissingUserAgent,
        Rule::BlockedIp,
        Rule::DatacenterIp,
    ];

    /// The stable reason code (snake case, as serde writes it).
    ///
    /// ```
    /// use adflow_operators::fraud::Rule;
    /// assert_eq!(Rule::ClickFloodIp.code(), "click_flood_ip");
    /// assert_eq!(Rule::parse("no_page_view"), Some(Rule::NoPageView));
    /// ```
    pub fn code(self) -> &'static str {
        match self {
            Rule::ClickFloodIp => "click_flood_ip",
            Rule::ClickFloodUser => "click_flood_user",
            Rule::DeviceVelocity => "device_velocity",
            Rule::BotUserAgent => "bot_user_agent",
            Rule::MissingUserAgent => "missing_user_agent",
            Rule::BlockedIp => "blocked_ip",
            Rule::DatacenterIp => "datacenter_ip",
            Rule::GeoMismatch => "geo_mismatch",
            Rule::ClickInjection => "click_injection",
            Rule::ClickWithoutImpression => "click_without_impression",
            Rule::NoPageView => "no_page_view",
        }
    }

    /// The rule of a reason code.
    pub fn parse(code: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.code() == code)
    }

    /// Whether the rule decides by the event alone (the context rules): its
    /// verdict on an event is known when the event arrives and never
    /// changes, whatever arrives later.
    pub fn decides_by_event_alone(self) -> bool {
        Rule::CONTEXT.contains(&self)
    }

    /// Whether the rule may flag events of `kind` (the "flags" column of
    /// `docs/fraud.md`).
    ///
    /// ```
    /// use adflow::event::EventKind;
    /// use adflow_operators::fraud::Rule;
    /// assert!(Rule::ClickFloodIp.may_flag(EventKind::Click));
    /// assert!(!Rule::ClickFloodIp.may_flag(EventKind::Impression));
    /// assert!(Rule::GeoMismatch.may_flag(EventKind::Conversion));
    /// assert!(Rule::BotUserAgent.may_flag(EventKind::Impression));
    /// ```
    pub fn may_flag(self, kind: EventKind) -> bool {
        match self {
            Rule::ClickFloodIp
            | Rule::ClickFloodUser
            | Rule::DeviceVelocity
            | Rule::ClickInjection
            | Rule::ClickWithoutImpression
            | Rule::NoPageView => kind == EventKind::Click,
            Rule::GeoMismatch => kind == EventKind::Conversion,
            Rule::BotUserAgent | Rule::MissingUserAgent | Rule::BlockedIp | Rule::DatacenterIp => {
                true
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One rule's verdict on one event, with its evidence.
///
/// What `key`, `count` and `threshold` hold depends on the rule
/// (`docs/fraud.md` has the table): for the window counts, the IP, user or
/// device and `threshold + 1` (some window holding this click holds more
/// clicks than the configured maximum; the flood's size is the number of
/// its flagged clicks); for context rules, what matched, with
/// `count = 1, threshold = 0`; for click injection, the identity and the ms
/// from the click to the conversion, against the window; for geo mismatch,
/// the identity and both countries and the ms from the click to the
/// conversion; for the missing-impression and missing-page-view rules, the
/// identity (and ad) with `count = 0` of the required `threshold = 1`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Verdict {
    /// The flagged event.
    pub event_id: EventId,
    /// Its event time.
    pub ts: Millis,
    /// Its kind.
    pub kind: EventKind,
    /// The rule that flagged it.
    pub rule: Rule,
    /// What the rule grouped or matched by: an IP, `user #…`, `device #…`, …
    pub key: String,
    /// The measured quantity.
    pub count: i64,
    /// The configured limit it was compared with.
    pub threshold: i64,
}

/// Verdicts as output rows: `event_id` (32 hex digits of the hash), `ts`,
/// `kind`, `rule` (the reason code), `key`, `count`, `threshold`.
///
/// ```
/// use adflow::event::{EventId, EventKind};
/// use adflow::sinks::{render_table, OutputRecord};
/// use adflow_operators::fraud::{Rule, Verdict};
/// let verdict = Verdict {
///     event_id: EventId(0xab), ts: 1_793_491_200_000, kind: EventKind::Click,
///     rule: Rule::ClickFloodIp, key: "192.0.2.1".into(), count: 101, threshold: 100,
/// };
/// assert_eq!(Verdict::columns().len(), verdict.values().len());
/// let table = render_table("verdicts", &[verdict], 10);
/// assert!(table.contains("click_flood_ip"));
/// assert!(table.contains("000000000000000000000000000000ab"));
/// ```
/// What identifies a verdict: the flagged event (id, time, kind), the rule
/// and its key. Evidence, `(count, threshold)`, is kept apart so the
/// strongest can be chosen per identity.
pub type VerdictKey = (EventId, Millis, EventKind, Rule, String);

impl Verdict {
    /// The event this verdict flags.
    pub fn event(&self) -> EventKey {
        (self.event_id, self.ts)
    }

    /// The verdict's identity and its evidence `(count, threshold)`.
    pub fn into_parts(self) -> (VerdictKey, (i64, i64)) {
        let Verdict {
            event_id,
            ts,
            kind,
            rule,
            key,
            count,
            threshold,
        } = self;
        ((event_id, ts, kind, rule, key), (count, threshold))
    }

    /// The inverse of [`Verdict::into_parts`].
    pub fn from_parts(
        (event_id, ts, kind, rule, key): VerdictKey,
        (count, threshold): (i64, i64),
    ) -> Verdict {
        Verdict {
            event_id,
            ts,
            kind,
            rule,
            key,
            count,
            threshold,
        }
    }
}

impl OutputRecord for Verdict {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("event_id", ColumnType::Text),
            Column::new("ts", ColumnType::Time),
            Column::new("kind", ColumnType::Text),
            Column::new("rule", ColumnType::Text),
            Column::new("key", ColumnType::Text),
            Column::new("count", ColumnType::I64),
            Column::new("threshold", ColumnType::I64),
        ]
    }

    fn values(&self) -> Vec<Value> {
        vec![
            Value::from(self.event_id),
            Value::Time(self.ts),
            Value::Text(self.kind.as_str().to_owned()),
            Value::Text(self.rule.code().to_owned()),
            Value::Text(self.key.clone()),
            Value::I64(self.count),
            Value::I64(self.threshold),
        ]
    }

    /// One verdict per event, rule and key (`ts` and `kind` follow from the event).
    fn key_columns() -> usize {
        5
    }

    /// The verdicts reduce keeps one verdict per key.
    fn one_row_per_key() -> bool {
        true
    }
}

pub use adflow::event::Identity;

/// What [`FraudExt::flag_fraud`] produces.
pub struct Fraud<'scope> {
    /// Every verdict, once: one per flagged event, rule and key.
    pub verdicts: VecCollection<'scope, Time, Verdict>,
    /// The flagged events, each once, as [`EventKey`]s, for metrics and
    /// attribution to antijoin.
    pub invalid: VecCollection<'scope, Time, EventKey>,
}

/// Flags fraud in a collection of events.
pub trait FraudExt<'scope> {
    /// Applies the enabled rules of `config`; operators are named `Fraud: …`.
    fn flag_fraud(self, config: &FraudConfig) -> Fraud<'scope>;

    /// As [`FraudExt::flag_fraud`], naming the operators `<name>: …`.
    fn flag_fraud_named(self, name: &str, config: &FraudConfig) -> Fraud<'scope>;
}

impl<'scope> FraudExt<'scope> for VecCollection<'scope, Time, Event> {
    fn flag_fraud(self, config: &FraudConfig) -> Fraud<'scope> {
        self.flag_fraud_named("Fraud", config)
    }

    fn flag_fraud_named(self, name: &str, config: &FraudConfig) -> Fraud<'scope> {
        let kinds = self.split_by_kind_named(name);
        flag_fraud_by_kind(&kinds, name, config, None)
    }
}

/// [`FraudExt::flag_fraud_named`] on events already split by kind, so a
/// pipeline that splits them once for every family does not split again.
///
/// `touches`, if given, is attribution's arrangement of these events'
/// impressions and clicks by identity, which click without impression
/// then reads instead of arranging the impressions again (they are most
/// of the traffic). It must keep impressions for at least that rule's
/// window, and with a horizon at least the fraud config's horizon beyond.
pub(crate) fn flag_fraud_by_kind<'scope>(
    kinds: &ByKind<'scope>,
    name: &str,
    config: &FraudConfig,
    touches: Option<&Touches<'scope>>,
) -> Fraud<'scope> {
    let scope = kinds.impressions.scope();
    let rules = Rules::new(name, config, kinds, touches);
    let candidates = concatenate(
        scope,
        [
            windows::flag(&rules),
            context::flag(&rules),
            sequence::flag(&rules),
        ]
        .into_iter()
        .flatten(),
    );

    // Several candidates may name the same event, rule and key: copies
    // of a resent event, or a flood seen from the two buckets that hold
    // it. Keep one verdict, with the strongest evidence.
    let verdicts = candidates
        .map(Verdict::into_parts)
        .reduce_named(&format!("{name}: verdicts"), |_key, input, output| {
            let strongest = input
                .iter()
                .filter(|(_, diff)| *diff > 0)
                .map(|(evidence, _)| **evidence)
                .max();
            if let Some(evidence) = strongest {
                output.push((evidence, 1isize));
            }
        })
        .map(|(key, evidence)| Verdict::from_parts(key, evidence));

    match config.horizon {
        None => Fraud {
            invalid: distinct(
                verdicts.clone().map(|verdict| verdict.event()),
                &format!("{name}: invalid"),
            ),
            verdicts,
        },
        Some(horizon) => {
            let windows = config.clone();
            let verdicts = verdicts.freeze_after(&format!("{name}: verdicts"), move |v| {
                expiry(v.ts, windows.lookahead(v.rule).saturating_add(horizon))
            });
            // An event's verdicts are all final one horizon after its
            // longest lookahead; retiring the (final) verdicts then and
            // freezing the ids at the same time keeps `invalid` exact
            // and its state flat.
            let longest = Rule::ALL
                .iter()
                .filter(|rule| config.enabled(**rule))
                .map(|rule| config.lookahead(*rule))
                .max()
                .unwrap_or(0)
                .saturating_add(horizon);
            let final_at = move |(_, ts): &EventKey| expiry(*ts, longest);
            let invalid = distinct(
                verdicts
                    .clone()
                    .map(|verdict| verdict.event())
                    .retire_after(&format!("{name}: invalid"), final_at),
                &format!("{name}: invalid"),
            )
            .freeze_after(&format!("{name}: invalid"), final_at);
            Fraud { verdicts, invalid }
        }
    }
}

/// The inputs every rule group builds from.
struct Rules<'a, 'scope> {
    name: &'a str,
    config: &'a FraudConfig,
    kinds: ByKind<'scope>,
    /// A shared arrangement of the touches, if the pipeline has one.
    touches: Option<&'a Touches<'scope>>,
}

impl<'a, 'scope> Rules<'a, 'scope> {
    fn new(
        name: &'a str,
        config: &'a FraudConfig,
        kinds: &ByKind<'scope>,
        touches: Option<&'a Touches<'scope>>,
    ) -> Self {
        Rules {
            name,
            config,
            kinds: kinds.clone(),
            touches,
        }
    }

    /// Every event, for the rules that judge all kinds. Built on demand:
    /// each consumer of a stream costs a copy of its batches.
    fn events(&self) -> VecCollection<'scope, Time, Event> {
        concatenate(
            self.kinds.impressions.scope(),
            EventKind::ALL.map(|kind| self.kinds.of(kind).clone()),
        )
    }

    /// The events of `kind`.
    fn of_kind(&self, kind: EventKind) -> VecCollection<'scope, Time, Event> {
        self.kinds.of(kind).clone()
    }

    /// `collection`, retired (with a horizon) once `span` ms of event time
    /// and the horizon have passed: from then on no admissible event can
    /// change a verdict that one of its records took part in.
    fn retire<D: Data>(
        &self,
        what: &str,
        collection: VecCollection<'scope, Time, D>,
        span: Millis,
        ts: fn(&D) -> Millis,
    ) -> VecCollection<'scope, Time, D> {
        match self.config.horizon {
            None => collection,
            Some(horizon) => {
                let after = span.saturating_add(horizon);
                collection.retire_after(&format!("{}: {what}", self.name), move |record| {
                    expiry(ts(record), after)
                })
            }
        }
    }

    /// A named operator: `<name>: <what>`.
    fn operator(&self, what: &str) -> String {
        format!("{}: {what}", self.name)
    }
}

/// One copy of every record with a positive count.
fn distinct<'scope, D: differential_dataflow::ExchangeData + std::hash::Hash>(
    collection: VecCollection<'scope, Time, D>,
    name: &str,
) -> VecCollection<'scope, Time, D> {
    collection.threshold_named(name, |_, count: &isize| isize::from(*count > 0))
}

/// The dataflow time just past `ts + after`.
fn expiry(ts: Millis, after: Millis) -> Time {
    Time::try_from(ts.saturating_add(after).saturating_add(1)).unwrap_or(Time::MAX)
}
