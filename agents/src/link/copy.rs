//! A dr-test's copy commands (issue 21: make and destroy an isolated copy of this standby). They
//! run beside the database's queue, since a base backup can take minutes and a promote must never
//! wait behind one, and they pass no epoch gate: they change nothing of the member itself. They
//! run one at a time, in arrival order, so that a destroy a new leader sends waits for the make
//! its predecessor sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use triad_proto::v1::{agent_command::Kind, agent_message, AgentCommand, AgentMessage, CommandResult, CopyReport};

use crate::drivers::DatabaseDriver;

/// One copy command at a time on this agent.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a make may take when the command says nothing.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Whether `cmd` is a copy command (else the database's queue or a side lane takes it).
pub fn is_copy(cmd: &AgentCommand) -> bool {
    matches!(cmd.kind, Some(Kind::MakeCopy(_) | Kind::DestroyCopy(_)))
}

/// Runs `cmd` on a task of its own and answers on `reply`.
pub fn spawn(driver: Option<Arc<dyn DatabaseDriver>>, cmd: AgentCommand, reply: mpsc::Sender<AgentMessage>) {
    tokio::spawn(async move {
        let _one = ONE_AT_A_TIME.lock().await;
        let started = Instant::now();
        let result = run(driver, &cmd, started).await;
        let result = match result {
            Ok((detail, copy)) => CommandResult { id: cmd.id, ok: true, detail, copy, ..Default::default() },
            Err(why) => CommandResult { id: cmd.id, ok: false, detail: why, ..Default::default() },
        };
        match result.ok {
            true => tracing::info!(
                id = cmd.id,
                ms = started.elapsed().as_millis() as u64,
                "copy command done: {}",
                result.detail
            ),
            false => tracing::warn!(id = cmd.id, "copy command failed: {}", result.detail),
        }
        let _ = reply.send(AgentMessage { msg: Some(agent_message::Msg::Result(result)) }).await;
    });
}

async fn run(
    driver: Option<Arc<dyn DatabaseDriver>>,
    cmd: &AgentCommand,
    started: Instant,
) -> Result<(String, Option<CopyReport>), String> {
    let driver = driver.ok_or("this agent has no database")?;
    match &cmd.kind {
        Some(Kind::MakeCopy(m)) => {
            let port = u16::try_from(m.port).map_err(|_| format!("port {} is not a port", m.port))?;
            let timeout = match m.timeout_ms {
                0 => DEFAULT_TIMEOUT,
                ms => Duration::from_millis(u64::from(ms)),
            };
            let made = driver.make_copy(&m.name, port, started + timeout).await.map_err(|e| e.to_string())?;
            let report = CopyReport {
                endpoint: made.endpoint,
                ready_ms: started.elapsed().as_millis() as u64,
                copied_at_ms: made.copied_at_ms,
                canary: made.canary,
                detail: made.detail.clone(),
            };
            Ok((made.detail, Some(report)))
        }
        Some(Kind::DestroyCopy(d)) => {
            driver.destroy_copy(&d.name).await.map(|said| (said, None)).map_err(|e| e.to_string())
        }
        _ => Err("not a copy command".into()),
    }
}
