//! Where a stopped primary's WAL ends: its *final position* (DESIGN.md, "Safety of role changes",
//! point 5). A member outside the synchronous set may take over without losing a commit only if
//! its position reaches it; every commit the primary acknowledged is in WAL it flushed, so
//! nothing past this position was ever acknowledged.
//!
//! After a clean shutdown the WAL ends with the shutdown checkpoint; after a crash it ends
//! wherever the last complete record does, past the last checkpoint. `pg_waldump` reads from the
//! checkpoint's redo position until the first record that is not valid (torn, zeroed, or a
//! recycled segment's old contents) and prints every valid record before it; the end of the last
//! one, counted across the page headers it spans, is the final position. Reading it overstates
//! rather than understates: WAL written but never flushed counts too, which only makes fewer
//! standbys qualify.

use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use super::postgres_ctl::{self, parse_lsn};
use super::DriverError;

/// A WAL page header's size at the start of a page, and at the start of a segment (both
/// MAXALIGNed, as the server lays them out).
const SHORT_PAGE_HEADER: u64 = 24;
const LONG_PAGE_HEADER: u64 = 40;

/// Where the record that starts at `start` and is `total` bytes long ends, with the header of
/// every page it continues onto, rounded up to the 8-byte alignment the next record starts at.
pub fn record_end(start: u64, total: u64, page: u64, segment: u64) -> u64 {
    let (mut pos, mut left) = (start, total);
    loop {
        let page_end = (pos / page + 1) * page;
        if left <= page_end - pos {
            pos += left;
            break;
        }
        left -= page_end - pos;
        pos = page_end + if page_end.is_multiple_of(segment) { LONG_PAGE_HEADER } else { SHORT_PAGE_HEADER };
    }
    pos.div_ceil(8) * 8
}

/// The start and total length of the last record in `pg_waldump` output
/// (`rmgr: … len (rec/tot):    405/   405, tx: 724, lsn: 0/01526058, prev …`).
fn last_record(dump: &str) -> Option<(u64, u64)> {
    dump.lines().rev().find_map(|line| {
        let total = line.split("len (rec/tot):").nth(1)?.split(',').next()?.split('/').nth(1)?.trim().parse().ok()?;
        let lsn = parse_lsn(line.split("lsn: ").nth(1)?.split(',').next()?)?;
        Some((lsn, total))
    })
}

/// The final position of the stopped member whose data directory is `data_dir`.
pub fn wal_end(bin_dir: &Path, os_user: &str, data_dir: &Path) -> Result<u64, DriverError> {
    let control = postgres_ctl::ControlData::read(bin_dir, os_user, data_dir)?;
    let redo = control.field("Latest checkpoint's REDO location")?;
    let timeline = control.field("Latest checkpoint's TimeLineID")?;
    let number = |name: &str| {
        control.field(name)?.parse::<u64>().map_err(|e| DriverError::Program(format!("pg_controldata `{name}`: {e}")))
    };
    let (page, segment) = (number("WAL block size")?, number("Bytes per WAL segment")?);
    if page == 0 || segment == 0 {
        return Err(DriverError::Program("pg_controldata shows a zero WAL page or segment size".into()));
    }
    let wal = data_dir.join("pg_wal").display().to_string();
    // pg_waldump ends with an error at the first invalid record: that is the end being looked
    // for, so its output counts either way.
    let dump = postgres_ctl::run_all(bin_dir, os_user, "pg_waldump", &["-p", &wal, "-s", &redo, "-t", &timeline])
        .unwrap_or_else(|e| e.to_string());
    let (start, total) = last_record(&dump)
        .ok_or_else(|| DriverError::Program(format!("pg_waldump found no record from {redo} on: {}", dump.trim())))?;
    Ok(record_end(start, total, page, segment))
}

/// What identifies the WAL on disk: `pg_control`'s and the newest segment's modification times
/// and the segment's name and length. While it is unchanged, so is the final position.
type WalKey = (Option<SystemTime>, String, u64, Option<SystemTime>);

fn wal_key(data_dir: &Path) -> Option<WalKey> {
    let control = std::fs::metadata(data_dir.join("global/pg_control")).ok()?.modified().ok();
    let newest = std::fs::read_dir(data_dir.join("pg_wal"))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit())))
        .max_by_key(|e| e.file_name())?;
    let meta = newest.metadata().ok()?;
    Some((control, newest.file_name().to_string_lossy().into_owned(), meta.len(), meta.modified().ok()))
}

/// The final position, read once per state of the WAL on disk (a failure too, logged once):
/// `pg_waldump` reads everything since the last checkpoint, too much to repeat every observation.
#[derive(Default)]
pub struct WalEnd(Mutex<Option<(WalKey, Result<u64, DriverError>)>>);

impl WalEnd {
    pub fn read(&self, bin_dir: &Path, os_user: &str, data_dir: &Path) -> Result<u64, DriverError> {
        let key = wal_key(data_dir)
            .ok_or_else(|| DriverError::File(format!("no WAL segments under {}", data_dir.display())))?;
        // Poisoned only if a reader panicked; the cache is then just recomputed.
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, end)) = cached.as_ref() {
            if *k == key {
                return end.clone();
            }
        }
        let end = wal_end(bin_dir, os_user, data_dir);
        match &end {
            Ok(e) => tracing::info!("the stopped primary's WAL ends at {:X}/{:X}", e >> 32, e & 0xffff_ffff),
            Err(e) => tracing::warn!("the stopped primary's final position is unknown: {e}"),
        }
        *cached = Some((key, end.clone()));
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 8192;
    const SEGMENT: u64 = 16 << 20;

    #[test]
    fn the_end_of_the_last_record_is_aligned_and_counts_page_headers() {
        // As a real crashed primary showed it: the commit at 0/1526058, 405 bytes, ended where
        // pg_current_wal_lsn() had been, 0/15261F0.
        assert_eq!(record_end(0x1526058, 405, PAGE, SEGMENT), 0x15261F0);
        // Ends exactly on a page boundary: nothing added.
        assert_eq!(record_end(PAGE - 64, 64, PAGE, SEGMENT), PAGE);
        // Spills 10 bytes onto the next page: that page's short header comes first.
        assert_eq!(record_end(PAGE - 64, 74, PAGE, SEGMENT), PAGE + SHORT_PAGE_HEADER + 16);
        // Onto the first page of the next segment: its long header.
        assert_eq!(record_end(SEGMENT - 8, 16, PAGE, SEGMENT), SEGMENT + LONG_PAGE_HEADER + 8);
        // Over two whole pages.
        let (start, total) = (PAGE * 3 - 100, 100 + (PAGE - SHORT_PAGE_HEADER) + 50);
        assert_eq!(record_end(start, total, PAGE, SEGMENT), PAGE * 4 + SHORT_PAGE_HEADER + 56);
    }

    #[test]
    fn the_last_record_is_read_from_padded_waldump_lines() {
        let dump = "rmgr: Heap        len (rec/tot):     59/    59, tx:        724, lsn: 0/01526018, prev 0/01525FC0, desc: INSERT\n\
                    rmgr: Transaction len (rec/tot):    405/   405, tx:        724, lsn: 0/01526058, prev 0/01526018, desc: COMMIT\n\
                    pg_waldump: error: error in WAL record at 0/1526058: invalid record length at 0/15261F0: wanted 24, got 0\n";
        assert_eq!(last_record(dump), Some((0x1526058, 405)));
        assert_eq!(last_record("pg_waldump: error: could not find a valid record after 0/3000000"), None);
    }
}
