//! Ingest sources: who may send alerts, in which format, with which token. Only the SHA-256 of
//! a token is stored (tokens are long random strings, so a fast digest is the right tool: there
//! is no password to guess). Rotating a source's token keeps the old one valid for a grace
//! period, so senders can be moved to the new token without a gap and without a restart.

use serde::{Deserialize, Serialize};

use super::SourceKind;
use crate::state::{Proposal, Rejection, Role, State};

/// Most tokens one source holds at once (the current one and those in their grace period).
const MAX_TOKENS: usize = 4;

/// A token's digest and how long it stays valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDigest {
    /// SHA-256 of the token, lower-case hex.
    pub sha256: String,
    pub added_ms: u64,
    /// After this it is refused (`None`: the current token).
    pub expires_ms: Option<u64>,
}

/// A configured source of alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestSource {
    /// Its name, recorded on its alerts (e.g. `prometheus`, `wazuh`).
    pub name: String,
    /// The one format it may send (its `/ingest/KIND` path).
    pub kind: SourceKind,
    pub tokens: Vec<TokenDigest>,
    pub created_by: String,
    pub created_ms: u64,
}

impl IngestSource {
    /// Whether `sha256` is one of its tokens valid at `at_ms`.
    pub fn accepts(&self, sha256: &str, at_ms: u64) -> bool {
        self.tokens.iter().any(|t| t.sha256 == sha256 && t.expires_ms.is_none_or(|e| at_ms < e))
    }
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl State {
    /// Records a source, or gives an existing one a new token; its other tokens stay valid for
    /// `grace_ms` more (0: refused at once).
    pub(super) fn put_ingest_source(
        &mut self,
        p: &Proposal,
        (name, kind): (&str, SourceKind),
        sha256: &str,
        grace_ms: u64,
    ) -> Result<String, Rejection> {
        if p.actor.role != Role::Admin {
            return Err(Rejection::NotAllowed(format!("role {} may not configure alert sources", p.actor.role)));
        }
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(Rejection::Invalid(format!("source name `{name}`: 1 to 64 letters, digits, `-` or `_`")));
        }
        if !is_hex_digest(sha256) {
            return Err(Rejection::Invalid("a token digest is 64 lower-case hex digits (SHA-256)".into()));
        }
        if kind == SourceKind::Triad || name == crate::state::links::TRIAD_SOURCE {
            return Err(Rejection::Invalid(
                "`triad` is the controllers' own source (links, assets): no sender may use it".into(),
            ));
        }
        if kind == SourceKind::Syslog {
            return Err(Rejection::Invalid(
                "syslog senders are admitted by address or certificate (the controller's [syslog] config), not tokens"
                    .into(),
            ));
        }
        let token = TokenDigest { sha256: sha256.to_string(), added_ms: p.at_ms, expires_ms: None };
        match self.alerts.sources.get_mut(name) {
            Some(s) if s.kind != kind => Err(Rejection::Conflict(format!(
                "source `{name}` sends {}; delete it first to make it a {kind} source",
                s.kind
            ))),
            Some(s) => {
                let until = p.at_ms.saturating_add(grace_ms);
                for t in &mut s.tokens {
                    t.expires_ms = Some(t.expires_ms.map_or(until, |e| e.min(until)));
                }
                s.tokens.retain(|t| t.expires_ms.is_none_or(|e| e > p.at_ms));
                s.tokens.push(token);
                while s.tokens.len() > MAX_TOKENS {
                    s.tokens.remove(0);
                }
                Ok(format!("source {name}: new token; the old ones expire in {grace_ms} ms"))
            }
            None => {
                let source = IngestSource {
                    name: name.to_string(),
                    kind,
                    tokens: vec![token],
                    created_by: p.actor.name.clone(),
                    created_ms: p.at_ms,
                };
                self.alerts.sources.insert(name.to_string(), source);
                Ok(format!("source {name} ({kind}) created"))
            }
        }
    }

    pub(super) fn delete_ingest_source(&mut self, p: &Proposal, name: &str) -> Result<String, Rejection> {
        if p.actor.role != Role::Admin {
            return Err(Rejection::NotAllowed(format!("role {} may not configure alert sources", p.actor.role)));
        }
        match self.alerts.sources.remove(name) {
            Some(_) => Ok(format!("source {name} deleted; its tokens are refused from now")),
            None => Err(Rejection::NotFound(format!("no alert source named `{name}`"))),
        }
    }

    /// The source a token digest belongs to at `at_ms`, if any.
    pub fn source_for_token(&self, sha256: &str, at_ms: u64) -> Option<&IngestSource> {
        self.alerts.sources.values().find(|s| s.accepts(sha256, at_ms))
    }
}
