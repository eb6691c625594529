//! The shipped HAProxy configuration (`deploy/haproxy/haproxy.cfg`) in front of a real cluster:
//! Debian's HAProxy, its addresses replaced with the test deployment's, checks the agents'
//! `/primary` and `/replica`; writers reach the primary, readers a standby, and after a switchover
//! writers reach the new primary by the checks alone (no `[[balancers]]` configured: nothing is
//! pushed). The runtime-API push is in `role_change_services.rs`.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use triad_tests::haproxy::{port_of, reached, Checks, Haproxy, Plan};
use triad_tests::{wait_for, Deployment};

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_haproxy_config_routes_writers_to_the_primary_through_a_switchover() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    d.wait_adopted_healthy().await?;
    let h = Haproxy::start(&d, Plan::new(&d)?, Checks::SHIPPED)?;
    h.settled(&d, "dc").await.with_context(|| h.log())?;

    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", "ndc"])?;
    ensure!(out.status.success(), "switchover: {}", String::from_utf8_lossy(&out.stderr));
    let ndc = port_of(&d, "ndc")?;
    // Fall 3 and rise 2 at inter 3 s: dc leaves and ndc comes in within about 15 s.
    wait_for("writers through HAProxy reach ndc", Duration::from_secs(45), || async {
        (reached(h.plan.rw).await? == (ndc, false)).then_some(())
    })
    .await
    .with_context(|| h.log())?;
    Ok(())
}
