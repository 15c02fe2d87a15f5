//! `keys status`: the root, signer and day keys as ops see them, with
//! warnings for what is due.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::config::Config;
use crate::store::keys as sk;

use super::admin::{root_key_path, SIGNER_WARN_DAYS};

#[derive(Debug, serde::Serialize)]
pub struct RootStatus {
    pub root_id: String,
    pub created_at: String,
    pub age_days: i64,
    pub current: bool,
    pub overlap_until: Option<String>,
    pub key_file_here: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct SignerStatus {
    pub signer_id: String,
    pub not_after: String,
    pub days_left: i64,
    pub due: bool,
    pub certified_by: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct KeyStatus {
    pub master_key_id: Option<String>,
    pub roots: Vec<RootStatus>,
    pub signer: Option<SignerStatus>,
    pub terminals: Vec<sk::TerminalKeyStatus>,
    pub warnings: Vec<String>,
}

fn ms_to_rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// `keys status`.
pub async fn status(config: &Config, pool: &Pool) -> anyhow::Result<KeyStatus> {
    let client = pool.get().await?;
    let now = Utc::now();
    let mut warnings = Vec::new();
    let master_key_id = match super::load_master(&config.keys_dir) {
        Ok(m) => Some(m.id().to_owned()),
        Err(e) => {
            warnings.push(format!("{e:#}"));
            None
        }
    };
    let roots = sk::roots(&client)
        .await?
        .into_iter()
        .map(|r| RootStatus {
            key_file_here: root_key_path(&config.keys_dir, &r.root_id).exists(),
            age_days: (now - r.created_at).num_days(),
            created_at: r.created_at.to_rfc3339(),
            current: r.overlap_until.is_none(),
            overlap_until: r.overlap_until.map(|u| u.to_rfc3339()),
            root_id: r.root_id,
        })
        .collect();
    let signer = match sk::current_signer(&client).await? {
        None => None,
        Some(s) => {
            let days_left = (s.not_after_ms - now.timestamp_millis()).div_euclid(86_400_000);
            let due = days_left < SIGNER_WARN_DAYS;
            if due {
                warnings.push(format!(
                    "signer {} expires in {days_left} days: run `cardswitch keys rotate-signer`",
                    s.signer_id
                ));
            }
            let mut certified_by = Vec::new();
            for r in sk::roots(&client).await? {
                if sk::signer_cert(&client, &s.signer_id, &r.root_id)
                    .await?
                    .is_some()
                {
                    certified_by.push(r.root_id);
                }
            }
            Some(SignerStatus {
                not_after: ms_to_rfc3339(s.not_after_ms),
                signer_id: s.signer_id,
                days_left,
                due,
                certified_by,
            })
        }
    };
    let terminals = sk::terminal_key_status(&client, now.timestamp_millis()).await?;
    Ok(KeyStatus {
        master_key_id,
        roots,
        signer,
        terminals,
        warnings,
    })
}
