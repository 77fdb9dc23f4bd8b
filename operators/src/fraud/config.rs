//! What the fraud rules look for: [`FraudConfig`], its per-rule settings,
//! IP networks, and the loaders of the blocklist, datacenter ranges and
//! extra bot agents.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use adflow::event::{AgentClass, Event, Id};
use adflow::timestamp::{Millis, DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
use serde::{Deserialize, Serialize};

use super::Rule;

/// A rule that counts clicks per key in a sliding window: it fires on every
/// click that lies in some window of `window` ms holding more than
/// `threshold` clicks of the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Length of the sliding window in ms (windows are half-open,
    /// `[start, start + window)`; at least 1 ms is used).
    pub window: Millis,
    /// The rule fires when a window holds *more* than this many clicks.
    pub threshold: i64,
}

/// A rule that relates an event to the events of the same identity within
/// a time window before or after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// The window in ms (both ends inclusive; negative values count as 0).
    pub window: Millis,
}

/// The fraud rules' settings. `Default` enables every rule with the
/// documented defaults (see `docs/fraud.md`); the IP blocklist and the
/// datacenter ranges start empty and are usually loaded from files.
///
/// ```
/// use adflow_operators::fraud::{FraudConfig, Rule};
/// let config = FraudConfig::default();
/// assert_eq!((config.click_flood_ip.window, config.click_flood_ip.threshold), (60_000, 100));
/// assert!(Rule::ALL.iter().all(|rule| config.enabled(*rule)));
///
/// let only_floods = FraudConfig::only(&[Rule::ClickFloodIp]);
/// assert!(only_floods.enabled(Rule::ClickFloodIp) && !only_floods.enabled(Rule::NoPageView));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FraudConfig {
    /// `click_flood_ip`: more than 100 clicks from one IP in any 60 s.
    pub click_flood_ip: CountRule,
    /// `click_flood_user`: more than 20 clicks by one `user_id` in any 60 s.
    pub click_flood_user: CountRule,
    /// `device_velocity`: more than 10 clicks from one `device_id` in any 10 s.
    pub device_velocity: CountRule,
    /// `bot_user_agent`: events whose user agent was classified as a bot at
    /// parse time (`adflow::event::BOT_AGENT_PATTERNS`) or whose user-agent
    /// hash is in [`FraudConfig::bot_agents`].
    pub bot_user_agent: bool,
    /// Hashes (`Id::of`) of further user-agent strings to treat as bots,
    /// e.g. loaded with [`FraudConfig::load_bot_agents`].
    pub bot_agents: BTreeSet<Id>,
    /// `missing_user_agent`: events sent without a user agent.
    pub missing_user_agent: bool,
    /// `blocked_ip`: whether events from [`FraudConfig::blocked_ips`] are flagged.
    pub blocked_ip: bool,
    /// The IP blocklist (exact addresses).
    pub blocked_ips: BTreeSet<IpAddr>,
    /// `datacenter_ip`: whether events from [`FraudConfig::datacenter_cidrs`] are flagged.
    pub datacenter_ip: bool,
    /// Datacenter and hosting ranges; a match names the first network in
    /// this order.
    pub datacenter_cidrs: Vec<IpNetwork>,
    /// `geo_mismatch`: a conversion whose country differs from the country
    /// of the identity's latest click at most `window` (7 days) before it.
    pub geo_mismatch: WindowRule,
    /// `click_injection`: a click followed within `window` (10 s) by a
    /// conversion of the same identity.
    pub click_injection: WindowRule,
    /// `click_without_impression`: a click with no impression of the same
    /// identity and ad in the `window` (1 h) up to it.
    pub click_without_impression: WindowRule,
    /// `no_page_view`: a click with no page view of the same identity in
    /// the `window` (30 min) after it.
    pub no_page_view: WindowRule,
    /// The pipeline's lateness horizon (`TimeConfig::horizon`). With a
    /// horizon, the rules retire their state once no admissible event can
    /// change a verdict any more, and verdicts are frozen then; `None`
    /// (backfills) keeps every event.
    pub horizon: Option<Millis>,
}

impl Default for FraudConfig {
    fn default() -> Self {
        FraudConfig {
            click_flood_ip: CountRule {
                enabled: true,
                window: MINUTE_MS,
                threshold: 100,
            },
            click_flood_user: CountRule {
                enabled: true,
                window: MINUTE_MS,
                threshold: 20,
            },
            device_velocity: CountRule {
                enabled: true,
                window: 10 * SECOND_MS,
                threshold: 10,
            },
            bot_user_agent: true,
            bot_agents: BTreeSet::new(),
            missing_user_agent: true,
            blocked_ip: true,
            blocked_ips: BTreeSet::new(),
            datacenter_ip: true,
            datacenter_cidrs: Vec::new(),
            geo_mismatch: WindowRule {
                enabled: true,
                window: 7 * DAY_MS,
            },
            click_injection: WindowRule {
                enabled: true,
                window: 10 * SECOND_MS,
            },
            click_without_impression: WindowRule {
                enabled: true,
                window: HOUR_MS,
            },
            no_page_view: WindowRule {
                enabled: true,
                window: 30 * MINUTE_MS,
            },
            horizon: None,
        }
    }
}

impl FraudConfig {
    /// The defaults with only `rules` enabled.
    pub fn only(rules: &[Rule]) -> FraudConfig {
        let mut config = FraudConfig::default();
        for rule in Rule::ALL {
            config.set_enabled(rule, rules.contains(&rule));
        }
        config
    }

    /// Whether `rule` runs.
    pub fn enabled(&self, rule: Rule) -> bool {
        match rule {
            Rule::ClickFloodIp => self.click_flood_ip.enabled,
            Rule::ClickFloodUser => self.click_flood_user.enabled,
            Rule::DeviceVelocity => self.device_velocity.enabled,
            Rule::BotUserAgent => self.bot_user_agent,
            Rule::MissingUserAgent => self.missing_user_agent,
            Rule::BlockedIp => self.blocked_ip,
            Rule::DatacenterIp => self.datacenter_ip,
            Rule::GeoMismatch => self.geo_mismatch.enabled,
            Rule::ClickInjection => self.click_injection.enabled,
            Rule::ClickWithoutImpression => self.click_without_impression.enabled,
            Rule::NoPageView => self.no_page_view.enabled,
        }
    }

    /// Turns `rule` on or off.
    pub fn set_enabled(&mut self, rule: Rule, enabled: bool) {
        match rule {
            Rule::ClickFloodIp => self.click_flood_ip.enabled = enabled,
            Rule::ClickFloodUser => self.click_flood_user.enabled = enabled,
            Rule::DeviceVelocity => self.device_velocity.enabled = enabled,
            Rule::BotUserAgent => self.bot_user_agent = enabled,
            Rule::MissingUserAgent => self.missing_user_agent = enabled,
            Rule::BlockedIp => self.blocked_ip = enabled,
            Rule::DatacenterIp => self.datacenter_ip = enabled,
            Rule::GeoMismatch => self.geo_mismatch.enabled = enabled,
            Rule::ClickInjection => self.click_injection.enabled = enabled,
            Rule::ClickWithoutImpression => self.click_without_impression.enabled = enabled,
            Rule::NoPageView => self.no_page_view.enabled = enabled,
        }
    }

    /// How far before a flagged event the evidence of `rule` may lie, in ms.
    pub fn lookback(&self, rule: Rule) -> Millis {
        match rule {
            Rule::ClickFloodIp => self.click_flood_ip.sliding_window(),
            Rule::ClickFloodUser => self.click_flood_user.sliding_window(),
            Rule::DeviceVelocity => self.device_velocity.sliding_window(),
            Rule::GeoMismatch => self.geo_mismatch.span(),
            Rule::ClickWithoutImpression => self.click_without_impression.span(),
            Rule::BotUserAgent
            | Rule::MissingUserAgent
            | Rule::BlockedIp
            | Rule::DatacenterIp
            | Rule::ClickInjection
            | Rule::NoPageView => 0,
        }
    }

    /// How far after a flagged event the evidence of `rule` may lie, in ms:
    /// a verdict can appear or disappear until this long after its event.
    pub fn lookahead(&self, rule: Rule) -> Millis {
        match rule {
            Rule::ClickFloodIp => self.click_flood_ip.sliding_window(),
            Rule::ClickFloodUser => self.click_flood_user.sliding_window(),
            Rule::DeviceVelocity => self.device_velocity.sliding_window(),
            Rule::ClickInjection => self.click_injection.span(),
            Rule::NoPageView => self.no_page_view.span(),
            Rule::BotUserAgent
            | Rule::MissingUserAgent
            | Rule::BlockedIp
            | Rule::DatacenterIp
            | Rule::GeoMismatch
            | Rule::ClickWithoutImpression => 0,
        }
    }

    /// Whether the bot rule flags `event`: its agent was classified `Bot`
    /// at parse time, or its user-agent hash is in [`FraudConfig::bot_agents`].
    pub fn is_bot_agent(&self, event: &Event) -> bool {
        event.agent == AgentClass::Bot
            || event
                .user_agent
                .is_some_and(|agent| self.bot_agents.contains(&agent))
    }

    /// The first datacenter network that holds `ip`, in configuration order.
    pub fn datacenter_network(&self, ip: IpAddr) -> Option<&IpNetwork> {
        self.datacenter_cidrs
            .iter()
            .find(|network| network.contains(ip))
    }

    /// Parses a CIDR list: one network (`34.64.0.0/10`, `2600:1f00::/24`,
    /// or a bare address for a single host) per line; `#` starts a comment;
    /// blank lines are skipped.
    ///
    /// ```
    /// use adflow_operators::fraud::FraudConfig;
    /// let networks = FraudConfig::parse_cidrs("# clouds\n34.64.0.0/10\n\n52.0.0.0/11 # aws\n").unwrap();
    /// assert_eq!(networks.len(), 2);
    /// assert!(networks[0].contains("34.100.1.2".parse().unwrap()));
    /// let error = FraudConfig::parse_cidrs("34.64.0.0/33").unwrap_err();
    /// assert_eq!(error.to_string(), "line 1: not a network (address/prefix): \"34.64.0.0/33\"");
    /// ```
    pub fn parse_cidrs(text: &str) -> Result<Vec<IpNetwork>, FraudConfigError> {
        entries(text)
            .map(|(line, entry)| {
                entry.parse().map_err(|_| FraudConfigError::BadLine {
                    line,
                    expected: "a network (address/prefix)",
                    text: entry.to_owned(),
                })
            })
            .collect()
    }

    /// Reads a CIDR list (see [`FraudConfig::parse_cidrs`]), e.g.
    /// `datasets/fixtures/datacenter_cidrs.txt`:
    /// `config.datacenter_cidrs = FraudConfig::load_datacenter_cidrs(path)?`.
    pub fn load_datacenter_cidrs(
        path: impl AsRef<Path>,
    ) -> Result<Vec<IpNetwork>, FraudConfigError> {
        let path = path.as_ref();
        FraudConfig::parse_cidrs(&read(path)?).map_err(|error| error.in_file(path))
    }

    /// Parses an IP blocklist: one address per line, `#` comments.
    ///
    /// ```
    /// use adflow_operators::fraud::FraudConfig;
    /// let blocked = FraudConfig::parse_ips("203.0.113.9\n2001:db8::1 # test\n").unwrap();
    /// assert!(blocked.contains(&"2001:db8::1".parse().unwrap()));
    /// assert!(FraudConfig::parse_ips("203.0.113.0/24").is_err());
    /// ```
    pub fn parse_ips(text: &str) -> Result<BTreeSet<IpAddr>, FraudConfigError> {
        entries(text)
            .map(|(line, entry)| {
                entry.parse().map_err(|_| FraudConfigError::BadLine {
                    line,
                    expected: "an IP address",
                    text: entry.to_owned(),
                })
            })
            .collect()
    }

    /// Reads an IP blocklist (see [`FraudConfig::parse_ips`]).
    pub fn load_blocked_ips(path: impl AsRef<Path>) -> Result<BTreeSet<IpAddr>, FraudConfigError> {
        let path = path.as_ref();
        FraudConfig::parse_ips(&read(path)?).map_err(|error| error.in_file(path))
    }

    /// Reads a list of exact user-agent strings to treat as bots (one per
    /// line, `#` comments), hashed as the parser hashes them. Substring
    /// patterns belong in `adflow::event::BOT_AGENT_PATTERNS`, applied at
    /// parse time: the dataflow only sees the hash and the class.
    pub fn load_bot_agents(path: impl AsRef<Path>) -> Result<BTreeSet<Id>, FraudConfigError> {
        let text = read(path.as_ref())?;
        Ok(entries(&text)
            .filter_map(|(_, entry)| Id::of(entry))
            .collect())
    }
}

impl CountRule {
    /// The window actually used: at least 1 ms.
    pub fn sliding_window(&self) -> Millis {
        self.window.max(1)
    }
}

impl WindowRule {
    /// The window actually used: at least 0 ms.
    pub fn span(&self) -> Millis {
        self.window.max(0)
    }
}

/// The non-blank, comment-stripped entries of a list file, with 1-based line numbers.
fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(index, line)| {
        let entry = line.split('#').next().unwrap_or("").trim();
        (!entry.is_empty()).then_some((index + 1, entry))
    })
}

fn read(path: &Path) -> Result<String, FraudConfigError> {
    std::fs::read_to_string(path).map_err(|source| FraudConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Why a fraud list could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FraudConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not what the list holds.
    #[error("line {line}: not {expected}: {text:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What the line should have been.
        expected: &'static str,
        /// The offending entry.
        text: String,
    },
    /// A bad line in a named file.
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        error: Box<FraudConfigError>,
    },
}

impl FraudConfigError {
    fn in_file(self, path: &Path) -> FraudConfigError {
        FraudConfigError::InFile {
            path: path.to_owned(),
            error: Box::new(self),
        }
    }
}

/// An IP network: an address with its host bits cleared and a prefix length.
///
/// ```
/// use adflow_operators::fraud::IpNetwork;
/// let network: IpNetwork = "34.64.1.2/10".parse().unwrap();
/// assert_eq!(network.to_string(), "34.64.0.0/10");
/// assert!(network.contains("34.127.255.255".parse().unwrap()));
/// assert!(!network.contains("34.128.0.0".parse().unwrap()));
/// assert!(!network.contains("::1".parse().unwrap()));
/// let host: IpNetwork = "2001:db8::7".parse().unwrap();
/// assert_eq!(host.to_string(), "2001:db8::7/128");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNetwork {
    network: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The network of `address` with `prefix` leading bits (at most 32 for
    /// IPv4, 128 for IPv6); `None` if the prefix is too long.
    pub fn new(address: IpAddr, prefix: u8) -> Option<IpNetwork> {
        let network = match address {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(
                u32::from(v4) & u32::try_from(mask(prefix, 32)?).ok()?,
            )),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask(prefix, 128)?)),
        };
        Some(IpNetwork { network, prefix })
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network (IPv4 networks hold only IPv4 addresses).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = mask(self.prefix, 32).unwrap_or(0);
                u128::from(u32::from(ip)) & mask == u128::from(u32::from(network))
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = mask(self.prefix, 128).unwrap_or(0);
                u128::from(ip) & mask == u128::from(network)
            }
            _ => false,
        }
    }
}

/// The mask of `prefix` leading ones in a `bits`-bit address, as the low
/// `bits` bits of a `u128`; `None` if `prefix > bits`.
fn mask(prefix: u8, bits: u32) -> Option<u128> {
    let prefix = u32::from(prefix);
    if prefix > bits {
        return None;
    }
    let all = if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    Some(all & !all.checked_shr(prefix).unwrap_or(0))
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNetwork, String> {
        let bad = || format!("not a network (address/prefix): {text:?}");
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| bad())?;
        let prefix = match prefix {
            Some(prefix) => prefix.trim().parse().map_err(|_| bad())?,
            None if address.is_ipv4() => 32,
            None => 128,
        };
        IpNetwork::new(address, prefix).ok_or_else(bad)
    }
}

impl TryFrom<String> for IpNetwork {
    type Error = String;

    fn try_from(text: String) -> Result<IpNetwork, String> {
        text.parse()
    }
}

impl From<IpNetwork> for String {
    fn from(network: IpNetwork) -> String {
        network.to_string()
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}
