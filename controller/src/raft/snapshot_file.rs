//! Snapshot files: the state and the on-disk history (audit entries, archived alerts) up to a log
//! id, streamed to and from disk so that neither building, sending nor installing a snapshot
//! holds the history in memory.
//!
//! Format: [`MAGIC`] and the format's [`VERSION`] (u32, little-endian), then a sequence of
//! records, each a little-endian u64 length followed by that many bytes of bincode: first the
//! `SnapshotMeta`, then the `State`, then one [`History`] item per record. bincode is not
//! self-describing, so any change to `State`'s shape is a new version: a controller meeting a
//! snapshot of another version says so, rather than misreading it.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use openraft::{BasicNode, SnapshotMeta};

use super::{decode, encode, NodeId};
use crate::state::alerts::Alert;
use crate::state::{AuditEntry, State};

/// The first bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"TRIADSNP";
/// The snapshot format. 2: alerts keep each intake journal's mark (`AlertBook::journals`).
pub const VERSION: u32 = 2;

/// One item of the on-disk history.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum History {
    Audit(AuditEntry),
    Alert(Box<Alert>),
}

fn write_record(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    w.write_all(&(bytes.len() as u64).to_le_bytes())?;
    w.write_all(bytes)
}

fn read_record(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 8];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u64::from_le_bytes(len);
    // A corrupt length must not become a huge allocation.
    if len > 1 << 30 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("snapshot record of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Writes a snapshot to `path` durably: a temporary file, fsync, rename, fsync of the directory.
pub fn write(
    path: &Path,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    state: &State,
    history: impl Iterator<Item = io::Result<History>>,
) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut w = BufWriter::new(File::create(&tmp)?);
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        write_record(&mut w, &encode(meta))?;
        write_record(&mut w, &encode(state))?;
        for item in history {
            write_record(&mut w, &encode(&item?))?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Fsyncs the directory holding `path`, so that a rename in it survives power loss.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// An open snapshot file, positioned after its header.
pub struct Reader {
    r: BufReader<File>,
    pub meta: SnapshotMeta<NodeId, BasicNode>,
    pub state: State,
}

impl Reader {
    /// Opens `path` and reads its meta and state.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut r = BufReader::new(File::open(path)?);
        let mut header = [0u8; 12];
        r.read_exact(&mut header).map_err(|_| invalid("not a Triad snapshot file (too short)"))?;
        if &header[..8] != MAGIC {
            return Err(invalid("not a Triad snapshot file (no TRIADSNP header)"));
        }
        let version = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(invalid(format!(
                "a snapshot of format {version}; this controller reads format {VERSION} (install the version that wrote it, or rebuild this controller's data from its peers)"
            )));
        }
        let meta = read_record(&mut r)?.ok_or_else(|| invalid("empty snapshot file"))?;
        let meta = decode(&meta).map_err(invalid)?;
        let state = read_record(&mut r)?.ok_or_else(|| invalid("snapshot file without a state"))?;
        let state = decode(&state).map_err(invalid)?;
        Ok(Reader { r, meta, state })
    }

    /// The next history item, or `None` at the end.
    pub fn next_item(&mut self) -> io::Result<Option<History>> {
        match read_record(&mut self.r)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some).map_err(invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        let meta = SnapshotMeta::default();
        let state = State { audit_seq: 2, ..Default::default() };
        let audit: Vec<AuditEntry> = (1..=2)
            .map(|seq| AuditEntry {
                seq,
                log_index: seq,
                at_ms: 0,
                actor: "a".into(),
                role: crate::state::Role::Admin,
                origin: "o".into(),
                action: "x".into(),
            })
            .collect();
        let history: Vec<History> = audit.into_iter().map(History::Audit).collect();
        write(&path, &meta, &state, history.clone().into_iter().map(Ok)).unwrap();
        let mut r = Reader::open(&path).unwrap();
        assert_eq!(r.state, state);
        let mut got = Vec::new();
        while let Some(a) = r.next_item().unwrap() {
            got.push(a);
        }
        assert_eq!(got, history);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let mut r = Reader::open(&path).unwrap();
        r.next_item().unwrap();
        assert!(r.next_item().is_err(), "a truncated file is an error, not a shorter history");
        let mut other = bytes.clone();
        other[8] = 1;
        fs::write(&path, &other).unwrap();
        let e = Reader::open(&path).err().expect("another format is refused");
        assert!(e.to_string().contains("format 1"), "{e}");
    }
}
