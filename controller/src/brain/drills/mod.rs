//! Drills (issue 21): a planned, measured rehearsal of moving the customs database. The
//! pre-checks before one starts (`precheck.rs`: the Data Guard broker's `VALIDATE DATABASE` for a
//! three-site cluster), what a run does next (`next.rs`), the run itself (`run.rs`), a dr-test's isolated copy
//! (`copy.rs`) and a failover rehearsal's steps (`rehearsal.rs`).

pub mod copy;
pub mod next;
pub mod precheck;
pub mod rehearsal;
pub mod run;

pub use crate::state::drills::{Check, CheckName};
pub use precheck::{precheck, Controllers, Override, MAX_VOTER_LAG};
pub use run::Started;

use crate::context::Ctx;

/// The controllers as this one sees them, for [`precheck`]: whether it leads with a quorum's
/// fresh acknowledgement, and which voters trail its log.
pub fn controllers(ctx: &Ctx) -> Controllers {
    let view = super::continuity_view(ctx);
    let last = ctx.raft.metrics().borrow().last_log_index.unwrap_or(0);
    let lagging = view
        .voters
        .iter()
        .copied()
        .filter(|v| *v != view.id && view.matched.get(v).is_none_or(|i| last.saturating_sub(*i) > MAX_VOTER_LAG))
        .collect();
    Controllers {
        leader_has_quorum: super::continuity::Continuity::leader_has_quorum(&view),
        voters: view.voters.clone(),
        lagging,
    }
}
