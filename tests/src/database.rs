//! The database side of the harness: the PostgreSQL members' connection strings, waits on the
//! cluster's roles as status shows them, and checks that acknowledged writes are all there.

use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::{wait_for, Deployment, StatusView};

impl Deployment {
    /// Connection strings of the members `dc`, `ndc`, `dr` (database `customs`), in that order.
    pub fn conninfos(&self) -> Result<Vec<String>> {
        let pg = self.pg.as_ref().ok_or_else(|| anyhow!("no PostgreSQL here"))?;
        Ok(["dc", "ndc", "dr"].iter().map(|m| pg.member(m).map(|m| m.conninfo("customs"))).collect::<Result<_, _>>()?)
    }

    /// Waits until the reference cluster is adopted (epoch 1), `ndc` synchronous and `dc` primary
    /// under lease, and (with `failover_ready`) nothing blocks automatic failover; shows status
    /// and the logs if not. Returns the status seen.
    pub async fn wait_ready(&self, failover_ready: bool) -> Result<StatusView> {
        let r = wait_for("dc primary under lease, ndc synchronous", Duration::from_secs(40), || async {
            let v = self.status().await.ok()?;
            let c = v.cluster_state.get("customs")?;
            let dc = v.clusters["customs"].iter().find(|m| m.name == "dc")?.clone();
            let failover = !failover_ready || c.failover_blocked.is_empty();
            (c.epoch == 1 && c.primary == "dc" && c.synchronous == ["ndc"] && dc.lease_remaining_ms > 0 && failover)
                .then_some(v)
        })
        .await;
        if r.is_err() {
            let out = self.triadctl(&["status"])?;
            eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            self.diagnose(&["controller-1", "controller-2", "controller-3", "agent-dc", "agent-ndc"])?;
        }
        r
    }

    /// Waits (60 s at most) until `customs` is adopted at epoch 1 with every member healthy.
    pub async fn wait_adopted_healthy(&self) -> Result<()> {
        wait_for("customs adopted with every member healthy", Duration::from_secs(60), || async {
            let v = self.status().await.ok()?;
            let healthy = v.clusters.get("customs")?.iter().all(|m| m.healthy);
            (v.cluster_state.get("customs")?.epoch == 1 && healthy).then_some(())
        })
        .await
    }

    /// Waits until `member` is the committed primary at `epoch` and reports itself primary; shows
    /// the logs of `diagnose` if not.
    pub async fn wait_primary(&self, member: &str, epoch: u64, diagnose: &[&str]) -> Result<()> {
        let promoted = wait_for(&format!("{member} primary at epoch {epoch}"), Duration::from_secs(30), || async {
            let v = self.status().await.ok()?;
            let c = v.cluster_state.get("customs")?;
            let m = v.clusters["customs"].iter().find(|m| m.name == member)?.clone();
            (c.epoch == epoch && c.primary == member && m.role == "primary").then_some(())
        })
        .await;
        if promoted.is_err() {
            self.diagnose(diagnose)?;
        }
        promoted
    }

    /// Waits until `site`'s agent holds its lease from the vouch set (failsafe), not the controllers.
    pub async fn wait_failsafe(&self, site: &str) -> Result<()> {
        wait_for(&format!("{site}'s lease coming from its voucher"), Duration::from_secs(10), || async {
            (self.agent_metric(site, "triad_agent_lease_failsafe").await? == 1.0).then_some(())
        })
        .await
    }

    /// Waits until `member` is back as the synchronous standby (a standby, streaming `sync`, and
    /// recorded as the only synchronous member); shows the controllers' and its agent's logs if not.
    pub async fn wait_synchronous_again(&self, member: &str, timeout: Duration) -> Result<()> {
        let back = wait_for(&format!("{member} back as the synchronous standby"), timeout, || async {
            let v = self.status().await.ok()?;
            let c = v.cluster_state.get("customs")?;
            let m = v.clusters["customs"].iter().find(|m| m.name == member)?.clone();
            (c.synchronous == [member] && m.role == "standby" && m.sync_state == "sync").then_some(())
        })
        .await;
        if back.is_err() {
            let agent = format!("agent-{member}");
            self.diagnose(&["controller-1", "controller-2", "controller-3", &agent])?;
        }
        back
    }

    /// Waits until `member` holds every id in `acked` (its replication may trail a moment).
    /// A member restarting for a moment is not a lost write: the connection is retried within
    /// the deadline, and a failure shows the logs.
    pub async fn wait_holds_all(&self, member: &str, acked: &[i64], timeout: Duration) -> Result<()> {
        let held = wait_for(&format!("{member} to hold every acknowledged write"), timeout, || async {
            let client = self.pg_connect(member).await.ok()?;
            let rows = client.query("SELECT id FROM orders", &[]).await.ok()?;
            let have: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
            acked.iter().all(|id| have.contains(id)).then_some(())
        })
        .await;
        if held.is_err() {
            let agent = format!("agent-{member}");
            self.diagnose(&["controller-1", "controller-2", "controller-3", &agent])?;
        }
        held
    }

    /// How many of `acked` (ids of acknowledged writes) are not in `member`'s table `orders`.
    pub async fn missing_on(&self, member: &str, acked: &[i64]) -> Result<usize> {
        let client = self.pg_connect(member).await?;
        let rows = client.query("SELECT id FROM orders", &[]).await?;
        let have: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
        Ok(acked.iter().filter(|id| !have.contains(id)).count())
    }

    /// Every workflow on `customs`, newest first, as `triadctl history -o json` shows them.
    pub fn history(&self) -> Result<Vec<serde_json::Value>> {
        let out = self.triadctl(&["history", "--cluster", "customs", "-o", "json"])?;
        let history: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(history.as_array().cloned().unwrap_or_default())
    }

    /// The newest workflow of `kind` on `customs`, as `triadctl history -o json` shows it, with
    /// its steps' (name, note) in order; `Null` and none when there is none.
    pub fn newest_workflow(&self, kind: &str) -> Result<(serde_json::Value, Vec<(String, String)>)> {
        let w = self.history()?.into_iter().find(|w| w["kind"] == kind).unwrap_or_default();
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let steps = w["steps"].as_array().map(|s| s.iter().map(|x| (text(&x[0]), text(&x[2]))).collect());
        Ok((w, steps.unwrap_or_default()))
    }

    /// A client connection to a PostgreSQL member's database `customs`.
    pub async fn pg_connect(&self, member: &str) -> Result<tokio_postgres::Client> {
        let m = self.pg.as_ref().ok_or_else(|| anyhow!("no PostgreSQL here"))?.member(member)?;
        let (client, conn) = tokio_postgres::connect(&m.conninfo("customs"), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}
