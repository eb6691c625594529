//! The safety state's disk writes, kept off the paths that must not wait for a disk (issue 16,
//! item 4): the lease file is written by a thread of its own, newest state last, so that neither
//! the guard's tick nor the streams that renew the lease ever wait for it; an epoch, which must be
//! durable before anything acts on it, is written on the caller's thread (that order is the
//! point) but with the runtime told, so that the guard and the other streams run meanwhile.
//!
//! What a slow disk still costs, and why that is safe: a lease file behind the lease held only
//! makes an agent restarted on the same boot believe its lease ends sooner (it fences sooner);
//! a release, the one write that must be in the file before it is answered, waits for it. A
//! change of epoch cannot be renewed under before it is durable, so an fsync slower than
//! P minus the fence lead at a change of epoch fences the new primary: the runbook says so.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// Runs `f`, which blocks on the disk, on this thread; inside a multi-threaded Tokio runtime the
/// runtime is told first, so that the tasks queued behind this one move to another worker.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// What the writer thread shares with the lease.
#[derive(Default)]
struct Slot {
    /// The newest state handed over and not yet written: its number and its text.
    newest: Option<(u64, String)>,
    /// The number of the newest state in the file.
    written: u64,
    /// The number of the newest state the writer tried to write, in the file or not.
    attempted: u64,
    /// The lease is gone: the thread ends.
    closed: bool,
}

struct Shared {
    path: PathBuf,
    slot: Mutex<Slot>,
    changed: Condvar,
}

/// The lease file and the thread that writes it.
pub struct LeaseFile {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaseFile {
    /// Starts the writer of `path`.
    pub fn new(path: PathBuf) -> LeaseFile {
        let shared = Arc::new(Shared { path, slot: Mutex::default(), changed: Condvar::new() });
        let writer = shared.clone();
        let spawned = std::thread::Builder::new().name("lease-file".into()).spawn(move || write_forever(&writer));
        let thread = spawned
            .map_err(|e| {
                // Without the thread nothing is written: a restarted agent then fences at once,
                // the safe side. Said loudly.
                tracing::error!("cannot start the lease file's writer: {e}; the lease will not survive a restart")
            })
            .ok();
        if thread.is_none() {
            shared.slot.lock().expect("lease file lock poisoned").closed = true;
        }
        LeaseFile { shared, thread }
    }

    /// Hands state `number` (numbers grow with each state taken) to the writer; returns at once.
    /// An older state than one already handed over is dropped.
    pub fn write(&self, number: u64, text: String) {
        let mut slot = self.shared.slot.lock().expect("lease file lock poisoned");
        if slot.written >= number || slot.newest.as_ref().is_some_and(|(n, _)| *n >= number) {
            return;
        }
        slot.newest = Some((number, text));
        self.shared.changed.notify_all();
    }

    /// Waits until the writer has tried state `number` (or a newer one), or is gone; true only
    /// when it, or a newer one, is in the file.
    pub fn wait_written(&self, number: u64) -> bool {
        blocking(|| {
            let mut slot = self.shared.slot.lock().expect("lease file lock poisoned");
            while slot.attempted < number && !slot.closed {
                slot = self.shared.changed.wait(slot).expect("lease file lock poisoned");
            }
            slot.written >= number
        })
    }
}

impl Drop for LeaseFile {
    /// Writes what was handed over, then ends the thread (the agent is stopping).
    fn drop(&mut self) {
        self.shared.slot.lock().expect("lease file lock poisoned").closed = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = blocking(|| thread.join());
        }
    }
}

/// The writer thread: the newest state handed over, written (temporary file, rename), until the
/// lease is dropped. No fsync: the file only has to survive the agent's process (the page cache
/// outlives it); after a host crash the boot id differs and the file is void anyway.
fn write_forever(shared: &Shared) {
    let tmp = shared.path.with_extension("tmp");
    loop {
        let (number, text) = {
            let mut slot = shared.slot.lock().expect("lease file lock poisoned");
            loop {
                if let Some(next) = slot.newest.take() {
                    break next;
                }
                if slot.closed {
                    return;
                }
                slot = shared.changed.wait(slot).expect("lease file lock poisoned");
            }
        };
        let done = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &shared.path));
        if let Err(e) = &done {
            tracing::warn!("cannot record the lease in {}: {e}", shared.path.display());
        }
        let mut slot = shared.slot.lock().expect("lease file lock poisoned");
        slot.attempted = slot.attempted.max(number);
        if done.is_ok() {
            slot.written = slot.written.max(number);
        }
        shared.changed.notify_all();
    }
}
