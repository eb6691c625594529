//! The fence's last resort: SIGKILL of the postmaster and every process it started.
//!
//! `pg_ctl stop -m immediate` asks the postmaster to end its children; a postmaster that is
//! stopped (SIGSTOP, a debugger) or wedged never does, yet its backends may still hold client
//! sessions. A fence must end them all: so the children are listed first (once the postmaster is
//! gone they are reparented and no longer recognisable), then each gets SIGKILL, which works on a
//! stopped process too. The listing reads `/proc`; the postmaster's pid comes from the first line
//! of `postmaster.pid`.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::DriverError;

/// The postmaster's pid from `data_dir/postmaster.pid`, if the file names a live process.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    (pid > 0 && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

/// Whether `data_dir/postmaster.pid` names a live single-user server (its pid written negated).
pub fn single_user_running(data_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else { return false };
    match text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) {
        Some(pid) if pid < 0 => Path::new(&format!("/proc/{}", -pid)).exists(),
        _ => false,
    }
}

/// The state letter and parent pid of `pid`, from `/proc/pid/stat` (`R`, `S`, `T`, `Z`, ...).
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the fields start after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is stopped by a signal or a tracer: it will not act on `pg_ctl stop`.
pub fn is_stopped(pid: i32) -> bool {
    matches!(stat(pid), Some(('T' | 't', _)))
}

/// The pids whose parent is `pid`.
fn children(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&child| stat(child).is_some_and(|(_, ppid)| ppid == pid))
        .collect()
}

/// SIGKILLs the postmaster `pid` and its children, then waits (up to `wait`) for the
/// postmaster to be gone. Returns how many processes were signalled.
pub fn kill_tree(pid: i32, wait: Duration) -> Result<usize, DriverError> {
    let mut victims = children(pid);
    victims.push(pid);
    for &p in &victims {
        // A child may have exited since the listing: that is the outcome wanted.
        match kill(Pid::from_raw(p), Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(DriverError::Program(format!("SIGKILL of pid {p}: {e}"))),
        }
    }
    let deadline = Instant::now() + wait;
    // A killed process is a zombie until its parent reaps it; the postmaster's parent is
    // whoever started it (often init), so "gone" includes "only a zombie is left".
    while stat(pid).is_some_and(|(state, _)| state != 'Z') {
        if Instant::now() > deadline {
            return Err(DriverError::Program(format!(
                "the postmaster (pid {pid}) is still there {} ms after SIGKILL",
                wait.as_millis()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(victims.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn kills_a_stopped_process_and_its_children() {
        // A shell standing in for a postmaster, with two children, all stopped.
        let mut parent = Command::new("sh").args(["-c", "sleep 60 & sleep 60 & wait"]).spawn().unwrap();
        let pid = parent.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while children(pid).len() < 2 {
            assert!(Instant::now() < deadline, "the children did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let kids = children(pid);
        for &p in kids.iter().chain([pid].iter()) {
            kill(Pid::from_raw(p), Signal::SIGSTOP).unwrap();
        }
        while !is_stopped(pid) {
            assert!(Instant::now() < deadline, "the parent did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(kill_tree(pid, Duration::from_secs(5)).unwrap(), 3);
        parent.wait().unwrap();
        for k in kids {
            let deadline = Instant::now() + Duration::from_secs(5);
            // Reparented and reaped by init (or a zombie until then): either way not running.
            while stat(k).is_some_and(|(s, _)| s != 'Z') {
                assert!(Instant::now() < deadline, "child {k} survived");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    #[test]
    fn reads_the_pid_file_and_ignores_a_dead_pid() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
        let me = std::process::id() as i32;
        std::fs::write(dir.path().join("postmaster.pid"), format!("{me}\n/data\n")).unwrap();
        assert_eq!(postmaster_pid(dir.path()), Some(me));
        std::fs::write(dir.path().join("postmaster.pid"), "999999999\n").unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
        std::fs::write(dir.path().join("postmaster.pid"), "garbage").unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
        assert!(!single_user_running(dir.path()));
        std::fs::write(dir.path().join("postmaster.pid"), format!("-{me}\n/data\n")).unwrap();
        assert!(single_user_running(dir.path()), "a negated pid is a single-user server");
        assert_eq!(postmaster_pid(dir.path()), None, "which has no postmaster to kill");
    }
}
