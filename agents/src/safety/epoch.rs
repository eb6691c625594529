//! The highest epoch this agent has seen, on disk. DESIGN.md, "Safety of role changes", point 1:
//! every command the controllers send carries the cluster's epoch; the agent persists a higher
//! epoch (temporary file, fsync, rename, fsync of the directory) before it acts on it or
//! acknowledges it, refuses commands from older epochs, and treats a file it cannot read as
//! "fenced, epoch unknown" — it will not act as a primary until the controllers tell it the epoch
//! again with a linearizable read.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What the agent knows of the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Epoch {
    /// The highest epoch seen (0 for a fresh agent that has never seen one).
    Known(u64),
    /// The file exists but cannot be read or parsed: the agent is fenced.
    Unknown(String),
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("stale epoch {got}: this agent has seen epoch {seen}")]
    Stale { got: u64, seen: u64 },
    #[error("fenced: the epoch file is unreadable ({0}); waiting for the controllers to confirm the epoch")]
    Unknown(String),
}

/// The persisted epoch.
pub struct EpochStore {
    path: PathBuf,
    epoch: Epoch,
}

const MAGIC: &str = "triad-epoch v1";

fn parse(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let n: u64 = lines.next()?.strip_prefix("epoch ")?.parse().ok()?;
    // The value is written twice; a torn or edited file does not match itself.
    let check: u64 = lines.next()?.strip_prefix("check ")?.parse().ok()?;
    (check == n && lines.next().is_none()).then_some(n)
}

impl EpochStore {
    /// Reads the epoch file at `path`. A missing file is epoch 0; anything unreadable is
    /// [`Epoch::Unknown`].
    pub fn open(path: &Path) -> Self {
        let epoch = match fs::read_to_string(path) {
            Ok(text) => match parse(&text) {
                Some(n) => Epoch::Known(n),
                None => Epoch::Unknown(format!("{} is corrupt", path.display())),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Epoch::Known(0),
            Err(e) => Epoch::Unknown(format!("{}: {e}", path.display())),
        };
        EpochStore { path: path.to_path_buf(), epoch }
    }

    /// What is known.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// Whether a command at `epoch` may be acted on.
    pub fn check(&self, epoch: u64) -> Result<(), Refusal> {
        match &self.epoch {
            Epoch::Unknown(why) => Err(Refusal::Unknown(why.clone())),
            Epoch::Known(seen) if epoch < *seen => Err(Refusal::Stale { got: epoch, seen: *seen }),
            Epoch::Known(_) => Ok(()),
        }
    }

    /// Records `epoch` durably if it is higher than what is known. Returns only once the new
    /// value is on disk, so the caller may then act on it.
    pub fn advance(&mut self, epoch: u64) -> io::Result<()> {
        if let Epoch::Known(seen) = self.epoch {
            if epoch <= seen {
                return Ok(());
            }
        }
        // On this thread, since the caller acts only once it is durable; but with the runtime
        // told, so that the guard's tick and the other streams do not wait behind the fsync.
        super::disk::blocking(|| write_durably(&self.path, epoch))?;
        self.epoch = Epoch::Known(epoch);
        Ok(())
    }

    /// Accepts an epoch confirmed by a linearizable read on the leader: the only way out of
    /// [`Epoch::Unknown`].
    pub fn confirm(&mut self, epoch: u64) -> io::Result<()> {
        if let Epoch::Unknown(_) = self.epoch {
            self.epoch = Epoch::Known(0);
        }
        self.advance(epoch)
    }
}

/// Temporary file, fsync, rename, fsync of the directory.
fn write_durably(path: &Path, epoch: u64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        write!(f, "{MAGIC}\nepoch {epoch}\ncheck {epoch}\n")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_agent_is_at_epoch_zero_and_refuses_nothing_current() {
        let dir = tempfile::tempdir().unwrap();
        let s = EpochStore::open(&dir.path().join("epoch"));
        assert_eq!(s.epoch(), &Epoch::Known(0));
        assert!(s.check(0).is_ok());
        assert!(s.check(5).is_ok());
    }

    #[test]
    fn advanced_epoch_survives_reopen_and_stale_commands_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epoch");
        let mut s = EpochStore::open(&path);
        s.advance(7).unwrap();
        s.advance(3).unwrap(); // never goes back
        let s = EpochStore::open(&path);
        assert_eq!(s.epoch(), &Epoch::Known(7));
        assert_eq!(s.check(6), Err(Refusal::Stale { got: 6, seen: 7 }));
        assert!(s.check(7).is_ok());
        assert!(!dir.path().join("epoch.tmp").exists());
    }

    #[test]
    fn unreadable_file_fences_until_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epoch");
        fs::write(&path, "triad-epoch v1\nepoch 9\ncheck 8\n").unwrap();
        let mut s = EpochStore::open(&path);
        assert!(matches!(s.epoch(), Epoch::Unknown(_)));
        assert!(matches!(s.check(100), Err(Refusal::Unknown(_))), "fenced, whatever the epoch");
        fs::write(&path, "garbage").unwrap();
        assert!(matches!(EpochStore::open(&path).epoch(), Epoch::Unknown(_)));
        s.confirm(9).unwrap();
        assert_eq!(EpochStore::open(&path).epoch(), &Epoch::Known(9));
    }
}
