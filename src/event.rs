//! The event model: one flat record per impression, click, conversion or
//! page view.
//!
//! Two shapes of the same record exist. [`EventRecord`] is the wire shape
//! (strings, decimal money) that readers parse and writers emit, and that
//! `adgen` produces. [`Event`] is the compact shape inside the dataflow:
//! identifiers hashed to integers (event ids to 128 bits), money in integer
//! micros, time in epoch milliseconds. `Event` is `Copy` and fixed-size so
//! that exchanging and arranging it is cheap. See `docs/schema.md`.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use crate::money::Micros;
use crate::timestamp::Millis;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// An ad was shown.
    Impression,
    /// An ad was clicked.
    Click,
    /// A user converted (purchase, signup, install…); carries revenue, no placement.
    Conversion,
    /// A landing or site page was viewed (evidence that a click was genuine).
    PageView,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 4] = [
        EventKind::Impression,
        EventKind::Click,
        EventKind::Conversion,
        EventKind::PageView,
    ];

    /// The kind's position in [`EventKind::ALL`], to index per-kind tables.
    ///
    /// ```
    /// use adflow::event::EventKind;
    /// assert!(EventKind::ALL.iter().enumerate().all(|(at, kind)| kind.index() == at));
    /// ```
    pub fn index(self) -> usize {
        self as usize
    }

    /// The wire name: `impression`, `click`, `conversion`, `page_view`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Impression => "impression",
            EventKind::Click => "click",
            EventKind::Conversion => "conversion",
            EventKind::PageView => "page_view",
        }
    }

    /// Parses a wire name (case-sensitive, as documented).
    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Device class, a metrics dimension. Unrecognised values become `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DeviceType {
    /// Not reported.
    Unknown,
    /// Desktop or laptop browser.
    Desktop,
    /// Phone.
    Mobile,
    /// Tablet.
    Tablet,
    /// Connected TV.
    Ctv,
    /// Any other reported value.
    Other,
}

impl DeviceType {
    /// The wire name; `Unknown` renders as the empty string.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Unknown => "",
            DeviceType::Desktop => "desktop",
            DeviceType::Mobile => "mobile",
            DeviceType::Tablet => "tablet",
            DeviceType::Ctv => "ctv",
            DeviceType::Other => "other",
        }
    }

    /// Classifies a reported device type, ignoring ASCII case.
    pub fn parse(text: &str) -> DeviceType {
        const NAMED: [DeviceType; 4] = [
            DeviceType::Desktop,
            DeviceType::Mobile,
            DeviceType::Tablet,
            DeviceType::Ctv,
        ];
        if text.is_empty() {
            return DeviceType::Unknown;
        }
        NAMED
            .into_iter()
            .find(|device| device.as_str().eq_ignore_ascii_case(text))
            .unwrap_or(DeviceType::Other)
    }
}

/// ISO 3166-1 alpha-2 country code, upper case; `Country::UNKNOWN` is `"??"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Country(pub [u8; 2]);

/// One 16-bit word: the derived hash of a byte array writes its length and
/// then its bytes as a slice, which costs more than the rest of a metrics
/// key (every impression's hourly row is looked up by one).
impl std::hash::Hash for Country {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u16(u16::from_le_bytes(self.0));
    }
}

impl Country {
    /// The country of events that did not report one.
    pub const UNKNOWN: Country = Country(*b"??");

    /// Parses a two-letter code (any case); `None` if it is not two ASCII letters.
    pub fn parse(text: &str) -> Option<Country> {
        match text.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Country([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 64-bit hash of a string identifier (user, device, campaign, ad, …).
///
/// Hashing is deterministic (xxh3, fixed seed) so the same id maps to the
/// same `Id` on every worker, process and run.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Id(pub NonZeroU64);

impl Id {
    /// Hashes an identifier; the empty string has no id.
    ///
    /// The hash is XXH3-64 of the UTF-8 text, which outputs show as 16 hex
    /// digits where the text is not kept: the same as Python's
    /// `xxhash.xxh3_64_hexdigest`, so a user id in an output can be matched
    /// to the logs (docs/schema.md, "Names in outputs").
    ///
    /// ```
    /// use adflow::event::Id;
    /// assert_eq!(Id::of("campaign-7"), Id::of("campaign-7"));
    /// assert_ne!(Id::of("campaign-7"), Id::of("campaign-8"));
    /// assert_eq!(Id::of(""), None);
    /// assert_eq!(format!("{:016x}", Id::of("u-7").unwrap().get()), "2e24f166949b281e");
    /// ```
    pub fn of(text: &str) -> Option<Id> {
        if text.is_empty() {
            return None;
        }
        let hash = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
        // Zero is reserved for "absent"; fold it onto 1 (odds 2^-64).
        Some(Id(NonZeroU64::new(hash).unwrap_or(NonZeroU64::MIN)))
    }

    /// The raw hash.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:016x}", self.0)
    }
}

/// A 128-bit hash of a tracker event id: collisions are out of reach even at
/// 10^10 events a day, so it can stand in for the string as the dedup key.
///
/// Aligned to 8 bytes, not `u128`'s 16: records that hold an id next to
/// 8-byte fields (a touch: time, id, campaign, ad) would otherwise be
/// padded to a multiple of 16, and arrangements keep billions of them.
/// Read the id by value (`id.0`), as a packed field cannot be borrowed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(C, packed(8))]
pub struct EventId(pub u128);

impl EventId {
    /// Hashes an event id string: XXH3-128 of its UTF-8 text, which
    /// outputs show as 32 hex digits, the same as Python's
    /// `xxhash.xxh3_128_hexdigest`.
    ///
    /// ```
    /// use adflow::event::EventId;
    /// let id = EventId::of("e-1").0;
    /// assert_eq!(format!("{id:032x}"), "17087c4052212cb73d21bc8729acd985");
    /// ```
    pub fn of(text: &str) -> EventId {
        EventId(xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.0;
        write!(f, "#{id:032x}")
    }
}

/// An event inside the dataflow: compact, fixed-size, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Event {
    /// Event time (ms since epoch).
    pub ts: Millis,
    /// What happened.
    pub kind: EventKind,
    /// Hash of the tracker's event id; the dedup key.
    pub event_id: EventId,
    /// Hashed user id.
    pub user_id: Option<Id>,
    /// Hashed device id.
    pub device_id: Option<Id>,
    /// Hashed campaign id (absent on conversions).
    pub campaign_id: Option<Id>,
    /// Hashed ad id (absent on conversions).
    pub ad_id: Option<Id>,
    /// Hashed publisher id.
    pub publisher_id: Option<Id>,
    /// Client IP address.
    pub ip: Option<IpAddr>,
    /// Hashed user agent string; the raw string is classified into `agent` at parse time.
    pub user_agent: Option<Id>,
    /// What the user agent string says about the client.
    pub agent: AgentClass,
    /// Country dimension.
    pub country: Country,
    /// Device dimension.
    pub device_type: DeviceType,
    /// Media cost of this impression or click, in micros.
    pub cost_micros: Micros,
    /// Value of a conversion, in micros.
    pub revenue_micros: Micros,
    /// Hashed conversion type (purchase, signup, …).
    pub conversion_type: Option<Id>,
    /// Hashed order id; resent conversions share it.
    pub order_id: Option<Id>,
}

/// Whom an event is attributed to: the user id when the event has one,
/// otherwise its device id. An event with a user id is never matched through
/// its device id. Attribution matches touches to conversions on it, and the
/// per-identity fraud rules count by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Identity {
    /// A hashed user id.
    User(Id),
    /// A hashed device id, for events without a user id.
    Device(Id),
}

impl Identity {
    /// The identity of an event; `None` if it has neither id.
    pub fn of(event: &Event) -> Option<Identity> {
        event
            .user_id
            .map(Identity::User)
            .or_else(|| event.device_id.map(Identity::Device))
    }
}

/// `user #0123…` or `device #0123…` (the 64-bit hash in hex).
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::User(id) => write!(f, "user {id:?}"),
            Identity::Device(id) => write!(f, "device {id:?}"),
        }
    }
}

/// What a user agent string reveals, decided once at parse time so the
/// dataflow never carries the string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AgentClass {
    /// No user agent was sent.
    Missing,
    /// The string matches a known crawler, bot or HTTP-library pattern.
    Bot,
    /// Anything else.
    Browser,
}

/// Lower-case substrings that mark a user agent as automated. Matching is
/// case-insensitive. Fraud rules may extend this list; this is the default.
pub const BOT_AGENT_PATTERNS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "headless",
    "phantomjs",
    "selenium",
    "puppeteer",
    "playwright",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww-perl",
    "scrapy",
    "httpclient",
];

impl AgentClass {
    /// Classifies a user agent string against [`BOT_AGENT_PATTERNS`].
    ///
    /// ```
    /// use adflow::event::AgentClass;
    /// assert_eq!(AgentClass::classify(""), AgentClass::Missing);
    /// assert_eq!(AgentClass::classify("Mozilla/5.0 (compatible; Googlebot/2.1)"), AgentClass::Bot);
    /// assert_eq!(AgentClass::classify("Mozilla/5.0 (iPhone) Safari/604.1"), AgentClass::Browser);
    /// ```
    pub fn classify(user_agent: &str) -> AgentClass {
        if user_agent.trim().is_empty() {
            return AgentClass::Missing;
        }
        let lower = user_agent.to_ascii_lowercase();
        if BOT_AGENT_PATTERNS
            .iter()
            .any(|pattern| lower.contains(pattern))
        {
            AgentClass::Bot
        } else {
            AgentClass::Browser
        }
    }
}

/// An event on the wire: the documented schema of `docs/schema.md` with
/// owned strings. Absent optional fields are empty strings; money is micros
/// here and decimal units when written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Tracker's unique event id.
    pub event_id: String,
    /// `impression`, `click`, `conversion` or `page_view`.
    pub kind: String,
    /// Event time, ms since epoch (written as RFC 3339).
    pub ts: Millis,
    /// User identity.
    pub user_id: String,
    /// Device identity.
    pub device_id: String,
    /// Campaign (empty on conversions).
    pub campaign_id: String,
    /// Ad (empty on conversions).
    pub ad_id: String,
    /// Publisher / placement.
    pub publisher_id: String,
    /// Client IP address.
    pub ip: String,
    /// Raw user agent string.
    pub user_agent: String,
    /// ISO country code.
    pub country: String,
    /// desktop / mobile / tablet / ctv.
    pub device_type: String,
    /// Media cost in micros.
    pub cost_micros: Micros,
    /// Conversion revenue in micros.
    pub revenue_micros: Micros,
    /// purchase / signup / install / lead …
    pub conversion_type: String,
    /// Order id of a conversion.
    pub order_id: String,
}
