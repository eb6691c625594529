//! Promote preconditions (DESIGN.md, "Safety of role changes", point 7; issue 16, item 10): a
//! query on the candidate that conflicts with recovery does not hold its promotion back. Real
//! PostgreSQL, real processes.
//!
//! ndc waits forever on conflicting queries (`max_standby_streaming_delay = -1`) and holds a
//! repeatable-read snapshot on a table whose rows dc then deletes and vacuums: ndc's replay stands
//! still. dc's site is lost; the failover's promote finds replay standing still, ends the session
//! in conflict, and ndc is promoted with every acknowledged write. Before, the promote waited out
//! its 60 s and failed, and nothing was promoted.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::workload::kill_postgres;
use triad_tests::{wait_for, Deployment};

const ALL: &[&str] = &["controller-1", "controller-2", "controller-3", "agent-dc", "agent-ndc"];

/// ndc's (received, replayed) positions.
async fn positions(standby: &tokio_postgres::Client) -> Result<(i64, i64)> {
    let row = standby
        .query_one(
            "SELECT (pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::bigint, \
                    (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_in_conflict_with_recovery_does_not_hold_the_promotion_back() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    d.wait_ready(true).await?;
    let dc_data = d.pg.as_ref().expect("PostgreSQL").member("dc")?.dir.join("data");

    let ndc_admin = d.pg_connect("ndc").await?;
    ndc_admin.batch_execute("ALTER SYSTEM SET max_standby_streaming_delay = -1").await?;
    ndc_admin.batch_execute("SELECT pg_reload_conf()").await?;
    let dc = d.pg_connect("dc").await?;
    dc.batch_execute("CREATE TABLE held (i int); INSERT INTO held SELECT generate_series(1, 5000)").await?;
    wait_for("the table on ndc", Duration::from_secs(15), || async {
        ndc_admin.query_one("SELECT count(*) FROM held", &[]).await.ok().filter(|r| r.get::<_, i64>(0) == 5000)
    })
    .await?;
    // A reader on ndc keeps its snapshot of the rows dc is about to remove.
    let reader = d.pg_connect("ndc").await?;
    reader.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM held").await?;
    dc.batch_execute("DELETE FROM held").await?;
    dc.batch_execute("VACUUM held").await?;
    dc.batch_execute("CREATE TABLE after_vacuum (i int); INSERT INTO after_vacuum VALUES (1)").await?;
    let acked: i64 = dc.query_one("SELECT count(*) FROM after_vacuum", &[]).await?.get(0);
    ensure!(acked == 1, "the write after the vacuum is acknowledged (ndc received it synchronously)");
    // ndc's replay stands still behind what it received.
    let (received, replayed) = wait_for("ndc's replay held back by the reader", Duration::from_secs(15), || async {
        let (received, replayed) = positions(&ndc_admin).await.ok()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, again) = positions(&ndc_admin).await.ok()?;
        (replayed < received && again == replayed).then_some((received, replayed))
    })
    .await?;
    eprintln!("ndc received {received}, replayed {replayed}: held back");

    // dc's site is lost.
    d.kill("agent-dc")?;
    kill_postgres(&dc_data)?;
    let promoted = d.wait_primary("ndc", 2, ALL).await;
    promoted?;
    let log = d.log_tail("agent-ndc", 400);
    ensure!(log.contains("ended the sessions in conflict with it"), "the agent says what it ended: {log}");
    ensure!(reader.query_one("SELECT 1", &[]).await.is_err(), "the reader in conflict was ended");
    let ndc = d.pg_connect("ndc").await?;
    let on_ndc: i64 = ndc.query_one("SELECT count(*) FROM after_vacuum", &[]).await?.get(0);
    ensure!(on_ndc == 1, "the acknowledged write after the vacuum is on ndc");
    Ok(())
}
