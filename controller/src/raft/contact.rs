//! When this controller last knew itself part of a working quorum, kept in its store so that it
//! outlives a restart (`brain/continuity.rs` says why it matters). Written at most once a second
//! and without fsync: it only has to survive the process (the page cache outlives it); after a
//! host crash the boot id differs and the time is void anyway.

use rocksdb::DB;

use super::store::CF_META;
use crate::error::{Error, Result};

const KEY_CONTACT: &[u8] = b"quorum_contact";

/// The last contact, on `CLOCK_BOOTTIME` (ms), if one was kept under the boot running now.
pub fn load(db: &DB) -> Result<Option<u64>> {
    let cf = db.cf_handle(CF_META).ok_or_else(|| Error::Storage("no meta column family".into()))?;
    let Some(bytes) = db.get_cf(cf, KEY_CONTACT)? else { return Ok(None) };
    let text = String::from_utf8_lossy(&bytes);
    let boot = triad_proto::clock::boot_id();
    Ok(match text.split_once(' ') {
        Some((id, ms)) if !boot.is_empty() && id == boot => ms.parse().ok(),
        _ => None,
    })
}

/// Keeps `boot_ms` (on `CLOCK_BOOTTIME`) as the last contact.
pub fn save(db: &DB, boot_ms: u64) -> Result<()> {
    let cf = db.cf_handle(CF_META).ok_or_else(|| Error::Storage("no meta column family".into()))?;
    db.put_cf(cf, KEY_CONTACT, format!("{} {boot_ms}", triad_proto::clock::boot_id()))?;
    Ok(())
}
