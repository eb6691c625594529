//! Running PostgreSQL's binaries on this machine: as the `postgres` user when we are root, in
//! directories it owns, with errors that carry the command's output and the server log's tail.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::PgMember;
use crate::error::{Error, Result};

/// Creates a member's directories and hands them to `postgres` when we are root.
pub(super) fn prepare_member_dir(m: &PgMember) -> Result<()> {
    for d in [m.dir.clone(), m.data_dir(), m.socket_dir()] {
        fs::create_dir_all(&d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    fs::set_permissions(m.data_dir(), fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("chmod 0700 {}", m.data_dir().display()), e))?;
    fix_owner(&m.dir)?;
    if running_as_root() {
        // Every directory above the member's must be searchable by postgres; a tempdir is 0700.
        let ok = Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-w"])
            .arg(&m.dir)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error::io("running runuser (to check directory access)", e))?
            .success();
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "the postgres user cannot write to {}: every directory above it must be \
                 searchable by postgres (a tempfile::tempdir() is mode 0700; chmod it 0755)",
                m.dir.display()
            )));
        }
    }
    Ok(())
}

/// `chown -R postgres:postgres dir` when we are root; nothing otherwise (we run as ourselves).
pub(super) fn fix_owner(dir: &Path) -> Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let out = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("running chown", e))?;
    if !out.status.success() {
        return Err(Error::Unavailable(format!(
            "chown -R postgres:postgres {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Whether our effective uid is 0, from `/proc/self/status` (no unsafe, no extra nix feature).
pub(super) fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status").ok().and_then(|s| effective_uid(&s)).is_some_and(|uid| uid == 0)
}

/// The effective uid in a `/proc/PID/status` text: the second field of its `Uid:` line (real,
/// effective, saved, filesystem). PostgreSQL refuses to run when its effective uid is 0.
pub(super) fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

pub(super) fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Runs `bin_dir/program args` (as `postgres` through `runuser` when we are root), from `/`,
/// without any inherited `PG*` environment, feeding it `input` on stdin. Returns its stdout; a
/// failure names `what` and carries the program's output.
pub(super) fn run_pg<'a>(
    bin_dir: &Path,
    program: &str,
    args: impl IntoIterator<Item = &'a OsStr>,
    input: Option<&str>,
    what: &str,
) -> Result<String> {
    run_pg_in(None, bin_dir, program, args, input, what)
}

/// [`run_pg`] inside network namespace `netns` (`ip netns exec`), when given: a server started
/// so stays in it.
pub(super) fn run_pg_in<'a>(
    netns: Option<&str>,
    bin_dir: &Path,
    program: &str,
    args: impl IntoIterator<Item = &'a OsStr>,
    input: Option<&str>,
    what: &str,
) -> Result<String> {
    let exe = bin_dir.join(program);
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if let Some(ns) = netns {
        argv.extend(["ip", "netns", "exec", ns].map(Into::into));
    }
    if running_as_root() {
        argv.extend(["runuser", "-u", "postgres", "--"].map(Into::into));
    }
    argv.push(exe.clone().into_os_string());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd.args(args).current_dir("/");
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("PG")) {
            cmd.env_remove(&key);
        }
    }
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tracing::debug!("{what}: {cmd:?}");
    let mut child = cmd.spawn().map_err(|e| Error::io(format!("{what}: running {}", exe.display()), e))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // Small enough to fit a pipe's buffer; a write error shows up as the child's failure.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::io(format!("{what}: waiting for {program}"), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut msg = format!("{what} failed ({})", out.status);
    for text in [stderr.trim(), stdout.trim()] {
        if !text.is_empty() {
            msg.push_str(": ");
            msg.push_str(&last_chars(text, 4000));
        }
    }
    Err(Error::Unavailable(msg))
}

/// At most the last `n` characters of `s`.
pub(super) fn last_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    s.chars().skip(count.saturating_sub(n)).collect()
}

/// The last `n` lines of a log file, or a note saying why there are none.
pub(super) fn log_tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read the log: {e})"),
    }
}

pub(super) fn append_file(path: &Path, text: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Replaces a file's contents in place, so an existing file keeps its owner and mode.
pub(super) fn write_file(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
