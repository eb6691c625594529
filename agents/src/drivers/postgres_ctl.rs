//! Running PostgreSQL's own tools on this host (`pg_ctl`, `pg_controldata`) as the database's
//! operating-system user: PostgreSQL refuses to run as root.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::DriverError;

/// True when this process's effective uid is 0 (read from /proc, no unsafe code).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// The highest version's server binaries under /usr/lib/postgresql.
pub fn default_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("pg_ctl").is_file())
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}

/// How long a program may run before it is killed: the tools that talk to another server
/// (`pg_rewind`, `pg_basebackup`) wait for ever on one that stopped answering without closing
/// its connections (a frozen host, a SIGSTOPped postmaster: chaos seed 32 left a rejoin hanging,
/// and the cluster's workflow with it). The leader waits 600 s for a rejoin (`brain/rejoin.rs`):
/// the agent gives up before it does.
/// The others work on local files, or bound themselves (`pg_ctl -t`); a server `pg_ctl` starts
/// must not be in a process group of a program's own (it would die with it), so they run as
/// before, in the agent's.
fn time_limit(program: &str) -> Option<Duration> {
    match program {
        "pg_rewind" => Some(Duration::from_secs(120)),
        "pg_basebackup" => Some(Duration::from_secs(420)),
        _ => None,
    }
}

fn output(bin_dir: &Path, os_user: &str, program: &str, args: &[&str]) -> Result<std::process::Output, DriverError> {
    output_within(bin_dir, os_user, program, args, time_limit(program))
}

/// [`output`], killing the program (and its process group) after `limit` when one is given.
fn output_within(
    bin_dir: &Path,
    os_user: &str,
    program: &str,
    args: &[&str],
    limit: Option<Duration>,
) -> Result<std::process::Output, DriverError> {
    let exe = bin_dir.join(program);
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", os_user, "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args).current_dir("/").env_remove("PGDATA").env_remove("PGPORT").env_remove("PGHOST");
    let Some(limit) = limit else {
        return cmd.output().map_err(|e| DriverError::Program(format!("running {}: {e}", exe.display())));
    };
    // Its own process group, so that a program past its time is killed with everything it
    // started (runuser's child).
    cmd.process_group(0).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let child = cmd.spawn().map_err(|e| DriverError::Program(format!("running {}: {e}", exe.display())))?;
    let group = Pid::from_raw(child.id() as i32);
    // The output is read on a thread of its own (a full pipe would stall the program).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.map_err(|e| DriverError::Program(format!("running {}: {e}", exe.display()))),
        Err(_) => {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = rx.recv_timeout(Duration::from_secs(5));
            Err(DriverError::Timeout(format!("{program} did not finish within {} s and was killed", limit.as_secs())))
        }
    }
}

/// Runs `bin_dir/program args` (as `os_user` when we are root), returning stdout or an error
/// naming what failed with its output.
pub fn run(bin_dir: &Path, os_user: &str, program: &str, args: &[&str]) -> Result<String, DriverError> {
    let out = output(bin_dir, os_user, program, args)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(DriverError::Program(format!(
            "{program} {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )))
    }
}

/// Like [`run`], returning stdout and stderr together (the tools log their findings on stderr).
pub fn run_all(bin_dir: &Path, os_user: &str, program: &str, args: &[&str]) -> Result<String, DriverError> {
    let out = output(bin_dir, os_user, program, args)?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(DriverError::Program(format!("{program} failed ({}): {}", out.status, text.trim())))
    }
}

/// Parses a WAL position written as `16/B374D848`.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// What `pg_controldata` prints for a data directory, read field by field.
pub struct ControlData(String);

impl ControlData {
    pub fn read(bin_dir: &Path, os_user: &str, data_dir: &Path) -> Result<ControlData, DriverError> {
        run(bin_dir, os_user, "pg_controldata", &["-D", &data_dir.display().to_string()]).map(ControlData)
    }

    /// The value of the line that starts with `name` (e.g. `Latest checkpoint location`).
    pub fn field(&self, name: &str) -> Result<String, DriverError> {
        self.0
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .ok_or_else(|| DriverError::Program(format!("pg_controldata shows no `{name}`")))
    }
}

/// The latest checkpoint's position and the cluster state, from `pg_controldata`.
pub fn control_data(bin_dir: &Path, os_user: &str, data_dir: &Path) -> Result<(u64, String), DriverError> {
    let control = ControlData::read(bin_dir, os_user, data_dir)?;
    let lsn = parse_lsn(&control.field("Latest checkpoint location")?)
        .ok_or_else(|| DriverError::Program("pg_controldata: the checkpoint location is not a WAL position".into()))?;
    let state = control.field("Database cluster state").unwrap_or_default();
    Ok((lsn, state))
}

/// The option a primary's start in recovery is given (`start_in_recovery`): no upstream, so it
/// replays its own WAL and waits to be opened.
pub const NO_UPSTREAM: &str = "primary_conninfo=''";

/// Whether `postmaster.opts` (the command line the running server was started with) shows a
/// start with [`NO_UPSTREAM`]: a primary started in recovery to be opened, not a standby. The
/// shell that `pg_ctl` starts it through drops the quotes.
pub fn started_with_no_upstream(opts: &str) -> bool {
    opts.split_whitespace().any(|arg| arg == "\"primary_conninfo=\"" || arg == "\"primary_conninfo=''\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_in_recovery_with_no_upstream_is_told_from_a_standby() {
        // As PostgreSQL 15 writes it after `pg_ctl -o "-c port=5999 -c primary_conninfo=''" start`.
        let opener = r#"/usr/lib/postgresql/15/bin/postgres "-D" "/tmp/d" "-c" "port=5999" "-c" "primary_conninfo=""#;
        assert!(started_with_no_upstream(opener));
        assert!(!started_with_no_upstream(r#"/usr/lib/postgresql/15/bin/postgres "-D" "/tmp/d""#));
        let streaming = r#"/usr/lib/postgresql/15/bin/postgres "-D" "/tmp/d" "-c" "primary_conninfo=host=x""#;
        assert!(!started_with_no_upstream(streaming));
    }

    #[test]
    fn a_program_past_its_time_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hangs");
        std::fs::write(&script, "#!/bin/sh\nsleep 60 &\necho started\nwait\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let user = if running_as_root() { "root" } else { "" };
        let began = std::time::Instant::now();
        let out = output_within(dir.path(), user, "hangs", &[], Some(Duration::from_millis(500)));
        assert!(matches!(&out, Err(DriverError::Timeout(m)) if m.contains("hangs did not finish")), "{out:?}");
        assert!(began.elapsed() < Duration::from_secs(10), "it waited for the sleep");
        let quick = output_within(Path::new("/bin"), user, "true", &[], Some(Duration::from_secs(10)));
        assert!(quick.is_ok_and(|o| o.status.success()));
    }

    #[test]
    fn lsn_parsing() {
        assert_eq!(super::parse_lsn("0/3000028"), Some(0x3000028));
        assert_eq!(super::parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(super::parse_lsn("nonsense"), None);
    }
}
