//! Links in a test deployment (issue 18): defining them, moving an agent's probe echo behind a
//! relay, and, in network namespaces, a dedicated veth between two sites' hosts to cut.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use triad_controller::ctl::links::LinkLine;
use triad_controller::state::links::{LinkKind, LinkSpec, LinkThresholds};

use crate::{wait_for, Deployment};

/// A link between `a` and `b` carrying the `customs` cluster, with the given thresholds.
pub fn link(name: &str, a: &str, b: &str, kind: LinkKind, thresholds: LinkThresholds) -> LinkSpec {
    LinkSpec {
        name: name.into(),
        a: a.into(),
        b: b.into(),
        kind,
        capacity_mbps: 10_000,
        provider: "test".into(),
        circuit: format!("CIRCUIT-{name}"),
        carries: ["customs".to_string()].into(),
        a_agent: String::new(),
        b_agent: String::new(),
        devices: Vec::new(),
        probe_interval_ms: 200,
        thresholds,
    }
}

impl Deployment {
    /// Seeds these links (before the controllers start).
    pub fn set_links(&mut self, links: Vec<LinkSpec>) -> Result<()> {
        self.plan.links = links.clone();
        self.tune_controllers(|c| c.links = links.clone())
    }

    /// Where `site`'s agent answers probes.
    pub fn probe_addr(&self, site: &str) -> Result<String> {
        let a = self.plan.agents.iter().find(|a| a.site == site).ok_or_else(|| anyhow!("no agent at {site}"))?;
        Ok(a.probe_addr.clone())
    }

    /// Changes `site`'s agent's probe addresses (before it starts): where it listens, and what
    /// the others dial (empty: the same).
    pub fn set_probe_addrs(&mut self, site: &str, listen: &str, advertise: &str) -> Result<()> {
        let a = self.plan.agents.iter_mut().find(|a| a.site == site).ok_or_else(|| anyhow!("no agent at {site}"))?;
        a.probe_addr = listen.into();
        a.probe_advertise_addr = advertise.into();
        let a = a.clone();
        std::fs::write(self.plan.agent_config_path(&a.name), self.plan.agent_config_text(&a))?;
        Ok(())
    }

    /// Appends `text` (e.g. `[[snmp]]` tables) to `site`'s agent's config (before it starts).
    pub fn append_agent_config(&self, site: &str, text: &str) -> Result<()> {
        let path = self.plan.agent_config_path(&format!("agent-{site}"));
        let mut config = std::fs::read_to_string(&path)?;
        config.push_str(text);
        std::fs::write(&path, config)?;
        Ok(())
    }

    /// A veth straight between `a`'s and `b`'s hosts (a dedicated circuit, like the DWDM link),
    /// their agents' probe echoes moved onto it. Namespaced deployments only.
    pub fn add_direct_link(&mut self, a: &str, b: &str) -> Result<()> {
        let net = self.net.as_mut().context("a direct link needs a deployment in network namespaces")?;
        let (ip_a, ip_b) = net.add_direct_link(a, b)?;
        let port = triad_controller::ctl::local::free_port()?;
        self.set_probe_addrs(a, &format!("{ip_a}:{port}"), "")?;
        self.set_probe_addrs(b, &format!("{ip_b}:{port}"), "")
    }

    /// Takes `site`'s end of its direct link down (or up again).
    pub fn cut_direct_link(&self, site: &str, cut: bool) -> Result<()> {
        self.net.as_ref().context("no network namespaces")?.set_direct_link(site, !cut)
    }

    /// The links as `triadctl links -o json` prints them.
    pub fn links_json(&self) -> Result<Vec<serde_json::Value>> {
        let out = self.triadctl(&["links", "-o", "json"])?;
        anyhow::ensure!(out.status.success(), "triadctl links: {}", String::from_utf8_lossy(&out.stderr));
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The links through the gRPC API.
    pub async fn links(&self) -> Result<Vec<LinkLine>> {
        Ok(triad_controller::ctl::links::list(&self.client).await?.0)
    }

    /// Waits until link `name` is recorded in `state`; returns it.
    pub async fn wait_link(&self, name: &str, state: &str, timeout: Duration) -> Result<LinkLine> {
        wait_for(&format!("link {name} {state}"), timeout, || async {
            let links = self.links().await.ok()?;
            links.into_iter().find(|l| l.name == name && l.state == state)
        })
        .await
    }
}
