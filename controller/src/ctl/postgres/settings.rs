//! The configuration text of the local members: what the primary's postgresql.conf gets, and
//! what a base-backed-up standby's postgresql.auto.conf becomes.

use std::path::Path;

use super::PgMember;
use crate::error::{Error, Result};

/// The settings appended to the primary's postgresql.conf. Standbys inherit them through
/// pg_basebackup (wal_log_hints must be on everywhere from the start for pg_rewind).
pub(super) fn primary_settings(primary: &PgMember) -> Result<String> {
    Ok(format!(
        "\n# --- Triad local demo ---\n\
         listen_addresses = '{host}'\n\
         port = {port}\n\
         unix_socket_directories = '{sock}'\n\
         cluster_name = 'customs-{name}'\n\
         wal_level = replica\n\
         wal_log_hints = on\n\
         max_wal_senders = 10\n\
         max_replication_slots = 10\n\
         # keeps enough WAL for a standby that was stopped for a while to catch up\n\
         wal_keep_size = '256MB'\n\
         hot_standby = on\n\
         # a standby whose primary went away retries every 5 s by default, and a promotion\n\
         # requested meanwhile waits for that retry: keep it short\n\
         wal_retrieve_retry_interval = '100ms'\n\
         # a silent partition (no reset, just no packets) is noticed by a standby's WAL receiver\n\
         # only at wal_receiver_timeout (60 s by default), and Triad does not fail over while a\n\
         # standby still streams from the primary: notice it within 2 s (the receiver pings the\n\
         # primary after 1 s of silence), and dead standbys likewise on the primary's side\n\
         wal_receiver_timeout = '2s'\n\
         wal_sender_timeout = '2s'\n\
         synchronous_commit = on\n\
         synchronous_standby_names = 'FIRST 1 (ndc)'\n\
         fsync = on\n",
        port = primary.port,
        host = primary.host,
        sock = conf_path(&primary.socket_dir())?,
        name = primary.name,
    ))
}

/// A standby's postgresql.auto.conf: what pg_basebackup -R wrote, without its primary_conninfo
/// and any port or socket directory, plus ours.
pub(super) fn standby_auto_conf(old: &str, standby: &PgMember, primary: &PgMember) -> Result<String> {
    const OURS: [&str; 5] = ["primary_conninfo", "port", "unix_socket_directories", "cluster_name", "listen_addresses"];
    let mut out: String = old
        .lines()
        .filter(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            !OURS.contains(&key)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    out.push_str(&format!(
        "primary_conninfo = 'host={phost} port={pport} user=postgres application_name={name}'\n\
         listen_addresses = '{host}'\n\
         port = {port}\n\
         unix_socket_directories = '{sock}'\n\
         cluster_name = 'customs-{name}'\n",
        pport = primary.port,
        phost = primary.host,
        host = standby.host,
        name = standby.name,
        port = standby.port,
        sock = conf_path(&standby.socket_dir())?,
    ));
    Ok(out)
}

/// A path as it can be written inside a quoted postgresql.conf value. Paths with quotes, commas,
/// backslashes or white space are refused rather than escaped: unix_socket_directories is a
/// comma-separated list with its own quoting, and these are our own temporary directories.
pub(super) fn conf_path(p: &Path) -> Result<String> {
    let s = p.to_str().ok_or_else(|| Error::InvalidArgument(format!("{} is not valid UTF-8", p.display())))?;
    if s.chars().any(|c| matches!(c, '\'' | '"' | ',' | '\\') || c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidArgument(format!(
            "{s}: PostgreSQL member directories may not contain quotes, commas, backslashes or \
             white space"
        )));
    }
    Ok(s.to_string())
}
