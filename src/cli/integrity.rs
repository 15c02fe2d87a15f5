//! `verify` and `audit`: tamper evidence from the shell.

use std::process::ExitCode;

use crate::config::Config;
use crate::store;

pub async fn verify_command(config: &Config, repair: bool, json: bool) -> anyhow::Result<ExitCode> {
    use crate::store::verify;
    let db = store::open(config).await?;
    let keys = {
        let c = db.pool.get().await?;
        crate::keys::admin::row_keys(config, &c).await?
    };
    // Checking writes nothing and may read a current replica; repairing
    // writes, on the primary.
    let replica = match repair {
        false => super::report::read_pool(config).await?,
        true => None,
    };
    let report = verify::verify(
        replica.as_ref().unwrap_or(&db.pool),
        &keys,
        verify::Options {
            repair,
            progress: !json,
        },
    )
    .await;
    db.close().await?;
    let report = report?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.findings {
            println!("{} {}: {} ({})", f.table, f.key, f.check, f.detail);
        }
        for r in &report.repaired {
            println!(
                "repaired {} {}: {} (was {})",
                r.table, r.key, r.restored, r.was
            );
        }
        let rows = report.total_rows();
        println!(
            "{rows} rows checked in {:.2} s ({:.0} rows/s): {} findings, {} repaired",
            report.seconds,
            rows as f64 / report.seconds.max(1e-9),
            report.findings.len(),
            report.repaired.len()
        );
    }
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub async fn audit_command(
    config: &Config,
    since: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let since = match since {
        None => None,
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(&s)
                .map(|d| d.with_timezone(&chrono::Utc))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
                })
                .map_err(|_| anyhow::anyhow!("--since takes RFC 3339 or YYYY-MM-DD, not {s:?}"))?,
        ),
    };
    let db = store::open(config).await?;
    let rows = {
        let c = db.pool.get().await?;
        crate::store::audit::list(&c, since).await
    };
    db.close().await?;
    for r in rows? {
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "{} {} {} terminal={} actor={} source={} {}",
                r.audit_id,
                r.at,
                r.kind,
                r.terminal_id.as_deref().unwrap_or("-"),
                r.actor.as_deref().unwrap_or("-"),
                r.source.as_deref().unwrap_or("-"),
                r.detail
            );
        }
    }
    Ok(())
}
