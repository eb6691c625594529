//! After a break-glass restart (DESIGN.md point 10), the controller that is now the only voter
//! records the order it carried out in the replicated log, once, as soon as it leads: that cuts
//! the other controllers off, raises the epoch floor and approves the failover the order asks for,
//! which `manual::tick` then carries out (see `state::break_glass`).

use std::sync::Arc;

use crate::context::Ctx;
use crate::raft::break_glass::{load_order, save_order};
use crate::state::{Actor, BreakGlassState, Command, Response};

const KEY: &str = "break-glass";

/// The brain's step; `settled` becomes true once there is nothing (more) to record.
pub fn tick(ctx: &Arc<Ctx>, settled: &mut bool) {
    if *settled {
        return;
    }
    let mut order = match load_order(&ctx.db) {
        Ok(Some(o)) if o.state == BreakGlassState::Reseeded => o,
        Ok(_) => {
            *settled = true;
            return;
        }
        Err(e) => {
            tracing::error!("break-glass: cannot read the order in this controller's store: {e}");
            *settled = true;
            return;
        }
    };
    let c = ctx.clone();
    super::spawn_exclusive(ctx, KEY.into(), async move {
        let ctx = c;
        let cmd = Command::RecordBreakGlass(order.clone());
        match ctx.proposer.propose(ctx.proposal(Actor::system(ctx.id), cmd)).await.map(|c| c.response) {
            Ok(Response::Ok(msg)) => {
                tracing::warn!("{msg}");
                order.state = BreakGlassState::Recorded;
            }
            // A refusal will not change by asking again; keep why, for the operator.
            Ok(other) => {
                tracing::error!(order = order.id, "break-glass order refused by the state: {other:?}");
                order.state = BreakGlassState::Refused(format!("{other:?}"));
            }
            Err(e) => tracing::warn!(order = order.id, "recording the break-glass order (will retry): {e}"),
        }
        if order.state != BreakGlassState::Reseeded {
            if let Err(e) = save_order(&ctx.db, &order) {
                tracing::error!(order = order.id, "saving the break-glass order's state: {e}");
            }
        }
    });
}
