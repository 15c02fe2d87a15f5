//! The reference: PostgreSQL's own pgbench, TPC-B-like with prepared
//! statements, with the same client count and duration, in a database of
//! its own on the same cluster.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use tokio_postgres::config::Host;

#[derive(Debug, Serialize)]
pub struct PgbenchStats {
    pub tps: f64,
    pub scale: u32,
    pub clients: usize,
    pub threads: usize,
    pub seconds: u64,
    pub latency_avg_ms: Option<f64>,
    pub transactions: Option<u64>,
    /// CPU of the database server per pgbench transaction.
    pub postgres_cpu_ms_per_txn: Option<f64>,
    pub command: String,
}

/// pgbench of the newest server under `/usr/lib/postgresql`, else on `PATH`.
pub fn find_pgbench() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let p = e.path().join("bin/pgbench");
            p.exists().then_some((v, p))
        })
        .collect();
    found.sort();
    if let Some((_, p)) = found.pop() {
        return Ok(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("pgbench");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("pgbench not found: install PostgreSQL (apt-get install postgresql)")
}

/// libpq connection arguments (`-h -p -U`) and environment (`PGPASSWORD`)
/// for the server of `pg`.
fn conn_args(pg: &tokio_postgres::Config) -> (Vec<String>, Option<String>) {
    let mut args = Vec::new();
    if let Some(h) = pg.get_hosts().first() {
        args.push("-h".into());
        args.push(match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        });
    }
    if let Some(p) = pg.get_ports().first() {
        args.push("-p".into());
        args.push(p.to_string());
    }
    if let Some(u) = pg.get_user() {
        args.push("-U".into());
        args.push(u.into());
    }
    let pw = pg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    (args, pw)
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{what} failed ({}): {text}", out.status);
    }
    Ok(text)
}

/// Initialises `dbname` at `scale` (the database must exist and be empty).
pub fn init(pg: &tokio_postgres::Config, dbname: &str, scale: u32) -> anyhow::Result<()> {
    let bin = find_pgbench()?;
    let (args, pw) = conn_args(pg);
    let mut cmd = Command::new(&bin);
    cmd.arg("-i")
        .arg("-q")
        .arg("-s")
        .arg(scale.to_string())
        .args(&args)
        .arg(dbname);
    if let Some(pw) = pw {
        cmd.env("PGPASSWORD", pw);
    }
    run(&mut cmd, "pgbench -i")?;
    Ok(())
}

/// Runs the TPC-B-like script with `-M prepared` and returns its figures.
pub fn bench(
    pg: &tokio_postgres::Config,
    dbname: &str,
    scale: u32,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<PgbenchStats> {
    let bin = find_pgbench()?;
    let (args, pw) = conn_args(pg);
    let threads = clients.clamp(1, num_cpus());
    let seconds = duration.as_secs().max(1);
    let mut cmd = Command::new(&bin);
    cmd.args(["-M", "prepared"])
        .arg("-c")
        .arg(clients.to_string())
        .arg("-j")
        .arg(threads.to_string())
        .arg("-T")
        .arg(seconds.to_string())
        .args(&args)
        .arg(dbname);
    if let Some(pw) = pw {
        cmd.env("PGPASSWORD", pw);
    }
    let command = format!(
        "pgbench -M prepared -c {clients} -j {threads} -T {seconds} {} {dbname}",
        args.join(" ")
    );
    let text = run(&mut cmd, "pgbench")?;
    let tps = parse_tps(&text).ok_or_else(|| anyhow!("no tps in pgbench output: {text}"))?;
    Ok(PgbenchStats {
        tps,
        scale,
        clients,
        threads,
        seconds,
        latency_avg_ms: field(&text, "latency average = ").and_then(|s| s.parse().ok()),
        transactions: field(&text, "number of transactions actually processed: ")
            .and_then(|s| s.parse().ok()),
        postgres_cpu_ms_per_txn: None,
        command,
    })
}

fn field<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
}

/// `tps = 1987.123456 (without initial connection time)`.
pub fn parse_tps(text: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with("tps = "))
        .find(|l| l.contains("without initial connection time") || !l.contains("including"))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgbench_output() {
        let out = "transaction type: <builtin: TPC-B (sort of)>\nscaling factor: 10\n\
                   number of transactions actually processed: 59871\n\
                   latency average = 16.030 ms\n\
                   initial connection time = 35.123 ms\n\
                   tps = 1996.226934 (without initial connection time)\n";
        assert_eq!(parse_tps(out), Some(1996.226934));
        assert_eq!(field(out, "latency average = "), Some("16.030"));
        assert_eq!(
            field(out, "number of transactions actually processed: "),
            Some("59871")
        );
    }
}
