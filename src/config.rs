//! One `Config`, built from defaults, then the TOML file, then environment and
//! flags (clap merges those two before we see them). It is passed down by value
//! or `Arc`; nothing reads configuration from a global.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format must be text or json, not {other:?}")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// `None`: the embedded private cluster under `data_dir/pg`.
    pub database_url: Option<String>,
    /// A replica (or the HA read port) for reads that may lag: settlement,
    /// liability, reports, `verify` (issue 13).
    pub read_database_url: Option<String>,
    pub data_dir: PathBuf,
    pub keys_dir: PathBuf,
    pub log_format: LogFormat,
    pub server: ServerConfig,
    pub db: DbConfig,
    pub business: BusinessConfig,
    pub protocol: ProtocolConfig,
    pub keys: KeysConfig,
    pub ledger: LedgerSettings,
    pub events: EventsConfig,
    pub backup: BackupConfig,
}

/// The embedded cluster's own backups (issue 13): WAL is archived into
/// `<data-dir>/backup/wal` always; a daemon on the embedded cluster also
/// takes a base backup when the newest is `every_hours` old, and keeps the
/// newest `keep` (0: no base backups by the daemon).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    pub keep: usize,
    pub every_hours: u64,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            keep: 7,
            every_hours: 24,
        }
    }
}

/// Webhook delivery of events (protocol.md §8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Whether this daemon delivers events (with several daemons, any
    /// number may: each delivery is leased by one).
    pub deliver: bool,
    /// How often the deliverer looks for new events and due deliveries.
    pub poll_ms: u64,
    /// Deliveries leased per round, and so in flight at once at most.
    pub batch: i64,
    /// One attempt's limit: connect, send, answer (protocol.md §8: 10 s).
    pub timeout_ms: u64,
    /// After attempt k fails, the next comes `retry_delays_s[k-1]` later;
    /// when they run out the delivery is failed (protocol.md §8's schedule).
    pub retry_delays_s: Vec<u64>,
    /// Events are kept at least this long (protocol.md §8: 90 days).
    pub keep_days: i64,
    /// PEM certificates trusted for `https://` endpoints besides the
    /// public web's roots (a chain's own CA).
    pub ca_file: Option<PathBuf>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            deliver: true,
            poll_ms: 100,
            batch: 64,
            timeout_ms: 10_000,
            retry_delays_s: vec![
                15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10_800, 10_800, 10_800, 21_600,
                21_600,
            ],
            keep_days: 90,
            ca_file: None,
        }
    }
}

/// The business day: day keys, day secrets and same-day reversals follow it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessConfig {
    /// The shops' time zone as a fixed offset, `+08:00` by default.
    pub utc_offset: String,
    /// How long after midnight yesterday's day keys still work.
    #[serde(with = "secs")]
    pub grace: Duration,
    /// Days a card's membership runs from its registration or last top-up
    /// (protocol.md §6.2); 0, the default: it never lapses.
    pub card_validity_days: u32,
}

impl Default for BusinessConfig {
    fn default() -> Self {
        BusinessConfig {
            utc_offset: "+08:00".into(),
            grace: Duration::from_secs(600),
            card_validity_days: 0,
        }
    }
}

impl BusinessConfig {
    /// The offset; `Config::load` has checked that it parses.
    pub fn offset(&self) -> chrono::FixedOffset {
        parse_offset(&self.utc_offset)
            .unwrap_or_else(|| chrono::FixedOffset::east_opt(8 * 3600).expect("valid"))
    }
}

/// Parses `+08:00`, `-05:30`, `Z`.
pub fn parse_offset(s: &str) -> Option<chrono::FixedOffset> {
    if s == "Z" || s == "+00:00" || s == "-00:00" {
        return chrono::FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 14 || m > 59 {
        return None;
    }
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Settings of the wire protocol (protocol.md §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolConfig {
    /// A request's `ts` may differ from the server clock by at most this.
    #[serde(with = "secs")]
    pub ts_window: Duration,
    /// Token bucket per source address over hello, login and txn: requests
    /// per second, and the burst allowed above that rate (1009 beyond).
    pub addr_rate: u32,
    pub addr_burst: u32,
    /// Token bucket per terminal id, same requests.
    pub terminal_rate: u32,
    pub terminal_burst: u32,
    /// Each failed login doubles the delay before the terminal's next login
    /// is answered (from 50 ms), up to this; a success resets it. A delay,
    /// never a lockout: the right password still gets in.
    #[serde(with = "secs")]
    pub login_delay_max: Duration,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            ts_window: Duration::from_secs(300),
            addr_rate: 500,
            addr_burst: 1000,
            terminal_rate: 50,
            terminal_burst: 100,
            login_delay_max: Duration::from_secs(5),
        }
    }
}

/// Key lifetimes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    pub signer_validity_days: u32,
    /// An old root keeps certifying this long after `keys rotate-root`.
    pub root_overlap_days: u32,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            signer_validity_days: 90,
            root_overlap_days: 30,
        }
    }
}

/// Money and points rules the business configures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// Months after which earned points expire; absent: never.
    pub points_expiry_months: Option<u32>,
    /// Top-up bonuses: a top-up of at least `min_topup` gets `bonus`.
    pub bonus_rules: Vec<BonusRuleSetting>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BonusRuleSetting {
    #[serde(with = "rust_decimal::serde::str")]
    pub min_topup: rust_decimal::Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub bonus: rust_decimal::Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted; protocol.md §1 fixes 16 KiB.
    pub max_body_bytes: usize,
    #[serde(with = "secs")]
    pub header_timeout: Duration,
    #[serde(with = "secs")]
    pub body_timeout: Duration,
    /// How long shutdown waits for in-flight requests before it drops them.
    #[serde(with = "secs")]
    pub shutdown_grace: Duration,
    /// Client connections served at once; further ones wait in the
    /// listen backlog until one ends (each costs a task and its buffers).
    pub max_connections: usize,
    /// Proxies whose `X-Forwarded-For` names the client (HAProxy in front
    /// of several daemons): behind one, every till would otherwise share
    /// the proxy's address, its bucket and its login slow-down.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(4),
            max_connections: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    pub pool_size: usize,
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
    /// A request's transaction gives up waiting for a row lock after this
    /// (3002, nothing changed, the terminal may resend): a posting holds a
    /// card for milliseconds, so a longer wait means something else holds it.
    #[serde(with = "secs")]
    pub lock_timeout: Duration,
    /// ... and any one of its statements after this.
    #[serde(with = "secs")]
    pub statement_timeout: Duration,
    /// Reads sent to `read_database_url` while the replica is at most this
    /// far behind (`pg_last_xact_replay_timestamp()`); else to the primary.
    #[serde(with = "secs")]
    pub replica_max_lag: Duration,
    /// Group commit (issue 14): at most this many txns share one database
    /// transaction and its WAL flush (1: each txn alone).
    pub batch_max: usize,
    /// How long a batch waits for more txns, and only while others are
    /// being decrypted or other batches run: at one client, no wait at all.
    pub batch_wait_us: u64,
    /// Batches in flight at once, each on one pooled connection (at most
    /// half the pool, so txns that run alone always find one).
    pub batch_workers: usize,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            pool_size: 32,
            connect_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            replica_max_lag: Duration::from_secs(5),
            batch_max: 16,
            batch_wait_us: 200,
            batch_workers: 4,
        }
    }
}

/// The file form: every key optional, sections as in the README.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub read_database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub keys_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub server: ServerConfig,
    pub db: DbConfig,
    pub business: BusinessConfig,
    pub protocol: ProtocolConfig,
    pub keys: KeysConfig,
    pub ledger: LedgerSettings,
    pub events: EventsConfig,
    pub backup: BackupConfig,
}

/// What the command line and environment said; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub database_url: Option<String>,
    pub read_database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub keys_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub listen: Option<SocketAddr>,
}

impl Config {
    pub fn load(file: Option<&Path>, over: Overrides) -> anyhow::Result<Config> {
        let fc = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", p.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| anyhow::anyhow!("config file {}: {e}", p.display()))?
            }
            None => FileConfig::default(),
        };
        if parse_offset(&fc.business.utc_offset).is_none() {
            anyhow::bail!(
                "business.utc_offset must look like +08:00, not {:?}",
                fc.business.utc_offset
            );
        }
        Ok(Config::merge(fc, over))
    }

    pub fn merge(fc: FileConfig, over: Overrides) -> Config {
        let mut server = fc.server;
        if let Some(l) = over.listen {
            server.listen = l;
        }
        Config {
            database_url: over
                .database_url
                .or(fc.database_url)
                .filter(|s| !s.is_empty()),
            read_database_url: over
                .read_database_url
                .or(fc.read_database_url)
                .filter(|s| !s.is_empty()),
            data_dir: over
                .data_dir
                .or(fc.data_dir)
                .unwrap_or_else(|| PathBuf::from("./var")),
            keys_dir: over
                .keys_dir
                .or(fc.keys_dir)
                .unwrap_or_else(|| PathBuf::from("./keys")),
            log_format: over.log_format.or(fc.log_format).unwrap_or_default(),
            server,
            db: fc.db,
            business: fc.business,
            protocol: fc.protocol,
            keys: fc.keys,
            ledger: fc.ledger,
            events: fc.events,
            backup: fc.backup,
        }
    }

    /// The effective configuration as TOML, with secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let url = match &self.database_url {
            Some(url) => redact_url(url),
            None => format!(
                "(embedded cluster in {})",
                self.data_dir.join("pg").display()
            ),
        };
        let mut view = self.file_view(url);
        view.read_database_url = self.read_database_url.as_deref().map(redact_url);
        toml::to_string_pretty(&view).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// The configuration in the file's form, with `database_url` as given
    /// (`config show` redacts it; `bench` writes its child daemon's file).
    pub fn file_view(&self, database_url: String) -> FileView<'_> {
        FileView {
            database_url,
            read_database_url: self.read_database_url.clone(),
            data_dir: &self.data_dir,
            keys_dir: &self.keys_dir,
            log_format: self.log_format,
            server: std::borrow::Cow::Borrowed(&self.server),
            db: &self.db,
            business: &self.business,
            protocol: std::borrow::Cow::Borrowed(&self.protocol),
            keys: &self.keys,
            ledger: &self.ledger,
            events: &self.events,
            backup: &self.backup,
        }
    }
}

/// A [`Config`] as a configuration file says it (see [`Config::file_view`]);
/// the server and protocol sections may be replaced by changed copies.
#[derive(Serialize)]
pub struct FileView<'a> {
    pub database_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_database_url: Option<String>,
    pub data_dir: &'a Path,
    pub keys_dir: &'a Path,
    pub log_format: LogFormat,
    pub server: std::borrow::Cow<'a, ServerConfig>,
    pub db: &'a DbConfig,
    pub business: &'a BusinessConfig,
    pub protocol: std::borrow::Cow<'a, ProtocolConfig>,
    pub keys: &'a KeysConfig,
    pub ledger: &'a LedgerSettings,
    pub events: &'a EventsConfig,
    pub backup: &'a BackupConfig,
}

/// Hides a password in a URL (`postgres://u:secret@h/db`) or key=value string.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            let user = userinfo.split(':').next().unwrap_or("");
            return if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                url.to_string()
            };
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        if !(0.0..=86_400.0).contains(&v) {
            return Err(serde::de::Error::custom(
                "seconds must be between 0 and 86400",
            ));
        }
        Ok(Duration::from_secs_f64(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let fc: FileConfig = toml::from_str(
            "data_dir = \"/srv/cs\"\nlog_format = \"json\"\n[server]\nlisten = \"0.0.0.0:9000\"\nbody_timeout = 2.5\n",
        )
        .unwrap();
        let over = Overrides {
            log_format: Some(LogFormat::Text),
            ..Default::default()
        };
        let c = Config::merge(fc, over);
        assert_eq!(c.data_dir, PathBuf::from("/srv/cs"));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.server.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.server.body_timeout, Duration::from_millis(2500));
        assert_eq!(c.keys_dir, PathBuf::from("./keys"));
        assert_eq!(c.database_url, None);
    }

    #[test]
    fn sections_parse() {
        let fc: FileConfig = toml::from_str(
            "[business]\nutc_offset = \"-05:30\"\n[ledger]\npoints_expiry_months = 12\n\
             [[ledger.bonus_rules]]\nmin_topup = \"500.00\"\nbonus = \"50.00\"\n",
        )
        .unwrap();
        let c = Config::merge(fc, Overrides::default());
        assert_eq!(c.business.offset().local_minus_utc(), -(5 * 3600 + 30 * 60));
        assert_eq!(c.ledger.points_expiry_months, Some(12));
        assert_eq!(
            c.ledger.bonus_rules[0].bonus,
            rust_decimal::Decimal::new(5000, 2)
        );
        assert_eq!(c.protocol.ts_window, Duration::from_secs(300));
        assert!(c.to_redacted_toml().contains("utc_offset"));
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+08:00").unwrap().local_minus_utc(), 8 * 3600);
        assert_eq!(parse_offset("Z").unwrap().local_minus_utc(), 0);
        for bad in ["08:00", "+8:00", "+15:00", "+08:60", "", "+08"] {
            assert!(parse_offset(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("dta_dir = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>("[server]\nlsten = \"x\"").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/cs"),
            "postgres://app:***@db.example:5432/cs"
        );
        assert_eq!(
            redact_url("host=/tmp user=x password=abc dbname=y"),
            "host=/tmp user=x password=*** dbname=y"
        );
        let c = Config::merge(
            FileConfig::default(),
            Overrides {
                database_url: Some("postgres://a:topsecret@h/d".into()),
                read_database_url: Some("postgres://r:readsecret@replica/d".into()),
                ..Default::default()
            },
        );
        let shown = c.to_redacted_toml();
        assert!(
            !shown.contains("topsecret") && !shown.contains("readsecret"),
            "{shown}"
        );
        assert!(shown.contains("r:***@replica"), "{shown}");
    }
}
