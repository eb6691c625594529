//! How `triadctl` finds and reaches the controllers: its TOML file (`--config` or `TRIAD_CONFIG`)
//! names every controller and the certificate to present.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use triad_proto::v1::alerts_client::AlertsClient;
use triad_proto::v1::control_client::ControlClient;
use triad_proto::v1::drills_client::DrillsClient;
use triad_proto::v1::inventory_client::InventoryClient;

use crate::error::{Error, Result};
use triad_proto::words::LEADER_ADDR_KEY;

/// `triadctl.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtlConfig {
    /// gRPC addresses (`IP:PORT`) of the controllers; any one that answers will do.
    pub controllers: Vec<String>,
    /// The deployment's CA certificate (PEM). Relative paths are relative to this file.
    pub ca: PathBuf,
    /// Your certificate (PEM), issued with `triadctl certs issue`.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl CtlConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = triad_proto::files::read_config(path)
            .map_err(|e| Error::ConfigFile { path: path.display().to_string(), msg: e.to_string() })?;
        let mut cfg: CtlConfig = toml::from_str(&text)
            .map_err(|e| Error::ConfigFile { path: path.display().to_string(), msg: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.ca, &mut cfg.cert, &mut cfg.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if cfg.controllers.is_empty() {
            return Err(Error::ConfigKey {
                key: "controllers".into(),
                msg: "must name at least one controller".into(),
            });
        }
        for (i, c) in cfg.controllers.iter().enumerate() {
            crate::config::check_addr(&format!("controllers[{i}]"), c)?;
        }
        // A key that is not the certificate's would show only as "transport error" on every call.
        crate::config::check_tls_pair(("cert", &cfg.cert), ("key", &cfg.key))?;
        Ok(cfg)
    }
}

/// A connected `triadctl`.
pub struct Client {
    pub cfg: CtlConfig,
    tls: ClientTlsConfig,
}

impl Client {
    /// Loads the certificates named in `cfg`.
    pub fn new(cfg: CtlConfig) -> Result<Self> {
        let read = |key: &str, p: &Path| {
            triad_proto::files::read_bounded(p, triad_proto::files::CONFIG_LIMIT)
                .map_err(|e| Error::ConfigKey { key: key.into(), msg: format!("{}: {e}", p.display()) })
        };
        let tls =
            triad_proto::tls::client_tls(&read("ca", &cfg.ca)?, &read("cert", &cfg.cert)?, &read("key", &cfg.key)?);
        Ok(Client { cfg, tls })
    }

    /// A connection to the controller at `addr`; fails fast when it is unreachable.
    pub async fn channel(&self, addr: &str) -> Result<Channel> {
        Ok(Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| Error::InvalidArgument(format!("bad address {addr}: {e}")))?
            .tls_config(self.tls.clone())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .connect()
            .await?)
    }

    /// A client for the controller at `addr`; fails fast when it is unreachable.
    pub async fn control(&self, addr: &str) -> Result<ControlClient<Channel>> {
        Ok(ControlClient::new(self.channel(addr).await?))
    }

    /// The `Alerts` service of the controller [`Self::reader`] picks: the leader when one
    /// answers. Writes through it reach the leader too (a follower forwards them).
    pub async fn alerts(&self) -> Result<AlertsClient<Channel>> {
        let (addr, _) = self.pick_reader().await?;
        Ok(AlertsClient::new(self.channel(&addr).await?))
    }

    /// The `Inventory` service (links, assets) of the controller [`Self::reader`] picks.
    pub async fn inventory(&self) -> Result<InventoryClient<Channel>> {
        let (addr, _) = self.pick_reader().await?;
        Ok(InventoryClient::new(self.channel(&addr).await?))
    }

    /// The first controller in the config that accepts a connection, with its address.
    pub async fn any(&self) -> Result<(String, ControlClient<Channel>)> {
        let mut last = None;
        for addr in &self.cfg.controllers {
            match self.control(addr).await {
                Ok(c) => return Ok((addr.clone(), c)),
                Err(e) => last = Some(format!("{addr}: {e}")),
            }
        }
        Err(Error::Unavailable(format!("no controller answered ({})", last.unwrap_or_default())))
    }

    /// The controller to read from: the leader when one answers, so that a read made right after
    /// a change never comes from a follower still catching up (one just back from a partition
    /// can be far behind without knowing it); otherwise the first that answers, whose reads may
    /// lag. The controllers are asked together and the leader's answer ends the wait, so an
    /// unreachable one costs a connect timeout only when no leader answers.
    pub async fn reader(&self) -> Result<ControlClient<Channel>> {
        Ok(self.pick_reader().await?.1)
    }

    /// [`Self::reader`], with the address it picked.
    async fn pick_reader(&self) -> Result<(String, ControlClient<Channel>)> {
        use futures::stream::{FuturesUnordered, StreamExt};
        let mut asks: FuturesUnordered<_> = self
            .cfg
            .controllers
            .iter()
            .map(|addr| async move {
                let mut c = self.control(addr).await?;
                let node = c.node_status(triad_proto::v1::NodeStatusRequest {}).await?.into_inner();
                Ok::<_, Error>((node.raft_role == "leader", (addr.clone(), c)))
            })
            .collect();
        let (mut follower, mut last_err) = (None, None);
        while let Some(answer) = asks.next().await {
            match answer {
                Ok((true, c)) => return Ok(c),
                Ok((false, c)) => {
                    follower.get_or_insert(c);
                }
                Err(e) => last_err = Some(e.to_string()),
            }
        }
        follower.ok_or_else(|| Error::Unavailable(format!("no controller answered ({})", last_err.unwrap_or_default())))
    }

    /// Runs `call` on any controller, following "not the leader" refusals to the leader.
    pub async fn on_leader<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnMut(ControlClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.on_leader_of(ControlClient::new, call).await
    }

    /// [`Client::on_leader`] for any service's client, made from a channel by `make`.
    pub async fn on_leader_of<C, T, F, Fut>(&self, make: fn(Channel) -> C, mut call: F) -> Result<T>
    where
        C: Clone,
        F: FnMut(C) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let (mut addr, _) = self.any().await?;
        let mut client = make(self.channel(&addr).await?);
        for _ in 0..10 {
            match call(client.clone()).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if s.code() == tonic::Code::FailedPrecondition && s.message().starts_with("not the leader") => {
                    match s.metadata().get(LEADER_ADDR_KEY).and_then(|v| v.to_str().ok()) {
                        Some(leader) if leader != addr => {
                            addr = leader.to_string();
                            client = make(self.channel(&addr).await?);
                        }
                        // No leader yet (an election is under way), or a stale hint: ask again.
                        _ => tokio::time::sleep(Duration::from_millis(300)).await,
                    }
                }
                Err(s) => return Err(Error::Rpc(Box::new(s))),
            }
        }
        Err(Error::Unavailable("could not reach the leader".into()))
    }

    /// The `Drills` service of the controller [`Self::reader`] picks (writes reach the leader).
    pub async fn drills(&self) -> Result<DrillsClient<Channel>> {
        let (addr, _) = self.pick_reader().await?;
        Ok(DrillsClient::new(self.channel(&addr).await?))
    }
}
