//! Backups (issue 13): base backups taken with `pg_basebackup`, the WAL
//! archive the embedded cluster keeps beside them, pruning to the newest N,
//! and a restore to a point in time.
//!
//! A backup directory holds `base/<name>/` (`base.tar.gz`, `pg_wal.tar.gz`,
//! `backup_manifest`, and our `info.json`) and, for the embedded cluster,
//! `wal/` (every WAL segment, archived as it fills or after at most a
//! minute). Keys are never in it: a backup and the keys that verify it are
//! kept apart (README, Backups).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::embedded::{run_checked, set_mode, Cluster};

/// PostgreSQL's default WAL segment size, which the embedded cluster keeps.
const WAL_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// How long a restore's recovery may take before it is given up.
const RECOVERY_LIMIT: std::time::Duration = std::time::Duration::from_secs(1800);

/// Where a base backup is taken from.
pub enum Source<'a> {
    /// The embedded cluster, over its socket, as its owner.
    Embedded(&'a Cluster),
    /// A server by URL (its role needs the REPLICATION attribute).
    Url { url: &'a str, bin_dir: &'a Path },
}

/// One base backup, as `info.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BaseInfo {
    pub name: String,
    pub started_at_ms: i64,
    /// The backup is consistent from here on: a restore may target any
    /// time after it.
    pub ended_at_ms: i64,
    /// The first WAL segment it needs (older ones may be pruned).
    pub start_wal: String,
    pub bytes: u64,
}

/// Takes a base backup (with the WAL it needs to be consistent) into
/// `dir/base/<UTC time>`.
pub fn take(source: Source<'_>, dir: &Path) -> anyhow::Result<BaseInfo> {
    let started = Utc::now();
    let name = started.format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let base = dir.join("base").join(&name);
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    set_mode(&dir.join("base"), 0o700)?;
    set_mode(&base, 0o700)?;
    let mut cmd = match &source {
        Source::Embedded(cluster) => {
            cluster.give_away(&dir.join("base"))?;
            cluster.give_away(&base)?;
            let mut c = cluster.command("pg_basebackup");
            c.arg("-h")
                .arg(cluster.socket_dir())
                .arg("-p")
                .arg(super::embedded::PORT.to_string())
                .arg("-U")
                .arg(super::embedded::SUPERUSER);
            c
        }
        Source::Url { url, bin_dir } => {
            let mut c = Command::new(bin_dir.join("pg_basebackup"));
            c.arg("-d").arg(url);
            c
        }
    };
    cmd.arg("-D").arg(&base);
    cmd.args(["-Ft", "-z", "-X", "stream", "-c", "fast", "-l"]);
    cmd.arg(format!("cardswitch {name}"));
    run_checked(cmd, "pg_basebackup")?;
    let manifest = std::fs::read_to_string(base.join("backup_manifest"))
        .context("pg_basebackup wrote no backup_manifest")?;
    let info = BaseInfo {
        name,
        started_at_ms: started.timestamp_millis(),
        ended_at_ms: Utc::now().timestamp_millis(),
        start_wal: start_wal_of(&manifest)?,
        bytes: dir_bytes(&base),
    };
    std::fs::write(base.join("info.json"), serde_json::to_vec_pretty(&info)?)?;
    Ok(info)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The base backups in `dir`, oldest first.
pub fn list(dir: &Path) -> anyhow::Result<Vec<BaseInfo>> {
    let base = dir.join("base");
    if !base.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&base)? {
        let path = entry?.path().join("info.json");
        // A backup that never finished has no info.json: not a backup.
        if let Ok(bytes) = std::fs::read(&path) {
            out.push(
                serde_json::from_slice::<BaseInfo>(&bytes)
                    .with_context(|| path.display().to_string())?,
            );
        }
    }
    out.sort_by_key(|b| b.ended_at_ms);
    Ok(out)
}

/// What [`prune`] removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub bases: usize,
    pub wal_files: usize,
}

/// Keeps the newest `keep` base backups (at least one) and the archived WAL
/// the oldest of them needs; timeline history files always stay.
pub fn prune(dir: &Path, keep: usize) -> anyhow::Result<Pruned> {
    let bases = list(dir)?;
    let mut pruned = Pruned::default();
    let drop_n = bases.len().saturating_sub(keep.max(1));
    for b in &bases[..drop_n] {
        std::fs::remove_dir_all(dir.join("base").join(&b.name))?;
        pruned.bases += 1;
    }
    let Some(oldest) = bases.get(drop_n) else {
        return Ok(pruned);
    };
    let Some(keep_from) = segment_number(&oldest.start_wal) else {
        bail!(
            "info.json of {}: bad start_wal {}",
            oldest.name,
            oldest.start_wal
        );
    };
    let wal = dir.join("wal");
    if let Ok(rd) = std::fs::read_dir(&wal) {
        for entry in rd {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if segment_number(name).is_some_and(|n| n < keep_from) {
                std::fs::remove_file(&path)?;
                pruned.wal_files += 1;
            }
        }
    }
    Ok(pruned)
}

/// A WAL file's segment number (its name without the timeline), for a
/// segment, a partial segment or a backup history file; `None` for
/// timeline history files and anything else.
fn segment_number(name: &str) -> Option<u64> {
    let hex = name.get(..24)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) || name.ends_with(".history") {
        return None;
    }
    let log = u64::from_str_radix(&hex[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&hex[16..24], 16).ok()?;
    Some(log * (0x1_0000_0000 / WAL_SEGMENT_BYTES) + seg)
}

/// The segment holding `lsn` on `timeline`, named as PostgreSQL names it.
fn wal_segment_name(timeline: u32, lsn: u64) -> String {
    let per_log = 0x1_0000_0000 / WAL_SEGMENT_BYTES;
    let segno = lsn / WAL_SEGMENT_BYTES;
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segno / per_log,
        segno % per_log
    )
}

fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The first WAL segment a backup needs, from its manifest's `WAL-Ranges`.
fn start_wal_of(manifest: &str) -> anyhow::Result<String> {
    let m: serde_json::Value = serde_json::from_str(manifest).context("backup_manifest")?;
    let first = m["WAL-Ranges"]
        .get(0)
        .context("backup_manifest: no WAL-Ranges")?;
    let timeline = first["Timeline"].as_u64().context("WAL-Ranges: Timeline")?;
    let lsn = first["Start-LSN"]
        .as_str()
        .and_then(parse_lsn)
        .context("WAL-Ranges: Start-LSN")?;
    Ok(wal_segment_name(u32::try_from(timeline)?, lsn))
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub base: BaseInfo,
    /// Where the data directory it replaced was moved, if there was one.
    pub set_aside: Option<PathBuf>,
}

/// Restores the embedded cluster from `from` to `to` (or to the end of the
/// archived WAL): the newest base backup finished before `to`, then the WAL
/// replayed up to it. The cluster must be stopped; its data directory is
/// moved aside, never deleted. Leaves the cluster stopped.
pub async fn restore(
    cluster: &Cluster,
    from: &Path,
    to: Option<DateTime<Utc>>,
) -> anyhow::Result<Restored> {
    let base = choose_base(from, to)?;
    let (c, f, b) = (cluster.clone(), from.to_path_buf(), base.clone());
    let set_aside = tokio::task::spawn_blocking(move || unpack(&c, &f, &b)).await??;
    let settings = recovery_settings(from, to)?;
    let c = cluster.clone();
    // pg_ctl's wait may end before a long recovery is consistent; the
    // postmaster runs on, and recovery is watched below.
    let started = tokio::task::spawn_blocking(move || c.start_with(&settings)).await?;
    if let Err(e) = started {
        if !cluster.is_running()? {
            return Err(e.context(format!("recovery failed; the old data is in {set_aside:?}")));
        }
    }
    let recovered = wait_until_promoted(cluster).await;
    // A recovery that failed stopped the server itself; stopping it again
    // would hide why.
    if cluster.is_running()? {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.stop()).await??;
    }
    recovered.with_context(|| format!("the old data directory is in {set_aside:?}"))?;
    Ok(Restored { base, set_aside })
}

fn choose_base(from: &Path, to: Option<DateTime<Utc>>) -> anyhow::Result<BaseInfo> {
    let bases = list(from)?;
    let limit = to.map_or(i64::MAX, |t| t.timestamp_millis());
    match bases.into_iter().rev().find(|b| b.ended_at_ms <= limit) {
        Some(b) => Ok(b),
        None => bail!(
            "no base backup in {} finished before {to:?}",
            from.display()
        ),
    }
}

/// Moves the old data directory aside and unpacks `base` in its place.
fn unpack(cluster: &Cluster, from: &Path, base: &BaseInfo) -> anyhow::Result<Option<PathBuf>> {
    if cluster.is_running()? {
        bail!("the embedded cluster is running: stop the daemon, then `cardswitch db stop`");
    }
    cluster.make_dirs()?;
    let pgdata = cluster.pgdata();
    let mut set_aside = None;
    if pgdata.exists() {
        let aside = pgdata.with_file_name(format!(
            "data.before-restore-{}",
            Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        std::fs::rename(&pgdata, &aside)
            .with_context(|| format!("cannot move {} aside", pgdata.display()))?;
        set_aside = Some(aside);
    }
    std::fs::create_dir_all(pgdata.join("pg_wal"))?;
    for dir in [pgdata.clone(), pgdata.join("pg_wal")] {
        cluster.give_away(&dir)?;
        set_mode(&dir, 0o700)?;
    }
    let src = from.join("base").join(&base.name);
    for (tarball, into) in [
        ("base.tar.gz", pgdata.clone()),
        ("pg_wal.tar.gz", pgdata.join("pg_wal")),
    ] {
        // As ourselves: a backup taken by URL belongs to whoever took it.
        let mut tar = Command::new("tar");
        tar.arg("-xzf").arg(src.join(tarball)).arg("-C").arg(into);
        run_checked(tar, "tar -x")?;
    }
    std::fs::write(pgdata.join("recovery.signal"), b"")?;
    cluster.give_away_all(&pgdata)?;
    Ok(set_aside)
}

/// The recovery's settings: WAL from the archive, the target, then promote.
fn recovery_settings(
    from: &Path,
    to: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let wal = from
        .join("wal")
        .canonicalize()
        .unwrap_or_else(|_| from.join("wal"));
    let wal = wal.to_str().context("backup path is not UTF-8")?;
    if wal.contains('\'') {
        bail!("backup path with a quote: {wal}");
    }
    let mut s = vec![
        ("restore_command", format!("cp '{wal}/%f' '%p'")),
        ("recovery_target_action", "promote".to_owned()),
    ];
    if let Some(t) = to {
        s.push((
            "recovery_target_time",
            t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        ));
    }
    Ok(s)
}

/// Waits until recovery has reached its target and the server takes writes.
async fn wait_until_promoted(cluster: &Cluster) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + RECOVERY_LIMIT;
    let pg = cluster.pg_config("postgres");
    while std::time::Instant::now() < deadline {
        if let Ok((client, conn)) = pg.connect(tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            if let Ok(row) = client.query_one("SELECT pg_is_in_recovery()", &[]).await {
                if !row.get::<_, bool>(0) {
                    return Ok(());
                }
            }
        }
        if !cluster.is_running()? {
            let log = std::fs::read_to_string(cluster.log_file()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            bail!(
                "recovery stopped the server:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    bail!("recovery did not finish within {RECOVERY_LIMIT:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_postgres_names() {
        assert_eq!(
            wal_segment_name(1, parse_lsn("0/2000028").unwrap()),
            "000000010000000000000002"
        );
        assert_eq!(
            wal_segment_name(2, parse_lsn("1/FF000000").unwrap()),
            "0000000200000001000000FF"
        );
        assert_eq!(segment_number("0000000200000001000000FF"), Some(256 + 255));
        assert_eq!(
            segment_number("000000010000000000000002.00000028.backup"),
            Some(2)
        );
        assert_eq!(segment_number("00000002.history"), None);
        assert_eq!(segment_number("00000002000000000000000A.history"), None);
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_wal_they_need() {
        let dir = tempfile::tempdir().unwrap();
        for (name, ended, wal) in [
            ("b1", 1, "000000010000000000000002"),
            ("b2", 2, "000000010000000000000005"),
            ("b3", 3, "000000020000000000000009"),
        ] {
            let base = dir.path().join("base").join(name);
            std::fs::create_dir_all(&base).unwrap();
            let info = BaseInfo {
                name: name.into(),
                started_at_ms: ended,
                ended_at_ms: ended,
                start_wal: wal.into(),
                bytes: 0,
            };
            std::fs::write(base.join("info.json"), serde_json::to_vec(&info).unwrap()).unwrap();
        }
        // A backup that never finished: no info.json, left alone.
        std::fs::create_dir_all(dir.path().join("base/b0")).unwrap();
        let wal = dir.path().join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        let files = [
            "000000010000000000000002",
            "000000010000000000000004",
            "000000010000000000000005",
            "000000010000000000000005.00000028.backup",
            "00000002.history",
            "000000020000000000000009",
        ];
        for f in files {
            std::fs::write(wal.join(f), b"").unwrap();
        }
        let p = prune(dir.path(), 2).unwrap();
        assert_eq!((p.bases, p.wal_files), (1, 2));
        let names: Vec<String> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["b2", "b3"]);
        let mut left: Vec<String> = std::fs::read_dir(&wal)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, &files[2..]);
        assert!(dir.path().join("base/b0").exists());
    }

    #[test]
    fn the_start_wal_comes_from_the_manifest() {
        let m = r#"{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [],
            "WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/5000028", "End-LSN": "0/5000138"}]}"#;
        assert_eq!(start_wal_of(m).unwrap(), "000000010000000000000005");
        assert!(start_wal_of("{}").is_err());
    }
}
