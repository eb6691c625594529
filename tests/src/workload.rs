//! A write workload and a split-brain checker for tests on real PostgreSQL, and killing a
//! member's server the way a lost site loses it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Writes continuously to whichever member accepts writes; returns the ids acknowledged.
pub async fn writer(conninfos: Vec<String>, stop: Arc<AtomicBool>, acked: Arc<Mutex<BTreeSet<i64>>>) {
    while !stop.load(Ordering::Relaxed) {
        for ci in &conninfos {
            // Bounded too: behind a cut link a connect waits for TCP's own timeout (minutes).
            let connect = tokio_postgres::connect(ci, tokio_postgres::NoTls);
            let Ok(Ok((client, conn))) = tokio::time::timeout(Duration::from_secs(1), connect).await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = conn.await;
            });
            while !stop.load(Ordering::Relaxed) {
                // Bounded: behind a cut link a query never returns. A write whose answer did
                // not come is not acknowledged.
                let insert = client.query_one("INSERT INTO orders (note) VALUES ('workload') RETURNING id", &[]);
                match tokio::time::timeout(Duration::from_secs(2), insert).await {
                    Ok(Ok(row)) => {
                        acked.lock().unwrap().insert(row.get::<_, i64>(0));
                    }
                    _ => break,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The usual load of a role-change test: a [`writer`] to whichever member accepts writes and a
/// [`checker`] beside it, until [`Workload::finish`].
pub struct Workload {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<i64>>>,
    writer: tokio::task::JoinHandle<()>,
    checker: tokio::task::JoinHandle<usize>,
}

impl Workload {
    /// Starts both and waits until more than `at_least` writes were acknowledged.
    pub async fn start(conninfos: Vec<String>, at_least: usize) -> Result<Workload> {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let w = Workload {
            writer: tokio::spawn(writer(conninfos.clone(), stop.clone(), acked.clone())),
            checker: tokio::spawn(checker(conninfos, stop.clone())),
            stop,
            acked,
        };
        w.more("writes flowing", at_least, Duration::from_secs(10)).await?;
        Ok(w)
    }

    /// Waits until more than `n` further writes were acknowledged (e.g. on a new primary).
    pub async fn more(&self, what: &str, n: usize, timeout: Duration) -> Result<()> {
        let from = self.acked.lock().unwrap().len();
        crate::wait_for(what, timeout, || async { (self.acked.lock().unwrap().len() > from + n).then_some(()) }).await
    }

    /// Stops both; fails if two members were ever writable at the same moment. Returns the
    /// acknowledged ids.
    pub async fn finish(self) -> Result<Vec<i64>> {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.await?;
        let worst = self.checker.await?;
        anyhow::ensure!(worst <= 1, "{worst} members were writable at the same moment");
        let acked = self.acked.lock().unwrap().iter().copied().collect();
        Ok(acked)
    }
}

/// Samples every member: the most members ever writable (not in recovery) at the same moment.
pub async fn checker(conninfos: Vec<String>, stop: Arc<AtomicBool>) -> usize {
    let mut worst = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut writable = 0;
        for ci in &conninfos {
            if accepts_writes(ci).await {
                writable += 1;
            }
        }
        worst = worst.max(writable);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worst
}

/// Whether the server at `conninfo` answers, within 500 ms each for the connection and the
/// question, that it is not in recovery (a primary: it would accept writes).
pub async fn accepts_writes(conninfo: &str) -> bool {
    let connect = tokio_postgres::connect(conninfo, tokio_postgres::NoTls);
    let Ok(Ok((client, conn))) = tokio::time::timeout(Duration::from_millis(500), connect).await else {
        return false;
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let ask = client.query_one("SELECT NOT pg_is_in_recovery()", &[]);
    matches!(tokio::time::timeout(Duration::from_millis(500), ask).await, Ok(Ok(row)) if row.get::<_, bool>(0))
}

/// What a [`single_writer`] saw.
#[derive(Default)]
pub struct Seen {
    pub acked: BTreeSet<i64>,
    pub last_ok: Option<Instant>,
    /// The longest time between two consecutive acknowledgements.
    pub longest_gap: Duration,
    /// Failed writes (refused, terminated, unanswered for 2 s) and when the first was.
    pub errors: usize,
    pub first_error: Option<Instant>,
}

/// Writes to one member only, every few milliseconds, noting every acknowledgement and every
/// failure: for tests where that member must go on serving (or must stop).
pub async fn single_writer(conninfo: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let fail = |seen: &Mutex<Seen>| {
        let mut s = seen.lock().unwrap();
        s.errors += 1;
        s.first_error.get_or_insert_with(Instant::now);
    };
    while !stop.load(Ordering::Relaxed) {
        let connect = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls);
        let Ok(Ok((client, conn))) = tokio::time::timeout(Duration::from_secs(1), connect).await else {
            fail(&seen);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        while !stop.load(Ordering::Relaxed) {
            let insert = client.query_one("INSERT INTO orders (note) VALUES ('single') RETURNING id", &[]);
            match tokio::time::timeout(Duration::from_secs(2), insert).await {
                Ok(Ok(row)) => {
                    let mut s = seen.lock().unwrap();
                    s.acked.insert(row.get::<_, i64>(0));
                    let now = Instant::now();
                    if let Some(last) = s.last_ok {
                        s.longest_gap = s.longest_gap.max(now - last);
                    }
                    s.last_ok = Some(now);
                }
                _ => {
                    fail(&seen);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A [`single_writer`] to one member and a [`checker`] of every member, for tests where that
/// member must go on serving (or must stop), until [`SingleWorkload::finish`].
pub struct SingleWorkload {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    writer: tokio::task::JoinHandle<()>,
    checker: tokio::task::JoinHandle<usize>,
}

impl SingleWorkload {
    /// Writes to `conninfos[0]`, checks all of them; waits until more than `at_least` writes
    /// were acknowledged.
    pub async fn start(conninfos: Vec<String>, at_least: usize) -> Result<SingleWorkload> {
        let target = conninfos.first().cloned().ok_or_else(|| anyhow!("no member to write to"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let w = SingleWorkload {
            writer: tokio::spawn(single_writer(target, stop.clone(), seen.clone())),
            checker: tokio::spawn(checker(conninfos, stop.clone())),
            stop,
            seen,
        };
        crate::wait_for("writes flowing", Duration::from_secs(10), || async {
            (w.seen().acked.len() > at_least).then_some(())
        })
        .await?;
        Ok(w)
    }

    /// What the writer saw so far.
    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        // Poisoned only if a holder panicked, and then the test has failed already.
        self.seen.lock().unwrap()
    }

    /// Stops both; fails if two members were ever writable at the same moment. Returns what the
    /// writer saw.
    pub async fn finish(self) -> Result<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.await?;
        let worst = self.checker.await?;
        anyhow::ensure!(worst <= 1, "{worst} members were writable at the same moment");
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        Ok(seen)
    }
}

/// SIGKILLs the postmaster of the data directory `data` and every process it started, as the
/// loss of its host would: nothing gets to shut down cleanly.
pub fn kill_postgres(data: &Path) -> Result<()> {
    signal_postgres(data, Signal::SIGKILL)
}

/// Sends `sig` to the postmaster of the server in `data` and to every process it started (e.g.
/// SIGSTOP and SIGCONT, to freeze the whole server as a hung host would).
pub fn signal_postgres(data: &Path, sig: Signal) -> Result<()> {
    let path = data.join("postmaster.pid");
    let pidfile = std::fs::read_to_string(&path)
        .map_err(|e| anyhow!("{}: {e}: this server was not running when the test went to signal it", path.display()))?;
    let pid: i32 =
        pidfile.lines().next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| anyhow!("bad postmaster.pid"))?;
    // A stale pid file (the server was killed, nothing restarted it) may name a pid reused by
    // another process: signal only a postgres.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "postgres" {
        return Err(anyhow!("{}: pid {pid} is not a running postgres: this server was not running", path.display()));
    }
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The parent pid is the second field after the parenthesised command name.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if ppid == Some(pid) {
            if let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() {
                children.push(child);
            }
        }
    }
    kill(Pid::from_raw(pid), sig)?;
    for c in children {
        let _ = kill(Pid::from_raw(c), sig);
    }
    Ok(())
}

/// A server tree stopped with SIGSTOP, continued again when this is dropped (whatever the test's
/// outcome), so that its cleanup can stop it.
pub struct Frozen(pub std::path::PathBuf);

impl Frozen {
    pub fn freeze(data: &Path) -> Result<Frozen> {
        signal_postgres(data, Signal::SIGSTOP)?;
        Ok(Frozen(data.to_path_buf()))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // Gone already (killed by a fence) is fine.
        let _ = signal_postgres(&self.0, Signal::SIGCONT);
    }
}

/// Writes as fast as one client can to whichever member accepts writes, recording when each
/// acknowledged write returned and its id, and counting the writes that failed.
pub async fn timed_writer(
    conninfos: Vec<String>,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<(Instant, i64)>>>,
    failed: Arc<std::sync::atomic::AtomicUsize>,
) {
    while !stop.load(Ordering::Relaxed) {
        for ci in &conninfos {
            let Ok(Ok((client, conn))) =
                tokio::time::timeout(Duration::from_millis(300), tokio_postgres::connect(ci, tokio_postgres::NoTls))
                    .await
            else {
                continue;
            };
            tokio::spawn(async move {
                let _ = conn.await;
            });
            while !stop.load(Ordering::Relaxed) {
                match client.query_one("INSERT INTO orders (note) VALUES ('timed') RETURNING id", &[]).await {
                    Ok(row) => acks.lock().unwrap().push((Instant::now(), row.get(0))),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }
}

/// A [`timed_writer`] for the benchmarks: what an application sees of each role change is the
/// longest gap between two consecutive acknowledged writes around it.
pub struct TimedWorkload {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<(Instant, i64)>>>,
    writer: tokio::task::JoinHandle<()>,
    /// An instant and the wall clock (ms since the Unix epoch) at that instant, to place the
    /// acknowledgements beside times the controllers recorded.
    base: (Instant, u64),
    /// Writes that failed (a connection that broke, a member that refused the write).
    failed: Arc<std::sync::atomic::AtomicUsize>,
}

impl TimedWorkload {
    /// Starts the writer and waits until writes flow.
    pub async fn start(conninfos: Vec<String>) -> Result<TimedWorkload> {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let base = (Instant::now(), wall_ms());
        let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = tokio::spawn(timed_writer(conninfos, stop.clone(), acks.clone(), failed.clone()));
        let w = TimedWorkload { writer, stop, acks, base, failed };
        crate::wait_for("writes flowing", Duration::from_secs(10), || async {
            (w.acks.lock().unwrap().len() > 100).then_some(())
        })
        .await?;
        Ok(w)
    }

    /// The longest gap between consecutive acknowledged writes from just before `from`, and
    /// when the newest write was acknowledged.
    pub fn gap_since(&self, from: Instant) -> (Duration, Option<Instant>) {
        let acks = self.acks.lock().unwrap();
        let around: Vec<Instant> =
            acks.iter().map(|a| a.0).filter(|a| *a >= from - Duration::from_millis(200)).collect();
        (around.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default(), around.last().copied())
    }

    /// The longest gap between consecutive acknowledged writes that begins within the wall-clock
    /// window `[from_ms, to_ms]` (ms since the Unix epoch), and when (wall clock) it began.
    pub fn longest_gap_within(&self, from_ms: u64, to_ms: u64) -> Option<(Duration, u64)> {
        let acks = self.acks.lock().unwrap();
        let wall = |i: Instant| self.base.1 + i.saturating_duration_since(self.base.0).as_millis() as u64;
        acks.windows(2)
            .filter(|w| (from_ms..=to_ms).contains(&wall(w[0].0)))
            .map(|w| (w[1].0 - w[0].0, wall(w[0].0)))
            .max_by_key(|g| g.0)
    }

    /// How many writes failed so far.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stops the writer; returns every acknowledged id.
    pub async fn finish(self) -> Result<Vec<i64>> {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.await?;
        let acked = self.acks.lock().unwrap().iter().map(|a| a.1).collect();
        Ok(acked)
    }
}

/// The `p` quantile (0 to 1) of `v`, sorting it.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Watches one member and notes the first moment it was seen writable (up and not in recovery):
/// for tests where a server must stay down or read-only until something happens.
pub struct WritableWatch {
    stop: Arc<AtomicBool>,
    first: Arc<Mutex<Option<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WritableWatch {
    /// Starts polling `conninfo` every 20 ms.
    pub fn start(conninfo: String) -> WritableWatch {
        let (stop, first) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(None)));
        let (s, f) = (stop.clone(), first.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let connect = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls);
                if let Ok(Ok((client, conn))) = tokio::time::timeout(Duration::from_millis(500), connect).await {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let ask = client.query_one("SELECT NOT pg_is_in_recovery()", &[]);
                    if let Ok(Ok(row)) = tokio::time::timeout(Duration::from_millis(500), ask).await {
                        if row.get::<_, bool>(0) {
                            f.lock().unwrap().get_or_insert_with(Instant::now);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        WritableWatch { stop, first, task }
    }

    /// When the member was first seen writable, if it was.
    pub fn first_writable(&self) -> Option<Instant> {
        *self.first.lock().unwrap()
    }

    /// Stops watching; returns [`WritableWatch::first_writable`].
    pub async fn finish(self) -> Option<Instant> {
        self.stop.store(true, Ordering::Relaxed);
        let first = self.first.clone();
        let _ = self.task.await;
        let seen = *first.lock().unwrap();
        seen
    }
}

/// The wall clock, ms since the Unix epoch.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
