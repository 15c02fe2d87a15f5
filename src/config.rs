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
    pub data_dir: PathBuf,
    pub keys_dir: PathBuf,
    pub log_format: LogFormat,
    pub server: ServerConfig,
    pub db: DbConfig,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(4),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    pub pool_size: usize,
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            pool_size: 32,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The file form: every key optional, sections as in the README.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub keys_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub server: ServerConfig,
    pub db: DbConfig,
}

/// What the command line and environment said; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub database_url: Option<String>,
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
        }
    }

    /// The effective configuration as TOML, with secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        #[derive(Serialize)]
        struct Shown<'a> {
            database_url: String,
            data_dir: &'a Path,
            keys_dir: &'a Path,
            log_format: LogFormat,
            server: &'a ServerConfig,
            db: &'a DbConfig,
        }
        let shown = Shown {
            database_url: match &self.database_url {
                Some(url) => redact_url(url),
                None => format!(
                    "(embedded cluster in {})",
                    self.data_dir.join("pg").display()
                ),
            },
            data_dir: &self.data_dir,
            keys_dir: &self.keys_dir,
            log_format: self.log_format,
            server: &self.server,
            db: &self.db,
        };
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
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
                ..Default::default()
            },
        );
        assert!(!c.to_redacted_toml().contains("topsecret"));
    }
}
