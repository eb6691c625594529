//! The intake journal: every alert this controller accepts is written here, and synced, before
//! the sender is told "accepted". The replicated log then takes them in batches; until a batch is
//! committed its alerts are on this disk, and after a crash they are proposed again.
//!
//! A journal is a folder of segment files, `segment-<first sequence number>.log`, each starting
//! with [`MAGIC`] and the journal's id (random, chosen when the folder is first used: the state
//! keeps one mark per journal, so a controller rebuilt with an empty folder starts a new one
//! rather than being taken for a replay of the old). Then entries, each a little-endian u32
//! length, a u32 CRC-32 of the bytes and that many bytes of bincode [`Entry`]. A segment is
//! deleted once every alert in it is committed; a torn entry at the end of the last segment (a
//! crash mid-write, which no sender was told about) is cut off when the journal is opened.
//!
//! A segment is made at its full size, written with zeros (not `fallocate`d: ext4 would mark
//! the blocks unwritten and convert them, a metadata change, on the first write), and entries
//! are written over the zeros. An append then changes neither the file's size nor its blocks,
//! so `fdatasync` writes the data alone, where a growing file also needs its inode written: one
//! synchronous write per acknowledged group rather than two. Measured with one alert per
//! request: 18,900 → 22,600 requests/s (BENCHMARKS.md). The entries end at the first zero
//! length; what follows must be zeros, or it is reported like any other damage.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::raft::{decode, encode};
use crate::state::alerts::IncomingAlert;

/// Every segment begins with these eight bytes, then the journal id (u64, little-endian).
const MAGIC: &[u8; 8] = b"TRIADIJ1";
const HEADER: u64 = 16;
/// A segment's size as made (zeros), and the point past which it is closed and a new one
/// begun. Making one stalls the writer while the zeros are written and synced (about 15 ms
/// for 16 MiB here), once every 16 MiB of alerts.
const SEGMENT_BYTES: u64 = if cfg!(test) { 64 << 10 } else { 16 << 20 };
/// No entry is larger: a length beyond it is corruption, not an allocation to attempt.
const MAX_ENTRY: u32 = 256 << 20;

/// One entry of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// Alerts accepted from one request (or one gathering of syslog lines).
    Offer(Offered),
    /// The batch about to be proposed, synced before it is: after a restart the same batch is
    /// proposed again with the same bounds, which the state recognises if it was committed.
    Proposing { first: u64, last: u64 },
    /// Every offer up to `through` is in the replicated log. Not synced on its own: if a crash
    /// loses it, the batch is proposed again and the state answers "already recorded".
    Committed { through: u64 },
}

/// An accepted offer as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offered {
    pub seq: u64,
    pub source: String,
    /// Where it came from (an address, or `syslog`), for the audit log.
    pub origin: String,
    pub events: Vec<IncomingAlert>,
}

/// What opening a journal found that is not yet committed.
#[derive(Debug, Default)]
pub struct Replay {
    /// Offers after the last committed mark, in order.
    pub offers: Vec<Offered>,
    /// Batches announced after the last committed mark, in order.
    pub proposing: Vec<(u64, u64)>,
    /// Entries that could not be read (a damaged segment), reported loudly.
    pub damaged: Vec<String>,
}

/// An open journal. Used by one thread (the intake's writer).
pub struct Journal {
    /// An exclusive lock on `DIR/LOCK`, held while the journal is open: two writers would
    /// interleave entries (a break-glass restart starts a new intake in the same process while
    /// the old writer may still be finishing its last write).
    _lock: nix::fcntl::Flock<File>,
    dir: PathBuf,
    id: u64,
    /// Closed segments: their first sequence number and path, oldest first.
    closed: VecDeque<(u64, PathBuf)>,
    current: File,
    current_first: u64,
    current_len: u64,
    /// The next offer's sequence number.
    next_seq: u64,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and reads back what is not yet committed.
    pub fn open(dir: &Path) -> io::Result<(Journal, Replay)> {
        fs::create_dir_all(dir)?;
        let lock = lock(dir)?;
        let mut segments = list_segments(dir)?;
        let mut replay = Replay::default();
        let mut id = None;
        let (mut committed, mut max_seq) = (0u64, 0u64);
        let mut offers = Vec::new();
        let last = segments.len().saturating_sub(1);
        for (i, (_, path)) in segments.iter().enumerate() {
            let read = read_segment(path, i == last)?;
            match (id, read.id) {
                (None, Some(j)) => id = Some(j),
                (Some(a), Some(b)) if a != b => {
                    replay.damaged.push(format!("{}: belongs to journal {b:016x}, not {a:016x}", path.display()));
                    continue;
                }
                _ => {}
            }
            if let Some(d) = read.damage {
                replay.damaged.push(format!("{}: {d}", path.display()));
            }
            for entry in read.entries {
                match entry {
                    Entry::Offer(o) => {
                        max_seq = max_seq.max(o.seq);
                        offers.push(o);
                    }
                    Entry::Proposing { first, last } => replay.proposing.push((first, last)),
                    Entry::Committed { through } => committed = committed.max(through),
                }
            }
        }
        // Numbering never goes back, even when every offer (and the marks) were in segments
        // already deleted: a segment's name says where it began.
        let named_floor = segments.last().map(|(first, _)| first.saturating_sub(1)).unwrap_or(0);
        max_seq = max_seq.max(committed).max(named_floor);
        replay.offers = offers.into_iter().filter(|o| o.seq > committed).collect();
        replay.proposing.retain(|&(_, last)| last > committed);
        replay.proposing.sort_unstable();
        replay.proposing.dedup();

        let id = match id {
            Some(id) => id,
            None => new_id()?,
        };
        let next_seq = max_seq + 1;
        // Appends go to a fresh segment (the last one may end in a cut-off entry), which starts
        // with the marks read so far, so that deleting older segments loses none of them.
        let mut carried = vec![Entry::Committed { through: committed }];
        carried.extend(replay.proposing.iter().map(|&(first, last)| Entry::Proposing { first, last }));
        let current_path = segment_path(dir, next_seq);
        segments.retain(|(_, p)| p != &current_path);
        let (current, current_len) = create_segment(&current_path, id, &carried)?;
        let mut journal = Journal {
            _lock: lock,
            dir: dir.to_path_buf(),
            id,
            closed: segments.into(),
            current,
            current_first: next_seq,
            current_len,
            next_seq,
        };
        journal.forget_through(committed)?;
        Ok((journal, replay))
    }

    /// The journal's id, which batches carry into the state.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The sequence number the next offer will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Takes the next sequence number for an offer about to be appended.
    pub fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Returns the sequence numbers from `first` on, taken for offers that were not written.
    pub fn give_back(&mut self, first: u64) {
        self.next_seq = first;
    }

    /// Appends `entries` and syncs them to disk. On an error nothing of them is kept: the
    /// segment is cut back to where it was, so later entries are never stranded behind a
    /// half-written one.
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let buf = frame(entries);
        let written = self.current.write_all_at(&buf, self.current_len).and_then(|()| self.current.sync_data());
        if let Err(e) = written {
            let _ = self.current.set_len(self.current_len);
            return Err(e);
        }
        self.current_len += buf.len() as u64;
        if self.current_len >= SEGMENT_BYTES {
            self.rotate()?;
        }
        Ok(())
    }

    /// Deletes the closed segments whose offers are all committed (up to `through`): a closed
    /// segment's offers end where the next segment's begin.
    pub fn forget_through(&mut self, through: u64) -> io::Result<()> {
        while let Some((_, path)) = self.closed.front() {
            let next_first = self.closed.get(1).map(|(f, _)| *f).unwrap_or(self.current_first);
            if next_first > through + 1 {
                break;
            }
            fs::remove_file(path)?;
            self.closed.pop_front();
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let path = segment_path(&self.dir, self.next_seq);
        let (file, len) = create_segment(&path, self.id, &[])?;
        let old = segment_path(&self.dir, self.current_first);
        self.closed.push_back((self.current_first, old));
        self.current = file;
        self.current_first = self.next_seq;
        self.current_len = len;
        Ok(())
    }
}

/// Entries as written: length, checksum, bytes.
fn frame(entries: &[Entry]) -> Vec<u8> {
    let mut buf = Vec::new();
    for e in entries {
        // Never empty (bincode writes an enum's variant first): a zero length is the end.
        let bytes = encode(e);
        buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        buf.extend_from_slice(&bytes);
    }
    buf
}

/// How long opening waits for another writer of the same journal to let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(if cfg!(test) { 300 } else { 10_000 });

fn lock(dir: &Path) -> io::Result<nix::fcntl::Flock<File>> {
    use nix::errno::Errno;
    use nix::fcntl::{Flock, FlockArg};
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("LOCK"))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                file = f;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err((_, e)) => {
                return Err(io::Error::other(format!(
                    "{} is locked by another writer (another controller on this data directory?): {e}",
                    dir.join("LOCK").display()
                )))
            }
        }
    }
}

fn new_id() -> io::Result<u64> {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| io::Error::other("no randomness for a journal id"))?;
    Ok(u64::from_le_bytes(b).max(1))
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("segment-{first:020}.log"))
}

/// The segments in `dir`, by first sequence number.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(n) = name.strip_prefix("segment-").and_then(|r| r.strip_suffix(".log")) {
            if let Ok(first) = n.parse::<u64>() {
                out.push((first, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Makes a segment holding `entries` at `path` durably (written aside with the zeros that fill
/// it to [`SEGMENT_BYTES`], synced, renamed into place, the folder synced: a segment of that
/// name, if any, is replaced whole or not at all) and opens it for writing. Returns it and how
/// much of it is used.
fn create_segment(path: &Path, id: u64, entries: &[Entry]) -> io::Result<(File, u64)> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&tmp)?;
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&id.to_le_bytes());
    bytes.extend_from_slice(&frame(entries));
    let used = bytes.len() as u64;
    f.write_all(&bytes)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = used;
    while at < SEGMENT_BYTES {
        let n = (SEGMENT_BYTES - at).min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        at += n as u64;
    }
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    let f = OpenOptions::new().write(true).open(path)?;
    Ok((f, used))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct SegmentRead {
    id: Option<u64>,
    entries: Vec<Entry>,
    /// Why reading stopped early, if it did.
    damage: Option<String>,
}

/// Reads a segment's entries. In the last segment a damaged tail is a write cut off by a crash:
/// the file is cut back to its last whole entry. Elsewhere it is damage, reported.
fn read_segment(path: &Path, last: bool) -> io::Result<SegmentRead> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    if bytes.len() < HEADER as usize || &bytes[..8] != MAGIC {
        let damage = Some("not an intake journal segment (bad header)".to_string());
        return Ok(SegmentRead { id: None, entries: Vec::new(), damage });
    }
    let id = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let mut entries = Vec::new();
    let mut at = HEADER as usize;
    let mut damage = None;
    while at < bytes.len() {
        if bytes[at..].starts_with(&[0; 4]) || bytes.len() - at < 4 && bytes[at..].iter().all(|&b| b == 0) {
            // The end of the entries; the zeros the segment was made with follow.
            if let Some(k) = bytes[at..].iter().position(|&b| b != 0) {
                damage = Some(format!("an entry length of 0 followed by data at byte {}", at + k));
            }
            break;
        }
        match next_entry(&bytes[at..]) {
            Ok((entry, used)) => {
                entries.push(entry);
                at += used;
            }
            Err(why) => {
                damage = Some(format!("{why} at byte {at}"));
                break;
            }
        }
    }
    if let (true, Some(_)) = (last, &damage) {
        // Nothing after a cut-off write was acknowledged: dropping it loses nothing promised.
        OpenOptions::new().write(true).open(path)?.set_len(at as u64)?;
        damage = None;
    }
    Ok(SegmentRead { id: Some(id), entries, damage })
}

/// Why an entry could not be read: at the end of the last segment, a write a crash cut off.
#[derive(Debug, thiserror::Error)]
enum EntryDamage {
    #[error("a cut-off entry header")]
    CutHeader,
    #[error("an entry length of {0} bytes")]
    Length(u32),
    #[error("a cut-off entry")]
    Cut,
    #[error("an entry whose checksum does not match")]
    Checksum,
    #[error("an entry that does not decode ({0})")]
    Decode(String),
}

fn next_entry(b: &[u8]) -> Result<(Entry, usize), EntryDamage> {
    if b.len() < 8 {
        return Err(EntryDamage::CutHeader);
    }
    let len = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
    if len > MAX_ENTRY {
        return Err(EntryDamage::Length(len));
    }
    let end = 8 + len as usize;
    let body = b.get(8..end).ok_or(EntryDamage::Cut)?;
    if crc32fast::hash(body) != crc {
        return Err(EntryDamage::Checksum);
    }
    let entry = decode(body).map_err(|e| EntryDamage::Decode(e.to_string()))?;
    Ok((entry, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::alerts::Severity;

    fn offer(j: &mut Journal, fp: &str) -> Entry {
        let seq = j.take_seq();
        let events = vec![IncomingAlert::for_test(fp, 1, Severity::High)];
        Entry::Offer(Offered { seq, source: "s".into(), origin: "o".into(), events })
    }

    fn seqs(r: &Replay) -> Vec<u64> {
        r.offers.iter().map(|o| o.seq).collect()
    }

    #[test]
    fn what_is_not_committed_comes_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, r) = Journal::open(dir.path()).unwrap();
        assert!(r.offers.is_empty() && r.proposing.is_empty() && r.damaged.is_empty());
        let id = j.id();
        let batch: Vec<Entry> = (0..3).map(|i| offer(&mut j, &format!("a{i}"))).collect();
        j.append(&batch).unwrap();
        j.append(&[Entry::Proposing { first: 1, last: 2 }]).unwrap();
        j.append(&[Entry::Committed { through: 2 }, Entry::Proposing { first: 3, last: 3 }]).unwrap();
        drop(j);

        let (mut j, r) = Journal::open(dir.path()).unwrap();
        assert_eq!(j.id(), id, "the same journal");
        assert_eq!(seqs(&r), [3]);
        assert_eq!(r.proposing, [(3, 3)]);
        assert_eq!(j.next_seq(), 4, "numbering goes on");
        let more = offer(&mut j, "b");
        j.append(&[more]).unwrap();
        j.append(&[Entry::Committed { through: 4 }]).unwrap();
        drop(j);
        let (_, r) = Journal::open(dir.path()).unwrap();
        assert!(r.offers.is_empty() && r.proposing.is_empty(), "{r:?}");
    }

    #[test]
    fn a_cut_off_tail_is_dropped_and_damage_elsewhere_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        let e = offer(&mut j, "a");
        j.append(&[e]).unwrap();
        let (path, end) = (segment_path(dir.path(), 1), j.current_len);
        drop(j);
        // A crash mid-write: half an entry after the last whole one, in the last segment.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[200, 0, 0, 0, 1, 2], end).unwrap();
        drop(f);
        let (j, r) = Journal::open(dir.path()).unwrap();
        assert_eq!(seqs(&r), [1]);
        assert!(r.damaged.is_empty(), "{:?}", r.damaged);
        drop(j);
        // A flipped byte inside the (now older) segment is damage, not a torn write.
        let mut bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, end, "the torn write was cut off");
        bytes[end as usize - 3] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let (_, r) = Journal::open(dir.path()).unwrap();
        assert!(r.offers.is_empty());
        assert!(r.damaged[0].contains("checksum"), "{:?}", r.damaged);
    }

    #[test]
    fn appends_write_over_the_zeros_a_segment_was_made_with() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        let path = segment_path(dir.path(), 1);
        assert_eq!(fs::metadata(&path).unwrap().len(), SEGMENT_BYTES, "made full size");
        for i in 0..5 {
            let e = offer(&mut j, &format!("a{i}"));
            j.append(&[e]).unwrap();
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), SEGMENT_BYTES, "appends do not grow it");
        let end = j.current_len;
        drop(j);
        let (j, r) = Journal::open(dir.path()).unwrap();
        assert_eq!(seqs(&r), [1, 2, 3, 4, 5]);
        assert!(r.damaged.is_empty(), "{:?}", r.damaged);
        drop(j);
        // Data after the end of the entries in a closed segment: damage, reported.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[7], end + 100).unwrap();
        drop(f);
        let (_, r) = Journal::open(dir.path()).unwrap();
        assert_eq!(seqs(&r), [1, 2, 3, 4, 5]);
        assert!(r.damaged[0].contains("followed by data"), "{:?}", r.damaged);
    }

    #[test]
    fn a_full_segment_is_closed_and_a_new_one_made() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        let mut n = 0;
        while list_segments(dir.path()).unwrap().len() < 3 {
            let batch: Vec<Entry> = (0..100).map(|i| offer(&mut j, &format!("a{i}"))).collect();
            j.append(&batch).unwrap();
            n += 100;
        }
        drop(j);
        let (_, r) = Journal::open(dir.path()).unwrap();
        assert_eq!(seqs(&r), (1..=n).collect::<Vec<_>>(), "every offer, across segments");
        assert!(r.damaged.is_empty(), "{:?}", r.damaged);
    }

    #[test]
    fn committed_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        let e = offer(&mut j, "a");
        j.append(&[e]).unwrap();
        j.rotate().unwrap();
        let e = offer(&mut j, "b");
        j.append(&[e]).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 2);
        j.forget_through(0).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 2, "offer 1 is not committed");
        j.forget_through(1).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn a_journal_has_one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = Journal::open(dir.path()).unwrap();
        let started = std::time::Instant::now();
        let err = Journal::open(dir.path()).err().expect("a second writer is refused");
        assert!(err.to_string().contains("locked by another writer"), "{err}");
        assert!(started.elapsed() >= LOCK_WAIT, "it waited for the first to let go");
        drop(first);
        Journal::open(dir.path()).expect("free again once the first is closed");
    }

    #[test]
    fn a_new_folder_is_a_new_journal() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ja, _) = Journal::open(a.path()).unwrap();
        let (jb, _) = Journal::open(b.path()).unwrap();
        assert_ne!(ja.id(), jb.id());
    }
}
