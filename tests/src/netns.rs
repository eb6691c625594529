//! Sites in network namespaces, so that a test cuts real links (`ip link set … down`) rather
//! than killing processes.
//!
//! Two networks, as a data centre has them: a management network, where the controllers live and
//! the agents reach them, and a data network, where the databases replicate and the agents vouch
//! for each other. Each site's host (its agent and database) is a namespace with a port on each;
//! each site's controller is a namespace of its own on the management network. Both networks are
//! bridges in a "core" namespace, and the test itself has a port on each, so it reaches
//! everything. Cutting a port on a bridge drops that namespace's traffic silently, like a cut
//! fibre: peers see timeouts, not errors.
//!
//! Addresses: management 10.A.1.0/24 (controllers .11-.13, hosts .21-.23, the test .254), data
//! 10.A.2.0/24 (hosts .21-.23, the test .254), with A chosen per instance.

use std::process::Command;

use anyhow::{bail, Context, Result};

const SITES: [&str; 3] = ["dc", "ndc", "dr"];

/// The namespaces and links of one test.
pub struct Net {
    /// Short unique prefix of every name (interface names have at most 15 characters).
    id: String,
    /// The second octet of every address.
    a: u8,
    made: Vec<String>,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn site_index(site: &str) -> Result<usize> {
    SITES.iter().position(|s| *s == site).with_context(|| format!("no site `{site}`"))
}

impl Net {
    /// Creates the namespaces, bridges and links. Needs root.
    pub fn create() -> Result<Net> {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos()
            ^ std::process::id().wrapping_mul(2_654_435_761);
        let taken = String::from_utf8_lossy(&Command::new("ip").args(["-o", "addr"]).output()?.stdout).into_owned();
        let a = (0..100u32)
            .map(|i| 100 + ((seed.wrapping_add(i * 37)) % 100) as u8)
            .find(|a| !taken.contains(&format!(" 10.{a}.")))
            .context("no free 10.x.0.0/16 for the test network")?;
        let mut net = Net { id: format!("tn{:04x}", seed % 0xffff), a, made: Vec::new() };
        // Whatever fails half way, Drop removes what was made.
        net.build()?;
        Ok(net)
    }

    fn build(&mut self) -> Result<()> {
        let core = self.ns("core");
        self.add_ns(&core)?;
        for bridge in ["mgmt", "data"] {
            ip(&["-n", &core, "link", "add", bridge, "type", "bridge"])?;
            ip(&["-n", &core, "link", "set", bridge, "up"])?;
        }
        for (i, site) in SITES.iter().enumerate() {
            let host = self.host_ns(site);
            self.add_ns(&host)?;
            self.plug(&host, "mgmt0", &format!("{site}m"), "mgmt", &format!("10.{}.1.{}", self.a, 21 + i))?;
            self.plug(&host, "data0", &format!("{site}d"), "data", &format!("10.{}.2.{}", self.a, 21 + i))?;
            let ctl = self.controller_ns(site);
            self.add_ns(&ctl)?;
            self.plug(&ctl, "mgmt0", &format!("{site}c"), "mgmt", &format!("10.{}.1.{}", self.a, 11 + i))?;
        }
        // The test's own ports, in this (the root) namespace.
        for (bridge, n) in [("mgmt", 1), ("data", 2)] {
            let here = format!("{}{}", self.id, &bridge[..1]);
            let there = format!("test{}", &bridge[..1]);
            ip(&["link", "add", &here, "type", "veth", "peer", "name", &there, "netns", &core])?;
            ip(&["-n", &core, "link", "set", &there, "master", bridge])?;
            ip(&["-n", &core, "link", "set", &there, "up"])?;
            ip(&["addr", "add", &format!("10.{}.{n}.254/24", self.a), "dev", &here])?;
            ip(&["link", "set", &here, "up"])?;
        }
        Ok(())
    }

    fn ns(&self, what: &str) -> String {
        format!("{}-{what}", self.id)
    }

    fn add_ns(&mut self, name: &str) -> Result<()> {
        ip(&["netns", "add", name])?;
        self.made.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    /// A veth from namespace `ns` (named `inside`, with `addr`/24) to bridge `bridge` (its port
    /// named `port`).
    fn plug(&self, ns: &str, inside: &str, port: &str, bridge: &str, addr: &str) -> Result<()> {
        let core = self.ns("core");
        ip(&["link", "add", inside, "netns", ns, "type", "veth", "peer", "name", port, "netns", &core])?;
        ip(&["-n", &core, "link", "set", port, "master", bridge])?;
        ip(&["-n", &core, "link", "set", port, "up"])?;
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", inside])?;
        ip(&["-n", ns, "link", "set", inside, "up"])
    }

    /// The namespace of `site`'s host (its agent and database).
    pub fn host_ns(&self, site: &str) -> String {
        self.ns(site)
    }

    /// The namespace of `site`'s controller.
    pub fn controller_ns(&self, site: &str) -> String {
        self.ns(&format!("{site}-ctl"))
    }

    /// (controller address, host data address) of every site, in `dc`, `ndc`, `dr` order.
    pub fn addrs(&self) -> [(String, String); 3] {
        [0, 1, 2].map(|i| (format!("10.{}.1.{}", self.a, 11 + i), format!("10.{}.2.{}", self.a, 21 + i)))
    }

    fn set_port(&self, port: &str, up: bool) -> Result<()> {
        ip(&["-n", &self.ns("core"), "link", "set", port, if up { "up" } else { "down" }])
    }

    /// Cuts (or heals) `site`'s host from the management network: its agent no longer reaches
    /// any controller; its database and its agent's failsafe service stay reachable.
    pub fn cut_agent_path(&self, site: &str, cut: bool) -> Result<()> {
        site_index(site)?;
        self.set_port(&format!("{site}m"), !cut)
    }

    /// Cuts (or heals) `site`'s controller from the management network: the other controllers
    /// and every agent lose it; its host stays reachable.
    pub fn cut_controller_link(&self, site: &str, cut: bool) -> Result<()> {
        site_index(site)?;
        self.set_port(&format!("{site}c"), !cut)
    }

    /// A veth straight between the hosts of `a` and `b` (a dedicated circuit, like the DWDM
    /// link), 10.A.3.1/30 at `a` and 10.A.3.2/30 at `b`; returns those two addresses.
    pub fn add_direct_link(&mut self, a: &str, b: &str) -> Result<(String, String)> {
        site_index(a)?;
        site_index(b)?;
        let (ip_a, ip_b) = (format!("10.{}.3.1", self.a), format!("10.{}.3.2", self.a));
        let (ns_a, ns_b) = (self.host_ns(a), self.host_ns(b));
        ip(&[
            "link",
            "add",
            &format!("lk{a}"),
            "netns",
            &ns_a,
            "type",
            "veth",
            "peer",
            "name",
            &format!("lk{b}"),
            "netns",
            &ns_b,
        ])?;
        for (ns, site, addr) in [(&ns_a, a, &ip_a), (&ns_b, b, &ip_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", &format!("lk{site}")])?;
            ip(&["-n", ns, "link", "set", &format!("lk{site}"), "up"])?;
        }
        Ok((ip_a, ip_b))
    }

    /// Gives `site`'s host one more address on its data network (10.A.2.N/32); returns it.
    pub fn add_host_address(&self, site: &str, n: u8) -> Result<String> {
        site_index(site)?;
        let addr = format!("10.{}.2.{n}", self.a);
        ip(&["-n", &self.host_ns(site), "addr", "add", &format!("{addr}/32"), "dev", "data0"])?;
        Ok(addr)
    }

    /// Takes `site`'s end of its direct link down (`ip link set … down`) or up.
    pub fn set_direct_link(&self, site: &str, up: bool) -> Result<()> {
        site_index(site)?;
        ip(&["-n", &self.host_ns(site), "link", "set", &format!("lk{site}"), if up { "up" } else { "down" }])
    }

    /// Cuts (or heals) every link of `site`: host and controller are alone.
    pub fn isolate(&self, site: &str, cut: bool) -> Result<()> {
        site_index(site)?;
        for port in [format!("{site}m"), format!("{site}d"), format!("{site}c")] {
            self.set_port(&port, !cut)?;
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its interfaces and their peers, the test's ports included.
        for ns in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("removing network namespace {ns}: {e}");
            }
        }
    }
}
