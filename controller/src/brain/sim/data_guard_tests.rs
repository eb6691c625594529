//! The brain against members that speak as an Oracle Data Guard driver would
//! ([`Flavour::DataGuard`], after docs/oracle-data-guard.md): positions are SCNs beyond 2^32,
//! members are reached by connect descriptors and known by `DB_UNIQUE_NAME`, no lag is in
//! bytes, the display words are Data Guard's, and the primary stops waiting for a synchronous
//! standby by itself. The workflows are the ones PostgreSQL's words drive, unchanged: the
//! controller holds no PostgreSQL-only assumption (issue 20, item 6; B1-B4 and B6 of the
//! document's audit).

use std::time::Duration;

use super::{names, Flavour, SimCluster, CLUSTER};
use crate::brain::{Brain, Requests};
use crate::state::{Actor, Role};

fn noc() -> Actor {
    Actor { name: "noc-1".into(), role: Role::Noc, origin: "test".into() }
}

async fn oracle() -> SimCluster {
    SimCluster::start_flavoured(Flavour::DataGuard, |cfg| cfg.failover.min_interval_ms = 0).await
}

/// B2-B4: the precheck judges the target by Triad's words and by seconds (a byte lag of -1, not
/// measured, used to refuse every switchover), and the history writes the final position as an
/// SCN, not as a PostgreSQL LSN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_and_back_with_scn_positions_and_no_byte_lags() {
    let sim = oracle().await;
    let brain = Brain::new(sim.ctx.clone());
    let there = brain.switchover(noc(), CLUSTER.into(), "ndc".into()).await.expect("the switchover to ndc");
    let last = there.summary.lines().last().unwrap_or_default();
    assert!(last.starts_with("completed in "), "{}", there.summary);
    assert!(there.summary.contains("final position SCN 123"), "the position as an SCN: {}", there.summary);
    let c = sim.cluster();
    assert_eq!((c.epoch, c.primary.as_deref()), (2, Some("ndc")));
    assert_eq!(names(&c.synchronous), ["dc"], "dc confirmed synchronous by Triad's words");
    let ndc = sim.member("ndc");
    assert!(sim.member("dc").streams_from(&ndc) && sim.member("dr").streams_from(&ndc));

    let back = brain.switchover(noc(), CLUSTER.into(), "dc".into()).await.expect("the switchover back");
    assert!(back.summary.lines().last().unwrap_or_default().starts_with("completed in "), "{}", back.summary);
    assert_eq!(sim.writable(), ["dc"]);
    sim.assert_never_two_writable();
}

/// B1: a primary that runs but whose agent lost the controllers is not failed over, because its
/// standbys still stream from it, as their `DB_UNIQUE_NAME`s say. Before, the controller parsed
/// a standby's upstream as a libpq string; a connect descriptor did not parse, every standby
/// looked astray, and dc was failed over (after its lease ran out: one writer, but an outage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_whose_standbys_stream_from_it_by_name_is_not_failed_over() {
    let sim = oracle().await;
    let c = sim.cluster();
    assert_eq!(c.members["dc"].endpoint_id, "CUSTOMS_DC", "dc's identity recorded as its agent reports it");
    sim.set("dc", |m| m.linked = false);
    // Well past the time the detector takes to judge a silent primary (600 ms, then a failover
    // to a synchronous standby within a second or two): a deadline, not a wait for a condition,
    // because what is checked is that nothing happens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < deadline {
        let c = sim.cluster();
        assert_eq!((c.epoch, c.primary.as_deref()), (1, Some("dc")), "failed over: {:#?}", sim.outcomes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sim.writable(), ["dc"]);
}

/// A lost primary fails over to the standby its last report showed it waiting for, and the other
/// standby is pointed at the new primary by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_primary_fails_over_to_the_standby_it_waited_for() {
    let sim = oracle().await;
    sim.set("dc", |m| (m.running, m.linked) = (false, false));
    sim.wait_until("ndc promoted at epoch 2, dr following it", Duration::from_secs(30), |c, w| {
        c.epoch == 2
            && c.primary.as_deref() == Some("ndc")
            && c.workflow.is_none()
            && w.members["ndc"].writable()
            && w.members["dr"].streams_from(&w.members["ndc"])
    })
    .await;
    let outcomes = sim.outcomes();
    assert!(outcomes.iter().any(|o| o.starts_with("failover: completed")), "{outcomes:#?}");
    sim.assert_never_two_writable();
}

/// B6: in Maximum Availability the primary stops waiting for a slow standby by itself, and from
/// then on acknowledges commits that standby lacks. Triad drops it from the synchronous set at
/// the first report that says so, and does not fail over to it when the primary is lost next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_the_primary_stopped_waiting_for_is_dropped_and_not_failed_over_to() {
    let sim = oracle().await;
    sim.set("ndc", |m| m.lapsed = true);
    sim.wait_until("ndc dropped from the synchronous set", Duration::from_secs(10), |c, _| c.synchronous.is_empty())
        .await;
    sim.set("dc", |m| (m.running, m.linked) = (false, false));
    sim.wait_until("the primary judged lost and not failed over", Duration::from_secs(10), |c, _| {
        c.primary_lost() && c.failover_blocked.contains("no synchronous standby")
    })
    .await;
    let c = sim.cluster();
    assert_eq!((c.epoch, c.primary.as_deref()), (1, Some("dc")), "{:#?}", sim.outcomes());
    assert!(sim.writable().is_empty());
}

/// B1 in the continuous convergence: a standby left streaming from the old primary is repointed,
/// compared by name; once it follows, it is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_astray_is_repointed_by_name() {
    let sim = oracle().await;
    sim.set("dr", |m| m.linked = false);
    let outcome =
        Brain::new(sim.ctx.clone()).switchover(noc(), CLUSTER.into(), "ndc".into()).await.expect("switchover");
    assert!(outcome.summary.contains("dr did not follow ndc"), "{}", outcome.summary);
    sim.set("dr", |m| m.linked = true);
    sim.wait_until("dr streams from ndc, and nothing runs", Duration::from_secs(30), |c, w| {
        w.members["dr"].streams_from(&w.members["ndc"]) && c.workflow.is_none()
    })
    .await;
    let follows: Vec<String> = sim.outcomes().into_iter().filter(|o| o.starts_with("follow:")).collect();
    assert_eq!(follows.len(), 1, "one follow, then left alone: {:#?}", sim.outcomes());
    assert!(follows[0].starts_with("follow: completed: dr follows ndc"), "{follows:?}");
}

/// B7: a former primary its driver cannot rejoin in place (no flashback log reaches back far
/// enough) ends its rejoin at once with an alert, is left alone while an operator re-creates it,
/// and comes back through the ordinary rejoin once it is a standby again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_needs_re_creating_is_handed_to_an_operator_and_taken_back_after() {
    let sim = oracle().await;
    sim.set("dc", |m| (m.running, m.linked) = (false, false));
    sim.wait_until("ndc promoted", Duration::from_secs(30), |c, w| {
        c.epoch == 2 && c.workflow.is_none() && w.members["ndc"].writable()
    })
    .await;
    sim.set("dc", |m| (m.needs_recreation, m.linked) = (true, true));
    sim.wait_until("dc's rejoin ended: needs re-creation", Duration::from_secs(30), |_, _| {
        sim.outcomes().iter().any(|o| o.starts_with("rejoin: failed: needs re-creation"))
    })
    .await;
    let alert = {
        let g = sim.ctx.state.read().expect("state lock");
        g.state.alerts.alerts.values().find(|a| a.title == "dc of customs must be re-created as a standby").cloned()
    };
    assert!(alert.is_some(), "the NOC is told");
    // The operator re-creates dc as a standby (RMAN); it is stopped, configured as a standby.
    sim.set("dc", |m| (m.needs_recreation, m.role) = (false, super::SimRole::Standby));
    sim.wait_until("dc rejoined as ndc's standby", Duration::from_secs(60), |c, w| {
        c.workflow.is_none() && w.members["dc"].streams_from(&w.members["ndc"])
    })
    .await;
    let rejoins: Vec<String> = sim.outcomes().into_iter().filter(|o| o.starts_with("rejoin:")).collect();
    assert!(rejoins.last().is_some_and(|o| o.starts_with("rejoin: completed")), "{rejoins:#?}");
    assert_eq!(rejoins.iter().filter(|o| o.contains("needs re-creation")).count(), 1, "tried once: {rejoins:#?}");
    sim.assert_never_two_writable();
}
