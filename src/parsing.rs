//! Total parsing: bytes or Arrow rows in, `Event` or `DeadLetter` out.
//!
//! Every format first extracts [`RawFields`], borrowed views of the wire
//! fields, and then one [`EventValidator`] turns them into an [`Event`]. The
//! format modules know syntax; only this module knows what a valid event is,
//! so JSONL, CSV, Parquet and Kafka reject the same records for the same
//! reasons.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::dead_letter::Reason;
use crate::event::{AgentClass, Country, DeviceType, Event, EventId, EventKind, EventRecord, Id};
use crate::hashing::PrehashedMap;
use crate::money::{parse_micros, Micros, MoneyError};
use crate::schema::FIELDS;
use crate::timestamp::{parse_rfc3339, Millis, DAY_MS, MAX_EVENT_TIME, MIN_EVENT_TIME};

pub mod arrow;
pub mod csv;
pub mod json;

/// A wire field, indexing [`RawFields`] in [`FIELDS`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Field {
    EventId,
    Kind,
    Ts,
    UserId,
    DeviceId,
    CampaignId,
    AdId,
    PublisherId,
    Ip,
    UserAgent,
    Country,
    DeviceType,
    Cost,
    Revenue,
    ConversionType,
    OrderId,
}

impl Field {
    /// Every field, in [`FIELDS`] order.
    pub const ALL: [Field; 16] = [
        Field::EventId,
        Field::Kind,
        Field::Ts,
        Field::UserId,
        Field::DeviceId,
        Field::CampaignId,
        Field::AdId,
        Field::PublisherId,
        Field::Ip,
        Field::UserAgent,
        Field::Country,
        Field::DeviceType,
        Field::Cost,
        Field::Revenue,
        Field::ConversionType,
        Field::OrderId,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        FIELDS[self.index()]
    }

    /// Position in [`FIELDS`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The field with this wire name.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|field| field.name() == name)
    }
}

/// One field's value as a format delivered it, before validation.
#[derive(Clone, Debug, PartialEq)]
pub enum RawValue<'a> {
    /// Text (JSON string, CSV cell, Arrow string).
    Text(Cow<'a, str>),
    /// A JSON number literal, kept as text so money stays exact.
    Number(&'a str),
    /// Text whose [`Id::of`] is known already: a value of an Arrow
    /// dictionary column, hashed once per dictionary entry rather than once
    /// per row. Never empty (an empty value is absent).
    Hashed(&'a str, Id),
    /// Epoch milliseconds from a typed column.
    Millis(Millis),
    /// Micros from a typed decimal column.
    Micros(Micros),
    /// A value of a type no field accepts (JSON object, array or boolean).
    WrongType(&'static str),
}

/// The raw fields of one record; `None` means absent (or null, or empty).
#[derive(Clone, Debug, Default)]
pub struct RawFields<'a> {
    values: [Option<RawValue<'a>>; 16],
}

impl<'a> RawFields<'a> {
    /// Sets a field; empty text counts as absent.
    pub fn set(&mut self, field: Field, value: RawValue<'a>) {
        let empty = match &value {
            RawValue::Text(text) => text.is_empty(),
            RawValue::Hashed(text, _) => text.is_empty(),
            _ => false,
        };
        self.values[field.index()] = if empty { None } else { Some(value) };
    }

    /// Reads a field.
    pub fn get(&self, field: Field) -> Option<&RawValue<'a>> {
        self.values[field.index()].as_ref()
    }

    /// Clears every field so the buffer can be reused.
    pub fn clear(&mut self) {
        self.values = Default::default();
    }
}

/// Why a record failed validation: the reason code and which field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Reason code.
    pub reason: Reason,
    /// Field name or error message.
    pub detail: Cow<'static, str>,
}

impl Rejection {
    /// A rejection naming a field.
    pub fn field(reason: Reason, field: Field) -> Rejection {
        Rejection {
            reason,
            detail: Cow::Borrowed(field.name()),
        }
    }

    /// A rejection with a free-form message.
    pub fn message(reason: Reason, message: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            detail: Cow::Owned(message.into()),
        }
    }
}

/// Default tolerance between an event's time and its stream's time.
pub const DEFAULT_MAX_CLOCK_SKEW: Millis = 365 * DAY_MS;

/// Turns raw fields into events, enforcing the schema's rules.
///
/// It also guards against corrupt clocks: a timestamp outside 2000–2100, or
/// further than `max_clock_skew` from the source's reference time, is
/// rejected. The reference is fixed (e.g. the wall clock), or else the
/// median of the source's first [`REFERENCE_SAMPLE`] timestamps within
/// 2000–2100: one corrupt clock among them, say a device reset to
/// 2000-01-01, cannot make it reject the whole source, as taking the
/// first time alone would.
///
/// ```
/// use adflow::parsing::{json::parse_json, EventValidator};
/// use adflow::dead_letter::Reason;
///
/// let mut validator = EventValidator::default();
/// let line = br#"{"event_id":"e1","kind":"click","ts":"2026-11-01T10:00:00Z",
///   "user_id":"u1","campaign_id":"c1","ad_id":"a1","cost":0.25}"#;
/// let event = parse_json(line).and_then(|raw| validator.validate(&raw)).unwrap();
/// assert_eq!(event.cost_micros, 250_000);
///
/// let bad = br#"{"event_id":"e2","kind":"click","ts":"yesterday","user_id":"u1"}"#;
/// let rejected = parse_json(bad).and_then(|raw| validator.validate(&raw)).unwrap_err();
/// assert_eq!(rejected.reason, Reason::BadTimestamp);
/// ```
#[derive(Clone, Debug)]
pub struct EventValidator {
    reference: Option<Millis>,
    /// Until `reference` is known: the times it will be the median of.
    reference_sample: Vec<Millis>,
    max_clock_skew: Millis,
    /// Classes of recently seen user agents, by their `Id`: traffic has few
    /// distinct agents, and matching the bot patterns is the costliest step
    /// of validation (about a tenth of a whole backfill before this cache).
    agents: PrehashedMap<Id, AgentClass>,
    /// Campaign and ad ids whose text this validator has passed to
    /// [`crate::names`], and the ones it has not yet handed on
    /// ([`EventValidator::take_new_names`]).
    named: PrehashedMap<Id, ()>,
    new_names: Vec<(Id, String)>,
}

/// How many of a source's first timestamps (within 2000–2100) a validator
/// with no fixed reference takes the median of as its reference. Those
/// times themselves are not checked against it.
pub const REFERENCE_SAMPLE: usize = 64;

/// User agents whose class a validator remembers before starting afresh.
const AGENT_CACHE_CAPACITY: usize = 4096;

impl Default for EventValidator {
    fn default() -> Self {
        EventValidator::new(None, DEFAULT_MAX_CLOCK_SKEW)
    }
}

impl EventValidator {
    /// A validator with a fixed reference time (e.g. now), or `None` to take
    /// the median of the first [`REFERENCE_SAMPLE`] times it sees.
    ///
    /// ```
    /// use adflow::dead_letter::Reason;
    /// use adflow::parsing::{json::parse_json, EventValidator, REFERENCE_SAMPLE};
    ///
    /// let mut validator = EventValidator::default();
    /// let mut at = |ts: &str| {
    ///     let line = format!(r#"{{"event_id":"e","kind":"page_view","ts":"{ts}","user_id":"u"}}"#);
    ///     parse_json(line.as_bytes()).and_then(|raw| validator.validate(&raw)).map(|_| ())
    /// };
    /// // A device whose clock was reset comes first: it does not set the reference.
    /// assert!(at("2000-01-01T00:00:05Z").is_ok());
    /// for _ in 1..REFERENCE_SAMPLE {
    ///     assert!(at("2026-11-01T10:00:00Z").is_ok());
    /// }
    /// assert!(at("2026-11-02T10:00:00Z").is_ok());
    /// assert_eq!(at("2000-01-01T00:00:05Z").unwrap_err().reason, Reason::TimestampOutOfRange);
    /// ```
    pub fn new(reference: Option<Millis>, max_clock_skew: Millis) -> EventValidator {
        EventValidator {
            reference,
            reference_sample: Vec::new(),
            max_clock_skew,
            agents: PrehashedMap::default(),
            named: PrehashedMap::default(),
            new_names: Vec::new(),
        }
    }

    /// The campaign and ad names this validator has seen since the last
    /// call, each once: what a worker broadcasts to the other processes of
    /// a cluster before the events carrying them (see [`crate::names`]).
    ///
    /// ```
    /// use adflow::event::Id;
    /// use adflow::parsing::{json::parse_json, EventValidator};
    ///
    /// let mut validator = EventValidator::default();
    /// for id in ["e1", "e2"] {
    ///     let line = format!(r#"{{"event_id":"{id}","kind":"impression",
    ///         "ts":"2026-11-01T10:00:00Z","user_id":"u1","campaign_id":"spring-sale","ad_id":"banner"}}"#);
    ///     parse_json(line.as_bytes()).and_then(|raw| validator.validate(&raw)).unwrap();
    /// }
    /// let mut names = Vec::new();
    /// validator.take_new_names(&mut names);
    /// assert_eq!(names, [
    ///     (Id::of("spring-sale").unwrap(), "spring-sale".to_owned()),
    ///     (Id::of("banner").unwrap(), "banner".to_owned()),
    /// ]);
    /// assert_eq!(adflow::names::id_text(Id::of("spring-sale").unwrap()), "spring-sale");
    /// validator.take_new_names(&mut names);
    /// assert_eq!(names.len(), 2, "each name is handed on once");
    /// ```
    pub fn take_new_names(&mut self, out: &mut Vec<(Id, String)>) {
        out.append(&mut self.new_names);
    }

    /// Remembers the text of a campaign or ad id, once per validator.
    fn name(&mut self, raw: &RawFields<'_>, field: Field, id: Option<Id>) {
        let Some(id) = id else { return };
        if self.named.contains_key(&id) {
            return;
        }
        // The id was read from this field's text, so the text is there.
        if let Ok(Some(text)) = optional_text(raw, field) {
            crate::names::remember(id, &text);
            self.new_names.push((id, text.into_owned()));
            self.named.insert(id, ());
        }
    }

    /// Validates one record.
    pub fn validate(&mut self, raw: &RawFields<'_>) -> Result<Event, Rejection> {
        let event_id = required_text(raw, Field::EventId)?;
        let kind_text = required_text(raw, Field::Kind)?;
        let kind = EventKind::parse(&kind_text)
            .ok_or_else(|| Rejection::message(Reason::UnknownKind, kind_text.to_string()))?;
        let ts = self.timestamp(raw)?;
        let user_id = optional_id(raw, Field::UserId)?;
        let device_id = optional_id(raw, Field::DeviceId)?;
        if user_id.is_none() && device_id.is_none() {
            return Err(Rejection::message(
                Reason::MissingField,
                "user_id or device_id",
            ));
        }
        let campaign_id = optional_id(raw, Field::CampaignId)?;
        let ad_id = optional_id(raw, Field::AdId)?;
        if matches!(kind, EventKind::Impression | EventKind::Click) {
            if campaign_id.is_none() {
                return Err(Rejection::field(Reason::MissingField, Field::CampaignId));
            }
            if ad_id.is_none() {
                return Err(Rejection::field(Reason::MissingField, Field::AdId));
            }
        }
        let ip = match optional_text(raw, Field::Ip)? {
            Some(text) => Some(
                text.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| Rejection::field(Reason::InvalidField, Field::Ip))?,
            ),
            None => None,
        };
        let user_agent_text = optional_text(raw, Field::UserAgent)?;
        let user_agent = optional_id(raw, Field::UserAgent)?;
        let agent = self.agent_class(user_agent, user_agent_text.as_deref().unwrap_or(""));
        let country = match optional_text(raw, Field::Country)? {
            Some(text) => Country::parse(text.trim())
                .ok_or_else(|| Rejection::field(Reason::InvalidField, Field::Country))?,
            None => Country::UNKNOWN,
        };
        let device_type = match optional_text(raw, Field::DeviceType)? {
            Some(text) => DeviceType::parse(text.trim()),
            None => DeviceType::Unknown,
        };
        let event = Event {
            ts,
            kind,
            event_id: EventId::of(&event_id),
            user_id,
            device_id,
            campaign_id,
            ad_id,
            publisher_id: optional_id(raw, Field::PublisherId)?,
            ip,
            user_agent,
            agent,
            country,
            device_type,
            cost_micros: money(raw, Field::Cost)?,
            revenue_micros: money(raw, Field::Revenue)?,
            conversion_type: optional_id(raw, Field::ConversionType)?,
            order_id: optional_id(raw, Field::OrderId)?,
        };
        self.name(raw, Field::CampaignId, campaign_id);
        self.name(raw, Field::AdId, ad_id);
        Ok(event)
    }

    /// Validates a wire record, e.g. one `adgen` generated, by the same rules
    /// as every format: the one conversion from `EventRecord` to `Event`.
    ///
    /// ```
    /// use adflow::event::EventRecord;
    /// use adflow::parsing::EventValidator;
    /// let record = EventRecord {
    ///     event_id: "e1".into(), kind: "impression".into(), ts: 1_793_527_200_000,
    ///     user_id: "u1".into(), campaign_id: "c1".into(), ad_id: "a1".into(),
    ///     cost_micros: 1_500, ..EventRecord::default()
    /// };
    /// let event = EventValidator::default().validate_record(&record).unwrap();
    /// assert_eq!((event.ts, event.cost_micros), (1_793_527_200_000, 1_500));
    /// ```
    pub fn validate_record(&mut self, record: &EventRecord) -> Result<Event, Rejection> {
        let mut raw = RawFields::default();
        let texts = [
            (Field::EventId, &record.event_id),
            (Field::Kind, &record.kind),
            (Field::UserId, &record.user_id),
            (Field::DeviceId, &record.device_id),
            (Field::CampaignId, &record.campaign_id),
            (Field::AdId, &record.ad_id),
            (Field::PublisherId, &record.publisher_id),
            (Field::Ip, &record.ip),
            (Field::UserAgent, &record.user_agent),
            (Field::Country, &record.country),
            (Field::DeviceType, &record.device_type),
            (Field::ConversionType, &record.conversion_type),
            (Field::OrderId, &record.order_id),
        ];
        for (field, text) in texts {
            raw.set(field, RawValue::Text(Cow::Borrowed(text.as_str())));
        }
        raw.set(Field::Ts, RawValue::Millis(record.ts));
        raw.set(Field::Cost, RawValue::Micros(record.cost_micros));
        raw.set(Field::Revenue, RawValue::Micros(record.revenue_micros));
        self.validate(&raw)
    }

    /// [`AgentClass::classify`], remembered per agent id.
    fn agent_class(&mut self, id: Option<Id>, text: &str) -> AgentClass {
        let Some(id) = id else {
            return AgentClass::classify(text);
        };
        if let Some(class) = self.agents.get(&id) {
            return *class;
        }
        let class = AgentClass::classify(text);
        if self.agents.len() >= AGENT_CACHE_CAPACITY {
            self.agents.clear();
        }
        self.agents.insert(id, class);
        class
    }

    fn timestamp(&mut self, raw: &RawFields<'_>) -> Result<Millis, Rejection> {
        let bad = || Rejection::field(Reason::BadTimestamp, Field::Ts);
        let ts = match raw.get(Field::Ts) {
            None => return Err(Rejection::field(Reason::MissingField, Field::Ts)),
            Some(RawValue::Millis(ms)) => *ms,
            Some(RawValue::Text(text)) => parse_time_text(text.trim()).ok_or_else(bad)?,
            Some(RawValue::Hashed(text, _)) => parse_time_text(text.trim()).ok_or_else(bad)?,
            Some(RawValue::Number(text)) => text.parse::<i64>().map_err(|_| bad())?,
            Some(RawValue::Micros(_)) | Some(RawValue::WrongType(_)) => {
                return Err(Rejection::field(Reason::WrongType, Field::Ts))
            }
        };
        let out_of_range = || Rejection::message(Reason::TimestampOutOfRange, ts.to_string());
        if !(MIN_EVENT_TIME..MAX_EVENT_TIME).contains(&ts) {
            return Err(out_of_range());
        }
        match self.reference {
            Some(reference) if ts.abs_diff(reference) > self.max_clock_skew.unsigned_abs() => {
                Err(out_of_range())
            }
            Some(_) => Ok(ts),
            None => {
                self.reference_sample.push(ts);
                if self.reference_sample.len() >= REFERENCE_SAMPLE {
                    let sample = std::mem::take(&mut self.reference_sample);
                    self.reference = median(sample);
                }
                Ok(ts)
            }
        }
    }
}

/// The lower median of `times`; `None` if there are none.
fn median(mut times: Vec<Millis>) -> Option<Millis> {
    times.sort_unstable();
    times.get(times.len().saturating_sub(1) / 2).copied()
}

/// Epoch milliseconds (all digits) or RFC 3339.
fn parse_time_text(text: &str) -> Option<Millis> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        parse_rfc3339(text)
    }
}

fn optional_text<'r>(
    raw: &'r RawFields<'_>,
    field: Field,
) -> Result<Option<Cow<'r, str>>, Rejection> {
    match raw.get(field) {
        None => Ok(None),
        Some(RawValue::Text(text)) => Ok(Some(Cow::Borrowed(text.as_ref()))),
        Some(RawValue::Hashed(text, _)) => Ok(Some(Cow::Borrowed(*text))),
        // Numeric ids are common in trackers; keep their literal text.
        Some(RawValue::Number(text)) => Ok(Some(Cow::Borrowed(*text))),
        Some(RawValue::Millis(value)) | Some(RawValue::Micros(value)) => {
            Ok(Some(Cow::Owned(value.to_string())))
        }
        Some(RawValue::WrongType(_)) => Err(Rejection::field(Reason::WrongType, field)),
    }
}

fn required_text<'r>(raw: &'r RawFields<'_>, field: Field) -> Result<Cow<'r, str>, Rejection> {
    optional_text(raw, field)?.ok_or_else(|| Rejection::field(Reason::MissingField, field))
}

fn optional_id(raw: &RawFields<'_>, field: Field) -> Result<Option<Id>, Rejection> {
    if let Some(RawValue::Hashed(_, id)) = raw.get(field) {
        return Ok(Some(*id));
    }
    Ok(optional_text(raw, field)?.and_then(|text| Id::of(&text)))
}

fn money(raw: &RawFields<'_>, field: Field) -> Result<Micros, Rejection> {
    let parsed = match raw.get(field) {
        None => Ok(0),
        Some(RawValue::Micros(micros)) if *micros < 0 => Err(MoneyError::Negative),
        Some(RawValue::Micros(micros)) => Ok(*micros),
        Some(RawValue::Text(text)) => parse_micros(text),
        Some(RawValue::Hashed(text, _)) | Some(RawValue::Number(text)) => parse_micros(text),
        Some(RawValue::Millis(_)) | Some(RawValue::WrongType(_)) => {
            return Err(Rejection::field(Reason::WrongType, field))
        }
    };
    parsed.map_err(|error| match error {
        MoneyError::Negative => Rejection::field(Reason::NegativeMoney, field),
        MoneyError::Malformed | MoneyError::OutOfRange => Rejection::field(Reason::BadMoney, field),
    })
}
