//! Running PostgreSQL's own tools on this host (`pg_ctl`, `pg_controldata`) as the database's
//! operating-system user: PostgreSQL refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn output(bin_dir: &Path, os_user: &str, program: &str, args: &[&str]) -> Result<std::process::Output, DriverError> {
    let exe = bin_dir.join(program);
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", os_user, "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args).current_dir("/").env_remove("PGDATA").env_remove("PGPORT").env_remove("PGHOST");
    cmd.output().map_err(|e| DriverError::Program(format!("running {}: {e}", exe.display())))
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

#[cfg(test)]
mod tests {
    #[test]
    fn lsn_parsing() {
        assert_eq!(super::parse_lsn("0/3000028"), Some(0x3000028));
        assert_eq!(super::parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(super::parse_lsn("nonsense"), None);
    }
}
