//! HAProxy's runtime API (the stats socket at `level admin`): setting a server's administrative
//! state and forcing its health, so that a role change reaches the balancer at once instead of
//! after its checks notice (`inter 3s fall 3 rise 2` is about six seconds to notice a new
//! primary). One connection per command, in the non-interactive mode: HAProxy answers and closes,
//! and an answer with any text is that command's error.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use triad_proto::v1::{BalancerServer, SetBalancer};

use super::ActionError;

/// How long one command may take on the socket.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The runtime API commands for `s`, in the order they run: the health first (so a server put
/// back is up at once), then the state, then closing its sessions.
pub fn commands(s: &BalancerServer) -> Result<Vec<String>, ActionError> {
    for (what, name) in [("backend", &s.backend), ("server", &s.server)] {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if !ok {
            return Err(ActionError::Refused(format!("{what} name `{name}`: letters, digits, `-_.:` only")));
        }
    }
    let target = format!("{}/{}", s.backend, s.server);
    let mut out = Vec::new();
    match s.health.as_str() {
        "" => {}
        "up" | "down" => out.push(format!("set server {target} health {}", s.health)),
        other => return Err(ActionError::Refused(format!("health `{other}`: `up` or `down`"))),
    }
    match s.state.as_str() {
        "" => {}
        "ready" | "maint" | "drain" => out.push(format!("set server {target} state {}", s.state)),
        other => return Err(ActionError::Refused(format!("state `{other}`: `ready`, `maint` or `drain`"))),
    }
    if s.shutdown_sessions {
        out.push(format!("shutdown sessions server {target}"));
    }
    Ok(out)
}

/// Sends one command on a fresh connection and reads the answer: empty is success.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(mut conn: S, line: &str) -> std::io::Result<String> {
    conn.write_all(format!("{line}\n").as_bytes()).await?;
    conn.flush().await?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await?;
    Ok(answer.trim().to_string())
}

/// Sends `line` to the runtime API at `socket` (a unix socket path, or HOST:PORT).
async fn command(socket: &str, line: &str) -> Result<(), ActionError> {
    let err = |msg: String| ActionError::Balancer { socket: socket.to_string(), msg };
    let answer = tokio::time::timeout(COMMAND_TIMEOUT, async {
        if socket.starts_with('/') {
            send(tokio::net::UnixStream::connect(socket).await?, line).await
        } else {
            send(tokio::net::TcpStream::connect(socket).await?, line).await
        }
    })
    .await
    .map_err(|_| err(format!("`{line}`: no answer within {} ms", COMMAND_TIMEOUT.as_millis())))?
    .map_err(|e| err(format!("`{line}`: {e}")))?;
    if answer.is_empty() {
        Ok(())
    } else {
        Err(err(format!("`{line}`: {answer}")))
    }
}

/// Applies `set` in order; stops at the first error. Returns what was done.
pub async fn apply(set: &SetBalancer) -> Result<String, ActionError> {
    if set.socket.is_empty() {
        return Err(ActionError::Refused("no runtime API socket given".into()));
    }
    let lines = set.servers.iter().map(commands).collect::<Result<Vec<_>, _>>()?;
    let mut done = Vec::new();
    for line in lines.into_iter().flatten() {
        command(&set.socket, &line).await?;
        done.push(line);
    }
    Ok(done.join("; "))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::AsyncBufReadExt;

    use super::*;

    fn server(state: &str, health: &str, shutdown: bool) -> BalancerServer {
        BalancerServer {
            backend: "customs-rw".into(),
            server: "ndc".into(),
            state: state.into(),
            health: health.into(),
            shutdown_sessions: shutdown,
        }
    }

    #[test]
    fn the_commands_are_built_in_order_and_bad_names_are_refused() {
        assert_eq!(
            commands(&server("ready", "up", false)).ok(),
            Some(vec!["set server customs-rw/ndc health up".into(), "set server customs-rw/ndc state ready".into()])
        );
        assert_eq!(
            commands(&server("maint", "", true)).ok(),
            Some(vec![
                "set server customs-rw/ndc state maint".into(),
                "shutdown sessions server customs-rw/ndc".into()
            ])
        );
        let mut bad = server("ready", "", false);
        bad.server = "ndc\nshutdown frontend x".into();
        assert!(commands(&bad).unwrap_err().to_string().contains("server name"));
        assert!(commands(&server("up", "", false)).unwrap_err().to_string().contains("state `up`"));
    }

    /// A stand-in for the runtime API that records each command and answers an error for one
    /// naming server `dr` (HAProxy's own text). The real HAProxy is in `tests/tests/haproxy.rs`.
    async fn fake_api(dir: &std::path::Path) -> (String, Arc<Mutex<Vec<String>>>) {
        let path = dir.join("admin.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (r, mut w) = conn.into_split();
                let mut line = String::new();
                let _ = tokio::io::BufReader::new(r).read_line(&mut line).await;
                let line = line.trim().to_string();
                let answer = if line.contains("/dr ") { "No such server.\n" } else { "\n" };
                log.lock().expect("log").push(line);
                let _ = w.write_all(answer.as_bytes()).await;
            }
        });
        (path.display().to_string(), seen)
    }

    #[tokio::test]
    async fn each_command_goes_on_its_own_connection_and_an_answer_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (socket, seen) = fake_api(dir.path()).await;
        let set = SetBalancer { socket: socket.clone(), servers: vec![server("ready", "up", false)] };
        let done = apply(&set).await.expect("applied");
        assert_eq!(done, "set server customs-rw/ndc health up; set server customs-rw/ndc state ready");
        assert_eq!(seen.lock().expect("log").len(), 2);
        let mut dr = server("maint", "", false);
        dr.server = "dr".into();
        let e = apply(&SetBalancer { socket, servers: vec![dr] }).await.expect_err("no such server").to_string();
        assert!(e.contains("No such server."), "{e}");
        let gone = SetBalancer { socket: dir.path().join("none").display().to_string(), servers: vec![] };
        assert!(apply(&gone).await.is_ok(), "nothing to send: nothing to fail");
        let gone = SetBalancer {
            socket: dir.path().join("none").display().to_string(),
            servers: vec![server("ready", "", false)],
        };
        assert!(apply(&gone).await.is_err(), "a socket that is not there fails");
    }
}
