//! Running a service's pre- or post-hook: a program (no shell) inside the agent's hooks
//! directory, with the role change in its environment, killed when it outlives its time.
//!
//! Only programs inside `hooks.dir` run: a service definition is data any `noc` or `admin`
//! account may change through the API, and it must not become a way to run any program on every
//! host as the agent's user. The path is resolved (symbolic links followed) before it is compared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::ActionError;

/// The most of a hook's output kept for the workflow's record (its end, where errors are).
const OUTPUT_TAIL: usize = 400;

/// The time a hook gets when the command gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A hook to run and what it ran with.
#[derive(Debug, Clone)]
pub struct Hook {
    pub path: String,
    pub timeout: Duration,
    pub env: HashMap<String, String>,
}

impl Hook {
    /// From a `RunHook` command.
    pub fn from_command(h: &triad_proto::v1::RunHook) -> Self {
        let timeout = match h.timeout_ms {
            0 => DEFAULT_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let mut env = h.env.clone();
        env.insert("TRIAD_SERVICE".into(), h.service.clone());
        env.insert("TRIAD_PHASE".into(), h.phase.clone());
        Hook { path: h.path.clone(), timeout, env }
    }
}

/// The program `path` names, when it lies inside `dir` (both resolved).
pub fn admitted(dir: &Path, path: &str) -> Result<PathBuf, ActionError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(ActionError::Refused(format!("hook `{path}` is not an absolute path")));
    }
    let dir = dir
        .canonicalize()
        .map_err(|e| ActionError::Refused(format!("the hooks directory {} cannot be read: {e}", dir.display())))?;
    let resolved = p.canonicalize().map_err(|e| ActionError::Refused(format!("hook `{path}` cannot be found: {e}")))?;
    if !resolved.starts_with(&dir) {
        return Err(ActionError::Refused(format!(
            "hook `{path}` is outside this agent's hooks directory {} (agent config `hooks.dir`)",
            dir.display()
        )));
    }
    Ok(resolved)
}

/// Runs `hook` (admitted from `dir`); on success, what it printed last, with its time.
pub async fn run(dir: &Path, hook: &Hook) -> Result<String, ActionError> {
    let program = admitted(dir, &hook.path)?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&program)
        .envs(&hook.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ActionError::Hook(format!("hook {} could not start: {e}", hook.path)))?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    // Both pipes at once: a hook that fills one while the other is read would never finish.
    let read_all = async {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let read_out = async {
            if let Some(s) = out.as_mut() {
                let _ = s.read_to_end(&mut o).await;
            }
        };
        let read_err = async {
            if let Some(s) = err.as_mut() {
                let _ = s.read_to_end(&mut e).await;
            }
        };
        tokio::join!(read_out, read_err);
        (o, e)
    };
    let waited = tokio::time::timeout(hook.timeout, async {
        let (o, e) = read_all.await;
        (child.wait().await, o, e)
    })
    .await;
    let ms = started.elapsed().as_millis();
    let (status, o, e) = match waited {
        Ok(done) => done,
        Err(_) => {
            // `kill_on_drop` kills it; say so rather than leave it to the drop.
            let _ = child.start_kill();
            return Err(ActionError::Hook(format!(
                "hook {} did not finish within {} ms and was killed",
                hook.path,
                hook.timeout.as_millis()
            )));
        }
    };
    let status = status.map_err(|e| ActionError::Hook(format!("hook {}: {e}", hook.path)))?;
    let said = tail(&e).or_else(|| tail(&o)).unwrap_or_default();
    if status.success() {
        Ok(format!("ran in {ms} ms{}", if said.is_empty() { String::new() } else { format!(": {said}") }))
    } else {
        Err(ActionError::Hook(format!("hook {} failed ({status}) after {ms} ms: {said}", hook.path)))
    }
}

/// The last line-ish part of `bytes`, at most [`OUTPUT_TAIL`] bytes, as text.
fn tail(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let start = text.len().saturating_sub(OUTPUT_TAIL);
    let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    Some(text[start..].replace('\n', " | "))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write the script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.display().to_string()
    }

    fn hook(path: String, timeout_ms: u64) -> Hook {
        let env = HashMap::from([("TRIAD_CLUSTER".to_string(), "customs".to_string())]);
        Hook { path, timeout: Duration::from_millis(timeout_ms), env }
    }

    #[tokio::test]
    async fn a_hook_runs_with_its_environment_and_its_failure_is_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = script(dir.path(), "ok", "echo \"moved $TRIAD_CLUSTER\"");
        assert_eq!(run(dir.path(), &hook(ok, 5_000)).await.ok().map(|s| s.ends_with(": moved customs")), Some(true));
        let bad = script(dir.path(), "bad", "echo 'cannot reach the app' >&2; exit 3");
        let e = run(dir.path(), &hook(bad, 5_000)).await.expect_err("exit 3 is a failure").to_string();
        assert!(e.contains("exit status: 3") && e.contains("cannot reach the app"), "{e}");
    }

    #[tokio::test]
    async fn a_hook_that_outlives_its_time_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let slow = script(dir.path(), "slow", "sleep 30");
        let t = Instant::now();
        let e = run(dir.path(), &hook(slow, 200)).await.expect_err("too slow").to_string();
        assert!(e.contains("did not finish within 200 ms"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10), "not waited out: {:?}", t.elapsed());
    }

    #[tokio::test]
    async fn only_programs_inside_the_hooks_directory_run() {
        let hooks = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let outside = script(elsewhere.path(), "x", "exit 0");
        let e = run(hooks.path(), &hook(outside.clone(), 1_000)).await.expect_err("outside").to_string();
        assert!(e.contains("outside this agent's hooks directory"), "{e}");
        // A symbolic link inside that points outside is resolved first.
        let link = hooks.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).expect("symlink");
        let e = run(hooks.path(), &hook(link.display().to_string(), 1_000)).await.expect_err("a link").to_string();
        assert!(e.contains("outside this agent's hooks directory"), "{e}");
        let e = run(hooks.path(), &hook("relative/x".into(), 1_000)).await.expect_err("relative").to_string();
        assert!(e.contains("not an absolute path"), "{e}");
    }
}
