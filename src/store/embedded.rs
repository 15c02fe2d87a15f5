//! The embedded default: a private PostgreSQL cluster under `<data-dir>/pg`,
//! made with `initdb` on first use and run with `pg_ctl`, reachable only on a
//! Unix socket inside that directory (no TCP port).
//!
//! Layout: `pg/data` (PGDATA), `pg/run` (the socket), `pg/server.log`, and
//! `backup/` (WAL archived as it fills, daily base backups: `store::backup`).
//! PostgreSQL refuses to run as root, so as root the cluster belongs to the
//! `postgres` system user and every server binary runs under that uid.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{anyhow, bail, Context};

/// The superuser name the embedded cluster is created with, whoever runs it.
pub const SUPERUSER: &str = "cardswitch";
pub const DATABASE: &str = "cardswitch";
pub(crate) const PORT: u16 = 5432;
/// `sun_path` is 108 bytes on Linux, including the NUL.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Clone, Debug)]
pub struct Cluster {
    root: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<(u32, u32)>,
    fsync: bool,
    /// WAL archived into `backup/wal` (off for throw-away test clusters).
    archive: bool,
}

/// At most this long between a commit and its WAL segment's archiving: the
/// postings a lost disk can take with it when only the backup survives.
const ARCHIVE_TIMEOUT_S: u32 = 60;

impl Cluster {
    /// Finds the server binaries and decides who runs them; touches no file.
    pub fn new(data_dir: &Path) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve data dir {}", data_dir.display()))?;
        let bin_dir = find_bin_dir()?;
        let run_as = if is_root() {
            Some(lookup_user("postgres").ok_or_else(|| {
                anyhow!(
                    "running as root, but there is no `postgres` system user to own the embedded \
                     cluster; install the server with `apt-get install postgresql`, or run as a \
                     normal user, or pass --database-url"
                )
            })?)
        } else {
            None
        };
        let c = Cluster {
            root: data_dir.join("pg"),
            bin_dir,
            run_as,
            fsync: true,
            archive: true,
        };
        let sock = c.socket_dir().join(format!(".s.PGSQL.{PORT}"));
        if sock.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "the data dir path is too long for a Unix socket ({} > {MAX_SOCKET_PATH} bytes): {}; \
                 choose a shorter --data-dir",
                sock.as_os_str().len(),
                sock.display()
            );
        }
        Ok(c)
    }

    /// Turns off fsync and WAL archiving: for throw-away test clusters only.
    pub fn without_fsync(mut self) -> Self {
        self.fsync = false;
        self.archive = false;
        self
    }

    /// Archives WAL even so (the restore drill's test cluster).
    pub fn with_archive(mut self) -> Self {
        self.archive = true;
        self
    }

    /// Where backups go by default: `<data-dir>/backup`.
    pub fn backup_dir(&self) -> PathBuf {
        self.root
            .parent()
            .map(|p| p.join("backup"))
            .unwrap_or_else(|| self.root.join("backup"))
    }

    /// Where the server's programs are (pg_basebackup for a test standby).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn pgdata(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    pub fn is_initialized(&self) -> bool {
        self.pgdata().join("PG_VERSION").exists()
    }

    /// Creates the cluster if it does not exist. Returns whether it made one.
    pub fn init(&self) -> anyhow::Result<bool> {
        if self.is_initialized() {
            return Ok(false);
        }
        self.make_dirs()?;
        if let Some((uid, gid)) = self.run_as {
            // The postgres user must reach the directory through every parent.
            let probe = Command::new("/bin/sh")
                .arg("-c")
                .arg("test -w \"$1\"")
                .arg("sh")
                .arg(&self.root)
                .uid(uid)
                .gid(gid)
                .status()
                .context("cannot run /bin/sh")?;
            if !probe.success() {
                bail!(
                    "the postgres user cannot reach {}: every parent directory must be \
                     searchable by it (chmod o+x), or choose another --data-dir",
                    self.root.display()
                );
            }
        }
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(self.pgdata())
            .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
            .args(["--auth-local=trust", "--auth-host=reject"]);
        if !self.fsync {
            cmd.arg("--no-sync");
        }
        run_checked(cmd, "initdb")?;
        // The socket directory is 0700 and the only way in, so `trust` on it
        // admits exactly the cluster's owner (and root).
        let mut conf = String::from(
            "\n# cardswitch embedded cluster\nlisten_addresses = ''\nunix_socket_permissions = 0700\nmax_connections = 300\n",
        );
        if !self.fsync {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf_path = self.pgdata().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)
            .with_context(|| format!("cannot read {}", conf_path.display()))?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text)
            .with_context(|| format!("cannot write {}", conf_path.display()))?;
        Ok(true)
    }

    /// The cluster's own directory and its socket directory, the owner's
    /// and 0700 (before initdb, or before a restore unpacks into it).
    pub(crate) fn make_dirs(&self) -> anyhow::Result<()> {
        self.owned_dirs(&[self.root.clone(), self.socket_dir()])
    }

    /// Each of `dirs` made if missing, the owner's and 0700.
    fn owned_dirs(&self, dirs: &[PathBuf]) -> anyhow::Result<()> {
        for dir in dirs {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            self.give_away(dir)?;
            set_mode(dir, 0o700)?;
        }
        Ok(())
    }

    /// True when a postmaster runs on this data directory.
    pub fn is_running(&self) -> anyhow::Result<bool> {
        if !self.is_initialized() {
            return Ok(false);
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("status").arg("-D").arg(self.pgdata());
        let out = output(cmd, "pg_ctl status")?;
        // pg_ctl status: 0 running, 3 not running, 4 no accessible data dir.
        match out.status.code() {
            Some(0) => Ok(true),
            Some(3) => Ok(false),
            _ => bail!("pg_ctl status failed: {}", describe(&out)),
        }
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> anyhow::Result<()> {
        self.start_with(&[])
    }

    /// Starts the server with extra settings for this run only (`-c`), as
    /// a restore's recovery does.
    pub fn start_with(&self, settings: &[(&str, String)]) -> anyhow::Result<()> {
        // No TCP port, whatever the data directory's own configuration
        // says (a restored HA backup carries Patroni's listen address).
        let mut options = format!(
            "-c listen_addresses= -k {} -p {PORT}",
            shell_quote(&self.socket_dir().to_string_lossy())
        );
        let archive = self.archive_settings()?;
        for (name, value) in archive
            .iter()
            .map(|(n, v)| (*n, v))
            .chain(settings.iter().map(|(n, v)| (*n, v)))
        {
            options.push_str(&format!(" -c {}", shell_quote(&format!("{name}={value}"))));
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(self.pgdata())
            .arg("-l")
            .arg(self.log_file())
            .arg("-o")
            .arg(options)
            .args(["-w", "-t", "60"]);
        run_checked(cmd, "pg_ctl start").map_err(|e| {
            let tail = std::fs::read_to_string(self.log_file())
                .map(|t| t.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
                .unwrap_or_default();
            anyhow!("{e}\nserver log ({}):\n{tail}", self.log_file().display())
        })
    }

    /// WAL archiving, given at every start rather than written into the
    /// cluster's files, so clusters made before it archive too. A segment
    /// already archived with the same bytes counts as archived (PostgreSQL
    /// may offer it again after a crash); a different one is an error.
    fn archive_settings(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        if !self.archive {
            return Ok(Vec::new());
        }
        let wal = self.backup_dir().join("wal");
        self.owned_dirs(&[self.backup_dir(), wal.clone()])?;
        let w = shell_quote(&wal.to_string_lossy());
        let command = format!(
            "if test -f {w}/%f; then cmp -s %p {w}/%f; \
             else cp %p {w}/%f.part && sync {w}/%f.part && mv {w}/%f.part {w}/%f; fi"
        );
        Ok(vec![
            ("archive_mode", "on".to_owned()),
            ("archive_command", command),
            ("archive_timeout", ARCHIVE_TIMEOUT_S.to_string()),
        ])
    }

    /// Stops the server (fast mode: running transactions are rolled back).
    pub fn stop(&self) -> anyhow::Result<()> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(self.pgdata())
            .args(["-m", "fast", "-w", "-t", "60"]);
        run_checked(cmd, "pg_ctl stop")
    }

    /// Initialises and starts the cluster as needed. Returns whether this call
    /// started it, so a caller stops only what it started.
    pub fn ensure_running(&self) -> anyhow::Result<bool> {
        self.init()?;
        if self.is_running()? {
            return Ok(false);
        }
        self.start()?;
        Ok(true)
    }

    /// Connection settings for `dbname` over the cluster's socket.
    pub fn pg_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(self.socket_dir())
            .port(PORT)
            .user(SUPERUSER)
            .dbname(dbname)
            .application_name("cardswitch");
        c
    }

    /// A server program (initdb, pg_ctl, pg_basebackup) run as the
    /// cluster's owner.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.current_dir(self.root.parent().unwrap_or(Path::new("/")))
            .env_remove("PGDATA")
            .env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).current_dir(&self.root);
        }
        cmd
    }

    /// `give_away` for a whole tree (a restored data directory).
    pub(crate) fn give_away_all(&self, path: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.run_as {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg(format!("{uid}:{gid}")).arg(path);
            run_checked(chown, "chown -R")?;
        }
        Ok(())
    }

    pub(crate) fn give_away(&self, path: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("cannot chown {} to postgres", path.display()))?;
        }
        Ok(())
    }
}

use std::os::unix::process::CommandExt;

pub(crate) fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    // Debian's versioned directories first: PATH often has only the client.
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versions.into_iter().map(|(_, p)| p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates
        .into_iter()
        .find(|d| {
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|b| d.join(b).is_file())
        })
        .ok_or_else(|| {
            anyhow!(
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or under \
                 /usr/lib/postgresql/*/bin; install them with `apt-get install postgresql` \
                 or pass --database-url"
            )
        })
}

fn is_root() -> bool {
    // The owner of our own /proc entry is our effective uid; no libc call needed.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Reads uid and gid of `name` from /etc/passwd.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn output(mut cmd: Command, what: &str) -> anyhow::Result<Output> {
    cmd.output().with_context(|| format!("cannot run {what}"))
}

pub(crate) fn run_checked(cmd: Command, what: &str) -> anyhow::Result<()> {
    let out = output(cmd, what)?;
    if out.status.success() {
        Ok(())
    } else {
        bail!("{what} failed: {}", describe(&out))
    }
}

fn describe(out: &Output) -> String {
    let mut s = format!("{}", out.status);
    for stream in [&out.stderr, &out.stdout] {
        let t = String::from_utf8_lossy(stream);
        let t = t.trim();
        if !t.is_empty() {
            s.push_str(": ");
            s.push_str(t);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("/a b/c'd"), r"'/a b/c'\''d'");
    }

    #[test]
    fn passwd_lookup_finds_root() {
        assert_eq!(lookup_user("root"), Some((0, 0)));
        assert_eq!(lookup_user("no-such-user-here"), None);
    }
}
