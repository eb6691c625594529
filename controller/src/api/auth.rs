//! Who is calling: the identity (certificate common name) and role (certificate OU, overridden by
//! the replicated `users` table) of every gRPC caller, and the check that the role may make the call.
//!
//! TLS has already refused peers without a certificate from the deployment's CA; here we refuse
//! callers whose certificate lacks a usable identity, or whose role does not allow the call.

use tonic::{Request, Status};

use crate::raft::SharedState;
use crate::state::{Actor, Role};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub origin: String,
}

impl Caller {
    /// The caller as recorded in proposals and the audit log.
    pub fn actor(&self) -> Actor {
        Actor { name: self.name.clone(), role: self.role, origin: self.origin.clone() }
    }
}

pub use triad_proto::tls::identity_of;

/// Authenticates the caller of `req`.
pub fn caller<T>(req: &Request<T>, state: &SharedState) -> Result<Caller, Status> {
    let origin = req.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
    let certs = req.peer_certs().ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let der = certs.first().ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let (name, ou) = identity_of(der.as_ref()).map_err(|e| Status::unauthenticated(e.to_string()))?;
    let cert_role = Role::parse(&ou)
        .filter(|r| *r != Role::System && *r != Role::Disabled)
        .ok_or_else(|| Status::unauthenticated(format!("certificate role `{ou}` is not one of {}", Role::NAMES)))?;
    let role = state.read().expect("state lock poisoned").state.effective_role(&name, cert_role);
    if role == Role::Disabled {
        return Err(Status::permission_denied(format!("identity `{name}` is disabled")));
    }
    Ok(Caller { name, role, origin })
}

/// Refuses the call unless the caller's role is among `allowed`.
pub fn require(caller: &Caller, allowed: &[Role], what: &str) -> Result<(), Status> {
    if allowed.contains(&caller.role) {
        Ok(())
    } else {
        let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        Err(Status::permission_denied(format!(
            "`{}` has role `{}`; {what} needs one of: {}",
            caller.name,
            caller.role,
            names.join(", ")
        )))
    }
}

/// Roles that may read status.
pub const READERS: &[Role] = &[Role::Admin, Role::Noc, Role::Soc, Role::Auditor, Role::Peer];

/// How many refusals of one identity are recorded per minute; more are only counted, so that a
/// certificate calling in a loop cannot fill the replicated log.
const REFUSALS_RECORDED_PER_MINUTE: u32 = 20;

/// Records refused calls in the audit log, at most [`REFUSALS_RECORDED_PER_MINUTE`] per identity.
#[derive(Default)]
pub struct RefusalAudit {
    windows: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u32)>>,
}

impl RefusalAudit {
    /// Whether a refusal of `name` at `now` is recorded (false: over its budget this minute).
    pub fn admit(&self, name: &str, now: std::time::Instant) -> bool {
        let mut w = self.windows.lock().expect("refusal lock poisoned");
        // Old windows go, so the map stays as small as the set of recent callers.
        w.retain(|_, (start, _)| now.saturating_duration_since(*start) < std::time::Duration::from_secs(60));
        let (_, n) = w.entry(name.to_string()).or_insert((now, 0));
        *n += 1;
        *n <= REFUSALS_RECORDED_PER_MINUTE
    }
}

/// Checks `caller` against `allowed` like [`require`]; a refusal is also proposed to the audit
/// log (`Command::RecordRefusal`), without waiting for it: the caller gets its answer at once.
pub fn require_recorded(
    ctx: &std::sync::Arc<crate::context::Ctx>,
    caller: &Caller,
    allowed: &[Role],
    what: &str,
) -> Result<(), Status> {
    let Err(refusal) = require(caller, allowed, what) else { return Ok(()) };
    if ctx.refusals.admit(&caller.name, std::time::Instant::now()) {
        let proposal = ctx.proposal(
            caller.actor(),
            crate::state::Command::RecordRefusal { what: what.to_string(), why: refusal.message().to_string() },
        );
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = ctx.proposer.propose(proposal).await {
                tracing::warn!("a refused call could not be recorded in the audit log: {e}");
            }
        });
    } else {
        tracing::warn!(caller = %caller.name, "refused call not recorded: over the audit budget this minute");
    }
    Err(refusal)
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    #[test]
    fn refusals_are_recorded_up_to_a_budget_per_identity_and_minute() {
        let r = RefusalAudit::default();
        let t0 = std::time::Instant::now();
        for _ in 0..REFUSALS_RECORDED_PER_MINUTE {
            assert!(r.admit("mallory", t0));
        }
        assert!(!r.admit("mallory", t0), "over budget");
        assert!(r.admit("alice", t0), "another identity has its own budget");
        assert!(r.admit("mallory", t0 + std::time::Duration::from_secs(61)), "a new minute");
    }
}
