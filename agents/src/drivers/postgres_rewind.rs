//! Bringing a stopped former primary back as a standby of the new one (DESIGN.md, point 8):
//! `pg_rewind`, falling back to a fresh base backup — and before either, saving the WAL it is
//! about to discard and reporting the transactions in it, so that nothing vanishes silently.
//!
//! With synchronous replication none of those transactions was acknowledged to a client (each
//! commit waited for the synchronous standby, which became the new primary and holds it); they
//! are the ones in flight when the primary was lost. The report says how many and which.

use std::path::{Path, PathBuf};

use super::postgres::PgLocal;
use super::postgres_ctl::{self, parse_lsn};
use super::DriverError;
use triad_proto::words::format_lsn;

/// How many of the newest WAL segments are saved before a rewind (16 MB each by default).
const SAVED_SEGMENTS: usize = 8;

/// Rewinds (or re-copies) the stopped member at `l` from the primary at `source` (libpq keywords,
/// with a database name). Returns what was discarded, for the workflow's record.
pub fn rewind(l: &PgLocal, source: &str, member: &str) -> Result<String, DriverError> {
    let data = l.data_dir.display().to_string();
    let saved = save_newest_wal(l)?;
    // Both pg_rewind and a base backup copy the source's configuration files over this
    // member's own (its port, its paths): they are kept and put back. Kept on disk, beside the
    // data directory: an agent killed between the copy and the restore left the source's
    // files in place for good, and the next attempt kept those (chaos seed 34: dc's server
    // then tried to listen on ndc's address and never started).
    let config = ConfigFiles::keep(&l.data_dir)?;
    let result = rewind_or_copy(l, &data, source, member, &saved);
    config.restore(&l.data_dir)?;
    result
}

/// Puts back this member's own configuration files if an earlier rewind kept them and did not
/// finish (its agent died): whatever the next attempt decides, the source's files must not
/// stay (chaos seed 34, again: the next attempt found the directory "shut down in recovery",
/// had nothing to rewind, and started with ndc's files). True when it restored them.
pub fn restore_kept_config(data: &Path) -> Result<bool, DriverError> {
    if !data.with_extension("triad-config").join("complete").exists() {
        return Ok(false);
    }
    ConfigFiles::keep(data)?.restore(data)?;
    Ok(true)
}

/// This member's own configuration files, as they were before a rewind, and where they are kept
/// until they are back in place (`<data_dir>.triad-config/`).
struct ConfigFiles {
    files: Vec<(&'static str, Vec<u8>)>,
    kept: PathBuf,
}

impl ConfigFiles {
    const NAMES: [&'static str; 4] = ["postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf"];

    /// The files as they are now, unless a copy kept by an attempt that did not finish exists:
    /// then that copy, which is this member's own.
    fn keep(data: &Path) -> Result<Self, DriverError> {
        let kept = data.with_extension("triad-config");
        let complete = kept.join("complete");
        let from = if complete.exists() { kept.clone() } else { data.to_path_buf() };
        let mut files = Vec::new();
        for name in Self::NAMES {
            match std::fs::read(from.join(name)) {
                Ok(bytes) => files.push((name, bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DriverError::File(format!("keeping {name}: {e}"))),
            }
        }
        if !complete.exists() {
            let file =
                |e: std::io::Error| DriverError::File(format!("keeping the configuration in {}: {e}", kept.display()));
            std::fs::create_dir_all(&kept).map_err(file)?;
            for (name, bytes) in &files {
                std::fs::write(kept.join(name), bytes).map_err(file)?;
            }
            // Written last, and each file synced before it counts: a copy without it is ignored.
            for (name, _) in &files {
                std::fs::File::open(kept.join(name)).and_then(|f| f.sync_all()).map_err(file)?;
            }
            std::fs::write(&complete, "").map_err(file)?;
            std::fs::File::open(&kept).and_then(|d| d.sync_all()).map_err(file)?;
        }
        Ok(ConfigFiles { files, kept })
    }

    /// Writes them back in place (rewriting keeps each file's owner and mode), then lets the
    /// kept copy go.
    fn restore(&self, data: &Path) -> Result<(), DriverError> {
        for (name, bytes) in &self.files {
            std::fs::write(data.join(name), bytes).map_err(|e| DriverError::File(format!("restoring {name}: {e}")))?;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.kept) {
            tracing::warn!("removing {}: {e}", self.kept.display());
        }
        Ok(())
    }
}

fn rewind_or_copy(l: &PgLocal, data: &str, source: &str, member: &str, saved: &Path) -> Result<String, DriverError> {
    let saved = saved.to_path_buf();
    match postgres_ctl::run_all(&l.bin_dir, &l.os_user, "pg_rewind", &["-D", data, "--source-server", source]) {
        Ok(out) if out.contains("no rewind required") => {
            let _ = std::fs::remove_dir_all(&saved);
            Ok("no rewind required: nothing was discarded".into())
        }
        Ok(out) => Ok(report(l, &out, &saved)),
        Err(e) => {
            tracing::warn!(member, "pg_rewind failed, falling back to a base backup: {e}");
            base_backup(l, source)?;
            Ok(format!(
                "pg_rewind failed ({}); re-copied with a base backup. The old data directory's newest WAL is saved in {}",
                e.to_string().lines().last().unwrap_or(""),
                saved.display()
            ))
        }
    }
}

/// Copies the newest WAL segments into `<data_dir>/../discarded-wal/<time>/`.
fn save_newest_wal(l: &PgLocal) -> Result<PathBuf, DriverError> {
    let wal = l.data_dir.join("pg_wal");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal)
        .map_err(|e| DriverError::File(format!("{}: {e}", wal.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .collect();
    segments.sort();
    let keep = segments.split_off(segments.len().saturating_sub(SAVED_SEGMENTS));
    let root = l.data_dir.parent().unwrap_or(Path::new("/")).join("discarded-wal");
    let dir = root.join(super::now_ms().to_string());
    std::fs::create_dir_all(&dir).map_err(|e| DriverError::File(format!("{}: {e}", dir.display())))?;
    for s in &keep {
        let to = dir.join(s.file_name().unwrap_or_default());
        std::fs::copy(s, &to).map_err(|e| DriverError::File(format!("saving {}: {e}", s.display())))?;
    }
    // pg_waldump runs as the database user and must read them.
    let _ = std::process::Command::new("chown").args(["-R", &l.os_user]).arg(&root).status();
    Ok(dir)
}

/// From pg_rewind's output ("servers diverged at WAL location X on timeline N"), the
/// transactions committed after X in the saved WAL.
fn report(l: &PgLocal, rewind_out: &str, saved: &Path) -> String {
    let diverged = rewind_out.lines().find_map(|line| {
        let rest = line.split("servers diverged at WAL location ").nth(1)?;
        let (lsn, tli) = rest.split_once(" on timeline ")?;
        Some((lsn.trim().to_string(), tli.trim().trim_end_matches('.').to_string()))
    });
    let Some((lsn, tli)) = diverged else {
        return format!("rewound; the newest WAL before the rewind is saved in {}", saved.display());
    };
    let dump = postgres_ctl::run_all(
        &l.bin_dir,
        &l.os_user,
        "pg_waldump",
        &["-p", &saved.display().to_string(), "-s", &lsn, "-t", &tli, "-r", "Transaction"],
    );
    // pg_waldump ends with an error at the end of valid WAL: its output is what counts.
    let text = match dump {
        Ok(t) => t,
        Err(e) => e.to_string(),
    };
    let mut xids = Vec::new();
    let mut last = None;
    for line in text.lines().filter(|l| l.contains("desc: COMMIT")) {
        if let Some(tx) = field(line, "tx: ") {
            xids.push(tx);
        }
        last = field(line, "lsn: ").and_then(|s| parse_lsn(&s)).or(last);
    }
    let end = last.map(|e| format!(" to {}", format_lsn(e))).unwrap_or_default();
    format!(
        "rewound: WAL from {lsn}{end} on timeline {tli} discarded and saved in {}; {} transaction(s) committed there \
         were never acknowledged by the synchronous standby{}",
        saved.display(),
        xids.len(),
        if xids.is_empty() { String::new() } else { format!(" (xids {})", xids.join(", ")) }
    )
}

fn field(line: &str, key: &str) -> Option<String> {
    // pg_waldump pads its columns: `tx:        755, lsn: 0/0402DB48`.
    let rest = line.split(key).nth(1)?.trim_start();
    Some(rest.split([',', ' ']).next()?.to_string()).filter(|v| !v.is_empty())
}

/// Replaces the data directory with a fresh base backup of the primary at `source`; the old one is
/// kept beside it (`data.old-<time>`).
fn base_backup(l: &PgLocal, source: &str) -> Result<(), DriverError> {
    let old = l.data_dir.with_extension(format!("old-{}", super::now_ms()));
    std::fs::rename(&l.data_dir, &old)
        .map_err(|e| DriverError::File(format!("moving the old data directory aside: {e}")))?;
    let data = l.data_dir.display().to_string();
    let r = postgres_ctl::run(
        &l.bin_dir,
        &l.os_user,
        "pg_basebackup",
        &["-D", &data, "-d", source, "-X", "stream", "-c", "fast", "--no-password"],
    );
    if let Err(e) = r {
        let _ = std::fs::remove_dir_all(&l.data_dir);
        let _ = std::fs::rename(&old, &l.data_dir);
        return Err(DriverError::Program(format!("base backup failed: {e}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewind_cut_short_leaves_the_members_own_configuration_to_restore() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("postgresql.conf"), "listen_addresses = 'dc'\n").unwrap();
        std::fs::write(data.join("pg_hba.conf"), "dc's hba\n").unwrap();
        // An attempt keeps the files, the copy overwrites them with the source's, and the agent
        // dies before restoring them.
        let first = ConfigFiles::keep(&data).unwrap();
        std::fs::write(data.join("postgresql.conf"), "listen_addresses = 'ndc'\n").unwrap();
        drop(first);
        // The next attempt puts this member's own back first, whatever it decides then.
        assert!(restore_kept_config(&data).unwrap());
        assert_eq!(std::fs::read_to_string(data.join("postgresql.conf")).unwrap(), "listen_addresses = 'dc'\n");
        assert!(!data.with_extension("triad-config").exists(), "the kept copy goes once restored");
        assert!(!restore_kept_config(&data).unwrap(), "nothing kept: nothing to do");
        // And a rewind keeps this member's own, not what it finds, when a copy was kept.
        let kept = ConfigFiles::keep(&data).unwrap();
        std::fs::write(data.join("postgresql.conf"), "listen_addresses = 'ndc'\n").unwrap();
        drop(kept);
        let second = ConfigFiles::keep(&data).unwrap();
        second.restore(&data).unwrap();
        assert_eq!(std::fs::read_to_string(data.join("postgresql.conf")).unwrap(), "listen_addresses = 'dc'\n");
        // And a later rewind keeps what is there then.
        std::fs::write(data.join("postgresql.conf"), "listen_addresses = 'dc2'\n").unwrap();
        let third = ConfigFiles::keep(&data).unwrap();
        third.restore(&data).unwrap();
        assert_eq!(std::fs::read_to_string(data.join("postgresql.conf")).unwrap(), "listen_addresses = 'dc2'\n");
    }

    #[test]
    fn reads_padded_waldump_fields() {
        let line = "rmgr: Transaction len (rec/tot):     34/    34, tx:        755, lsn: 0/0402DB48, prev 0/0402DB10, \
                    desc: COMMIT 2026-11-22 09:15:27.412345 UTC";
        assert_eq!(field(line, "tx: ").as_deref(), Some("755"));
        assert_eq!(field(line, "lsn: ").and_then(|s| parse_lsn(&s)), Some(0x0402DB48));
        assert_eq!(field("rmgr: XLOG tx: , lsn: 0/1", "tx: "), None);
    }
}
