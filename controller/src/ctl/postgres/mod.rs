//! Provisioning of local PostgreSQL members for the demo and the end-to-end tests: one streaming
//! replication cluster `customs` with a primary in `dc`, a synchronous standby in `ndc` and an
//! asynchronous standby in `dr`, each with its own directory, port and socket on this machine.
//! Production hosts are provisioned by their operators; nothing here runs there.
//!
//! Everything is synchronous (`std::process::Command`); async callers use `spawn_blocking`.
//!
//! Facts this module relies on, proven on the build machine with a shell prototype:
//! - PostgreSQL refuses to run as root, so when we are root every server binary runs as the
//!   `postgres` user through `runuser -u postgres --`, in directories owned by `postgres` (data
//!   directory mode 0700), from `/` (root's working directory is not readable by `postgres`). Every
//!   directory above a member's must be searchable by `postgres`: a `tempfile::tempdir()` is mode
//!   0700 and must be `chmod 0755`ed first.
//! - `pg_ctl start` puts the postmaster in its own session (it calls `setsid`), so it survives the
//!   process group that started it: a Ctrl-C on the demo does not reach it, and callers must call
//!   [`PgCluster::stop_all`] themselves.
//! - Single-user mode (`postgres --single`) waits for synchronous replication like any backend, so
//!   the setup SQL runs with `synchronous_standby_names` overridden to empty.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

mod process;
mod settings;

use process::*;
use settings::*;

/// The database the demo's write workload uses.
pub const DATABASE: &str = "customs";

/// The table the demo's write workload inserts into.
pub const ORDERS_DDL: &str = "CREATE TABLE IF NOT EXISTS orders (id bigserial primary key, \
                              at timestamptz not null default now(), note text)";

/// The member names, in the order [`PgCluster::plan`] lays them out: primary, synchronous standby,
/// asynchronous standby.
pub const MEMBERS: [&str; 3] = ["dc", "ndc", "dr"];

/// The oldest major version we provision with (pg_rewind, `pg_promote`, `standby.signal`).
const MIN_MAJOR: u32 = 15;

/// How long `pg_ctl start` may take before we give up on a member.
const START_TIMEOUT_S: &str = "60";

/// How long a fast stop may take in `stop_all` before we stop immediately.
const FAST_STOP_TIMEOUT_S: &str = "10";

/// Unix domain socket paths are limited to 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Where the PostgreSQL 15+ server binaries are: a directory on PATH holding both `initdb` and
/// `pg_ctl` (followed through symlinks to the directory that also holds `pg_basebackup` and
/// `postgres`), else the highest `/usr/lib/postgresql/*/bin`. None if absent.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if !(dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()) {
                continue;
            }
            // Debian puts symlinks to some of the binaries (not pg_basebackup) in /usr/local/bin:
            // the real directory is where pg_ctl points.
            let mut candidates = vec![dir.clone()];
            if let Some(real) =
                fs::canonicalize(dir.join("pg_ctl")).ok().and_then(|p| p.parent().map(Path::to_path_buf))
            {
                if real != dir {
                    candidates.push(real);
                }
            }
            if let Some(found) = candidates.into_iter().find(|d| usable_bin_dir(d)) {
                return Some(found);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.split('.').next()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(major, _)| *major >= MIN_MAJOR)
        .collect();
    versions.sort();
    versions.into_iter().rev().map(|(_, bin)| bin).find(|bin| usable_bin_dir(bin))
}

/// Whether `dir` holds every server binary we run, of version 15 or later.
fn usable_bin_dir(dir: &Path) -> bool {
    let complete = ["initdb", "pg_ctl", "pg_basebackup", "postgres"].iter().all(|b| dir.join(b).is_file());
    if !complete {
        return false;
    }
    Command::new(dir.join("pg_ctl"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| parse_major_version(&String::from_utf8_lossy(&o.stdout)))
        .is_some_and(|major| major >= MIN_MAJOR)
}

/// The major version in `pg_ctl --version` output, e.g. "pg_ctl (PostgreSQL) 15.18 (Debian …)".
fn parse_major_version(out: &str) -> Option<u32> {
    let rest = out.split("(PostgreSQL)").nth(1)?.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// One member of the local cluster: a directory holding its data directory, socket directory and
/// server log, and a TCP address (127.0.0.1 unless placed elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgMember {
    pub name: String,
    /// The member's root: data in `dir/data`, sockets in `dir/sock`, log in `dir/postgres.log`.
    pub dir: PathBuf,
    pub port: u16,
    /// The address it listens on and is reached at.
    pub host: String,
    /// The network namespace its server runs in (tests that cut links), if not this process's.
    pub netns: Option<String>,
}

impl PgMember {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// libpq-style keyword/value connection string for tokio-postgres.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={} connect_timeout=2",
            self.host,
            self.port,
            conninfo_value(dbname)
        )
    }
}

/// A value for a keyword/value connection string: bare when it is a plain word, else quoted.
fn conninfo_value(v: &str) -> String {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// A three-member streaming replication cluster on this machine.
#[derive(Debug, Clone)]
pub struct PgCluster {
    pub bin_dir: PathBuf,
    /// `dc`, `ndc`, `dr`, in that order.
    pub members: Vec<PgMember>,
}

impl PgCluster {
    /// Plans members `dc`/`ndc`/`dr` under `root/<name>` with the given ports. Creates nothing.
    pub fn plan(bin_dir: &Path, root: &Path, ports: [u16; 3]) -> PgCluster {
        PgCluster {
            bin_dir: bin_dir.to_path_buf(),
            members: MEMBERS
                .iter()
                .zip(ports)
                .map(|(name, port)| PgMember {
                    name: name.to_string(),
                    dir: root.join(name),
                    port,
                    host: "127.0.0.1".into(),
                    netns: None,
                })
                .collect(),
        }
    }

    /// Places the members (in plan order) at these addresses, each server started inside the
    /// given network namespace: for tests that give every site its own network and cut links.
    pub fn placed(mut self, places: [(String, Option<String>); 3]) -> PgCluster {
        for (m, (host, netns)) in self.members.iter_mut().zip(places) {
            m.host = host;
            m.netns = netns;
        }
        self
    }

    fn on_loopback(&self) -> bool {
        self.members.iter().all(|m| m.host == "127.0.0.1")
    }

    /// The member called `name`.
    pub fn member(&self, name: &str) -> Result<&PgMember> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| Error::InvalidArgument(format!("no PostgreSQL member called `{name}`")))
    }

    /// Creates the cluster and starts it: initdb the primary, configure it, create database
    /// `customs` and table `orders`, start it, then base-backup and start both standbys. Returns
    /// once `pg_ctl start -w` of each standby has succeeded (the caller checks streaming itself).
    /// On failure it stops whatever it started.
    pub fn create_and_start(&self) -> Result<()> {
        self.validate()?;
        let result = self.create_inner();
        if result.is_err() {
            for e in self.stop_all() {
                tracing::warn!("cleaning up a failed PostgreSQL setup: {e}");
            }
        }
        result
    }

    fn create_inner(&self) -> Result<()> {
        let primary = &self.members[0];
        prepare_member_dir(primary)?;

        run_pg(
            &self.bin_dir,
            "initdb",
            [
                os("-D"),
                primary.data_dir().as_os_str(),
                os("-U"),
                os("postgres"),
                os("--auth=trust"),
                os("--encoding=UTF8"),
                os("--locale=C"),
                os("--no-instructions"),
            ],
            None,
            &format!("initdb of {}", primary.name),
        )?;

        append_file(&primary.data_dir().join("postgresql.conf"), &primary_settings(primary)?)?;
        // A local demo: trust every local user on the socket and on 127.0.0.1, replication
        // included. Nothing here listens beyond loopback, except members placed on a test's
        // private network (namespaces it made), which trust that network.
        let mut hba = "# Triad local demo: trust on the unix socket and 127.0.0.1 only.\n\
                       local   all             all                     trust\n\
                       local   replication     all                     trust\n\
                       host    all             all     127.0.0.1/32    trust\n\
                       host    replication     all     127.0.0.1/32    trust\n"
            .to_string();
        if !self.on_loopback() {
            hba.push_str("host    all             all     samenet         trust\n");
            hba.push_str("host    replication     all     samenet         trust\n");
        }
        write_file(&primary.data_dir().join("pg_hba.conf"), &hba)?;

        // The schema, before the server first starts, with only the server's own binaries (psql
        // may be absent). Single-user mode would wait for `ndc` forever without the override.
        for (db, sql, what) in [
            ("template1", format!("CREATE DATABASE {DATABASE}\n"), "creating database customs"),
            (DATABASE, format!("{ORDERS_DDL}\n"), "creating table orders"),
        ] {
            run_pg(
                &self.bin_dir,
                "postgres",
                [
                    os("--single"),
                    os("-D"),
                    primary.data_dir().as_os_str(),
                    os("-c"),
                    os("exit_on_error=on"),
                    os("-c"),
                    os("synchronous_standby_names="),
                    os(db),
                ],
                Some(sql.as_str()),
                &format!("{what} on {}", primary.name),
            )?;
        }
        fix_owner(&primary.dir)?;
        self.start(&primary.name)?;

        for standby in &self.members[1..] {
            prepare_member_dir(standby)?;
            let port = primary.port.to_string();
            run_pg(
                &self.bin_dir,
                "pg_basebackup",
                [
                    os("-h"),
                    os(&primary.host),
                    os("-p"),
                    os(&port),
                    os("-U"),
                    os("postgres"),
                    os("-D"),
                    standby.data_dir().as_os_str(),
                    os("-X"),
                    os("stream"),
                    os("-R"),
                    os("-c"),
                    os("fast"),
                ],
                None,
                &format!("pg_basebackup of {} from {}", standby.name, primary.name),
            )?;
            // The copied postgresql.conf has the primary's port and socket directory; -R wrote a
            // primary_conninfo without an application_name. postgresql.auto.conf is read last, so
            // our lines there win; we drop the ones -R wrote so each setting appears once.
            let auto = standby.data_dir().join("postgresql.auto.conf");
            let old = fs::read_to_string(&auto).map_err(|e| Error::io(format!("reading {}", auto.display()), e))?;
            write_file(&auto, &standby_auto_conf(&old, standby, primary)?)?;
            fix_owner(&standby.dir)?;
            self.start(&standby.name)?;
        }
        Ok(())
    }

    /// Checks what can be checked before touching anything.
    fn validate(&self) -> Result<()> {
        if self.members.len() != 3 {
            return Err(Error::InvalidArgument(format!(
                "a PostgreSQL cluster here has 3 members, not {}",
                self.members.len()
            )));
        }
        let mut ports: Vec<u16> = self.members.iter().map(|m| m.port).collect();
        ports.sort_unstable();
        ports.dedup();
        if ports.len() != 3 || ports.contains(&0) {
            return Err(Error::InvalidArgument(format!(
                "PostgreSQL members need three distinct non-zero ports, got {:?}",
                self.members.iter().map(|m| m.port).collect::<Vec<_>>()
            )));
        }
        for m in &self.members {
            conf_path(&m.dir)?;
            let socket = m.socket_dir().join(format!(".s.PGSQL.{}", m.port));
            if socket.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(Error::InvalidArgument(format!(
                    "the socket path {} is longer than {MAX_SOCKET_PATH} bytes; use a shorter \
                     directory for the PostgreSQL members",
                    socket.display()
                )));
            }
            let data = m.data_dir();
            if fs::read_dir(&data).is_ok_and(|mut d| d.next().is_some()) {
                return Err(Error::InvalidArgument(format!(
                    "{} already holds a data directory; create_and_start makes a new cluster",
                    data.display()
                )));
            }
        }
        Ok(())
    }

    /// Stops every member that runs: `pg_ctl stop -m fast`, then `-m immediate` when the fast
    /// stop has not finished within 10 s; and any dr-test copy an agent left running beside a
    /// member (a demo stopped mid-drill). Never fails: returns what went wrong, one line each.
    pub fn stop_all(&self) -> Vec<String> {
        let mut errors = self.stop_drill_copies();
        for m in &self.members {
            if self.postmaster_pid(&m.name).is_none() {
                continue;
            }
            let fast = self.pg_ctl_stop(m, "fast", FAST_STOP_TIMEOUT_S);
            if let Err(fast_err) = fast {
                tracing::warn!("{fast_err}; stopping {} immediately", m.name);
                if let Err(e) = self.pg_ctl_stop(m, "immediate", FAST_STOP_TIMEOUT_S) {
                    errors.push(format!("{}: {fast_err}; then {e}", m.name));
                }
            }
        }
        errors
    }

    /// Stops the dr-test copies (`<data_dir>.drill-N`, marked `triad-drill-copy` by the agent that
    /// made them) that still run; their files go with the deployment's directory.
    fn stop_drill_copies(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for m in &self.members {
            let data = m.data_dir();
            let (Some(parent), Some(name)) = (data.parent(), data.file_name().and_then(|n| n.to_str())) else {
                continue;
            };
            let prefix = format!("{name}.drill-");
            let Ok(entries) = std::fs::read_dir(parent) else { continue };
            for copy in entries.flatten().map(|e| e.path()) {
                let ours = copy.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix));
                if !ours || !copy.join("triad-drill-copy").exists() || !copy.join("postmaster.pid").exists() {
                    continue;
                }
                let args = [os("-D"), copy.as_os_str(), os("-m"), os("immediate"), os("-w"), os("stop")];
                if let Err(e) = run_pg(&self.bin_dir, "pg_ctl", args, None, &format!("stopping {}", copy.display())) {
                    errors.push(format!("{}: {e}", copy.display()));
                }
            }
        }
        errors
    }

    /// Stops one member with `mode` (`fast` or `immediate`). A member that does not run is
    /// already stopped: that is success.
    pub fn stop(&self, member: &str, mode: &str) -> Result<()> {
        if !matches!(mode, "fast" | "immediate") {
            return Err(Error::InvalidArgument(format!("stop mode `{mode}`: expected `fast` or `immediate`")));
        }
        let m = self.member(member)?;
        if self.postmaster_pid(member).is_none() {
            return Ok(());
        }
        self.pg_ctl_stop(m, mode, START_TIMEOUT_S)
    }

    fn pg_ctl_stop(&self, m: &PgMember, mode: &str, timeout_s: &str) -> Result<()> {
        run_pg(
            &self.bin_dir,
            "pg_ctl",
            [os("-D"), m.data_dir().as_os_str(), os("-m"), os(mode), os("-w"), os("-t"), os(timeout_s), os("stop")],
            None,
            &format!("pg_ctl stop -m {mode} of {}", m.name),
        )
        .map(drop)
    }

    /// Starts one member (already created) with `pg_ctl start -w`; returns once it accepts
    /// connections (a standby: once it is consistent and accepts read-only ones). A member that
    /// already runs is left alone.
    pub fn start(&self, member: &str) -> Result<()> {
        self.start_with(member, "")
    }

    /// Like [`PgCluster::start`], with `options` for the server (`pg_ctl -o`; none when empty).
    pub fn start_with(&self, member: &str, options: &str) -> Result<()> {
        let m = self.member(member)?;
        if self.postmaster_pid(member).is_some() {
            return Ok(());
        }
        let what = format!("pg_ctl start of {}", m.name);
        let (data, log) = (m.data_dir(), m.log_file());
        let mut args = vec![os("-D"), data.as_os_str(), os("-l"), log.as_os_str()];
        args.extend([os("-w"), os("-t"), os(START_TIMEOUT_S)]);
        if !options.is_empty() {
            args.extend([os("-o"), os(options)]);
        }
        args.push(os("start"));
        run_pg_in(m.netns.as_deref(), &self.bin_dir, "pg_ctl", args, None, &what)
            .map_err(|e| {
                Error::Unavailable(format!(
                    "{e}\n--- last lines of {} ---\n{}",
                    m.log_file().display(),
                    log_tail(&m.log_file(), 25)
                ))
            })
            .map(drop)
    }

    /// The postmaster's pid of a member, from `data_dir/postmaster.pid`, if that process runs.
    pub fn postmaster_pid(&self, member: &str) -> Option<i32> {
        let m = self.member(member).ok()?;
        let text = fs::read_to_string(m.data_dir().join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        // A stale file (the postmaster was killed) names a dead pid, or one reused since.
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (comm, state) = parse_proc_stat(&stat)?;
        let is_postgres = comm == "postgres" || comm == "postmaster";
        (pid > 0 && is_postgres && state != 'Z').then_some(pid)
    }
}

/// The command name and state letter of a `/proc/PID/stat` line ("123 (postgres) S 1 …").
fn parse_proc_stat(stat: &str) -> Option<(&str, char)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let state = stat.get(close + 1..)?.trim_start().chars().next()?;
    Some((comm, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> PgCluster {
        PgCluster::plan(Path::new("/usr/lib/postgresql/15/bin"), Path::new("/tmp/t/pg"), [5501, 5502, 5503])
    }

    #[test]
    fn plan_lays_out_members_in_order_and_creates_nothing() {
        let c = PgCluster::plan(Path::new("/opt/pg/bin"), Path::new("/nonexistent/triad-plan"), [5501, 5502, 5503]);
        assert_eq!(c.bin_dir, PathBuf::from("/opt/pg/bin"));
        let got: Vec<(&str, u16)> = c.members.iter().map(|m| (m.name.as_str(), m.port)).collect();
        assert_eq!(got, vec![("dc", 5501), ("ndc", 5502), ("dr", 5503)]);
        let ndc = c.member("ndc").unwrap();
        assert_eq!(ndc.dir, PathBuf::from("/nonexistent/triad-plan/ndc"));
        assert_eq!(ndc.data_dir(), PathBuf::from("/nonexistent/triad-plan/ndc/data"));
        assert_eq!(ndc.socket_dir(), PathBuf::from("/nonexistent/triad-plan/ndc/sock"));
        assert_eq!(ndc.log_file(), PathBuf::from("/nonexistent/triad-plan/ndc/postgres.log"));
        assert!(!Path::new("/nonexistent/triad-plan").exists());
        assert!(c.member("xx").is_err());
        assert_eq!(c.postmaster_pid("dc"), None);
    }

    #[test]
    fn conninfo_is_keyword_value() {
        let c = cluster();
        assert_eq!(
            c.members[0].conninfo("customs"),
            "host=127.0.0.1 port=5501 user=postgres dbname=customs connect_timeout=2"
        );
        assert_eq!(
            c.members[2].conninfo("my db"),
            "host=127.0.0.1 port=5503 user=postgres dbname='my db' connect_timeout=2"
        );
        assert_eq!(conninfo_value("it's"), r"'it\'s'");
    }

    #[test]
    fn find_bin_dir_finds_pg_ctl() {
        if let Some(dir) = find_bin_dir() {
            assert!(dir.join("pg_ctl").is_file(), "{}", dir.display());
            assert!(dir.join("pg_basebackup").is_file(), "{}", dir.display());
        }
    }

    #[test]
    fn parses_versions_uids_and_proc_stat() {
        assert_eq!(parse_major_version("pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), Some(15));
        assert_eq!(parse_major_version("pg_ctl (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major_version("something else"), None);
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t0\t1000\t0\t0\n"), Some(1000));
        assert_eq!(parse_proc_stat("4242 (postgres) S 1 4242 4242 0 -1"), Some(("postgres", 'S')));
        assert_eq!(parse_proc_stat("7 (a (b) c) Z 1"), Some(("a (b) c", 'Z')));
    }

    #[test]
    fn validate_refuses_bad_plans() {
        let same = PgCluster::plan(Path::new("/b"), Path::new("/tmp/x"), [5501, 5501, 5503]);
        assert!(matches!(same.validate(), Err(Error::InvalidArgument(_))));
        let long = "/tmp/".to_string() + &"d".repeat(100);
        let long = PgCluster::plan(Path::new("/b"), Path::new(&long), [5501, 5502, 5503]);
        assert!(matches!(long.validate(), Err(Error::InvalidArgument(_))));
        let comma = PgCluster::plan(Path::new("/b"), Path::new("/tmp/a,b"), [5501, 5502, 5503]);
        assert!(matches!(comma.validate(), Err(Error::InvalidArgument(_))));
        assert!(PgCluster::plan(Path::new("/b"), Path::new("/nonexistent/ok"), [1, 2, 3]).validate().is_ok());
        assert!(matches!(cluster().stop("dc", "smart"), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn standby_config_replaces_what_basebackup_wrote() {
        let c = cluster();
        let old = "# Do not edit this file manually!\n\
                   primary_conninfo = 'user=postgres host=127.0.0.1 port=5501'\n";
        let conf = standby_auto_conf(old, &c.members[1], &c.members[0]).unwrap();
        assert_eq!(
            conf,
            "# Do not edit this file manually!\n\
             primary_conninfo = 'host=127.0.0.1 port=5501 user=postgres application_name=ndc'\n\
             listen_addresses = '127.0.0.1'\n\
             port = 5502\n\
             unix_socket_directories = '/tmp/t/pg/ndc/sock'\n\
             cluster_name = 'customs-ndc'\n"
        );
        let primary = primary_settings(&c.members[0]).unwrap();
        for line in [
            "port = 5501\n",
            "wal_log_hints = on\n",
            "synchronous_standby_names = 'FIRST 1 (ndc)'\n",
            "unix_socket_directories = '/tmp/t/pg/dc/sock'\n",
            "listen_addresses = '127.0.0.1'\n",
        ] {
            assert!(primary.contains(line), "{line} missing from\n{primary}");
        }
        // Placed on a test's network: each listens on its own address, standbys follow the
        // primary's.
        let placed = cluster().placed([
            ("10.9.2.21".into(), Some("t-dc".into())),
            ("10.9.2.22".into(), Some("t-ndc".into())),
            ("10.9.2.23".into(), None),
        ]);
        let conf = standby_auto_conf("", &placed.members[1], &placed.members[0]).unwrap();
        assert!(
            conf.contains("primary_conninfo = 'host=10.9.2.21 port=5501")
                && conf.contains("listen_addresses = '10.9.2.22'")
        );
        assert_eq!(
            placed.members[2].conninfo("customs"),
            "host=10.9.2.23 port=5503 user=postgres dbname=customs connect_timeout=2"
        );
    }

    #[test]
    fn tails() {
        assert_eq!(last_chars("abcdef", 3), "def");
        assert_eq!(last_chars("ab", 3), "ab");
        assert!(log_tail(Path::new("/nonexistent/log"), 3).contains("cannot read"));
    }
}
