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
    let (name, ou) = identity_of(der.as_ref()).map_err(Status::unauthenticated)?;
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
