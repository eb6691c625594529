//! The write outage of a role change as the canary sees it: from the last canary row the old
//! primary wrote to the first one the new primary writes, both by the time the database recorded
//! for the row. The last old row is the newest any member's report shows before the new epoch
//! (the new primary, synchronous, holds everything the old one acknowledged); reports come every
//! heartbeat, so the measure can overstate by up to one.

use std::time::{Duration, Instant};

use triad_proto::v1::DbStatus;

use crate::context::Ctx;

/// A canary row as a member read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    pub epoch: u64,
    pub origin: String,
    /// When it was written, ms since the Unix epoch: the observation's wall clock less the row's
    /// age as the reading server computed it.
    pub written_ms: u64,
}

/// Records what workflow `wf`'s canary measured: the write outage, and when writes resumed. A
/// measurement: one that cannot be committed (a leader change at that moment) is logged and the
/// role change goes on, never failed for it.
pub async fn record(ctx: &Ctx, actor: &crate::state::Actor, wf: u64, measure: &Measure) {
    if measure.outage_ms.is_none() && measure.resumed_ms.is_none() {
        return;
    }
    let cmd = crate::state::Command::RecordCanaryMeasure {
        workflow: wf,
        outage_ms: measure.outage_ms,
        resumed_ms: measure.resumed_ms,
    };
    if let Err(e) = super::workflow::propose(ctx, actor, cmd).await {
        tracing::warn!(workflow = wf, ?measure.outage_ms, "the canary's measure was not recorded: {e}");
    }
}

/// The canary in a report, if the member read one.
pub fn read(d: &DbStatus) -> Option<Canary> {
    (d.canary_seq > 0 && d.canary_age_seconds >= 0.0).then(|| Canary {
        epoch: d.canary_epoch,
        origin: d.canary_origin.clone(),
        written_ms: d.observed_ms.saturating_sub((d.canary_age_seconds * 1000.0) as u64),
    })
}

/// The newest canary in `agent`'s latest report.
pub fn newest(ctx: &Ctx, agent: &str) -> Option<Canary> {
    ctx.obs.snapshot().get(agent)?.db.as_ref().and_then(read)
}

/// Waits up to `within` for `agent`'s member to read a canary that `origin` wrote at `epoch`.
pub async fn first_at(ctx: &Ctx, agent: &str, epoch: u64, origin: &str, within: Duration) -> Option<Canary> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(c) = newest(ctx, agent).filter(|c| c.epoch == epoch && c.origin == origin) {
            return Some(c);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the canary saw of a role change: the `canary` step's note, and the outage when measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    pub note: String,
    pub outage_ms: Option<u64>,
    /// When the new primary's first canary row was written (ms since the Unix epoch).
    pub resumed_ms: Option<u64>,
}

/// The write outage of a role change to `to` at `epoch`, `last` being the old primary's last
/// canary: waits (at most 10 s) for the new primary's first. Not when its first commits wait for
/// standbys (`waits_for`, strict mode): none can be written before one of them follows, which is
/// later in the same workflow or when a lost site returns.
pub async fn measure(
    ctx: &Ctx,
    agent: &str,
    to: &str,
    epoch: u64,
    last: Option<&Canary>,
    waits_for: &[String],
) -> Measure {
    if !waits_for.is_empty() {
        let note =
            format!("not measured: {to}'s first commit waits for {} (strict synchronous mode)", waits_for.join(", "));
        return Measure { note, outage_ms: None, resumed_ms: None };
    }
    let first = first_at(ctx, agent, epoch, to, Duration::from_secs(10)).await;
    Measure {
        note: outage_note(last, first.as_ref(), to, epoch),
        outage_ms: outage_ms(last, first.as_ref()),
        resumed_ms: first.as_ref().map(|f| f.written_ms),
    }
}

/// From the old primary's last canary to the new one's first, when both were read.
pub fn outage_ms(last: Option<&Canary>, first: Option<&Canary>) -> Option<u64> {
    Some(first?.written_ms.saturating_sub(last?.written_ms))
}

/// The history's note: the outage from `last` (the old primary's, read before the promote) to
/// `first` (the new primary's at `epoch`). "write outage about N ms" is what the benchmarks read.
pub fn outage_note(last: Option<&Canary>, first: Option<&Canary>, to: &str, epoch: u64) -> String {
    match (last, first) {
        (Some(l), Some(f)) => format!(
            "write outage about {} ms: last canary of {} (epoch {}) to the first of {to} (epoch {epoch})",
            f.written_ms.saturating_sub(l.written_ms),
            l.origin,
            l.epoch
        ),
        (None, Some(_)) => format!("first canary of {to} at epoch {epoch}; none read before it: outage unknown"),
        (_, None) => format!("no canary of {to} at epoch {epoch} within 10 s: outage unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64, epoch: u64, origin: &str, observed_ms: u64, age: f64) -> DbStatus {
        DbStatus {
            canary_seq: seq,
            canary_epoch: epoch,
            canary_origin: origin.into(),
            canary_age_seconds: age,
            observed_ms,
            ..Default::default()
        }
    }

    #[test]
    fn the_outage_runs_between_the_write_times_the_database_recorded() {
        // dc's last row, read by ndc 2.5 s after it was written; ndc's first, read 0.1 s after.
        let last = read(&report(900, 1, "dc", 10_000, 2.5)).unwrap();
        let first = read(&report(1, 2, "ndc", 13_000, 0.1)).unwrap();
        assert_eq!(last.written_ms, 7_500);
        assert_eq!(first.written_ms, 12_900);
        let note = outage_note(Some(&last), Some(&first), "ndc", 2);
        assert!(note.starts_with("write outage about 5400 ms: last canary of dc (epoch 1)"), "{note}");
        assert_eq!(outage_ms(Some(&last), Some(&first)), Some(5_400));
    }

    #[test]
    fn no_canary_read_is_no_measure() {
        assert_eq!(read(&report(0, 0, "", 10_000, -1.0)), None);
        assert!(outage_note(None, None, "ndc", 2).contains("outage unknown"));
        let first = read(&report(1, 2, "ndc", 13_000, 0.1));
        assert!(outage_note(None, first.as_ref(), "ndc", 2).contains("outage unknown"));
        assert_eq!(outage_ms(None, first.as_ref()), None);
    }
}
