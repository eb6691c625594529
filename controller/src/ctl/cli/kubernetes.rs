//! `triadctl kubernetes plan`: the dry run of the Kubernetes edge. What the leader would apply
//! for a cluster as it stands now (its primary in, the others as readers), printed from the
//! controllers' `[kubernetes]` config and the live status, without touching any API server.

use std::path::PathBuf;

use clap::Subcommand;

use crate::brain::router::{Route, RouteStep, RouteVersion};
use crate::config::ControllerConfig;
use crate::ctl::{client, status};
use crate::kubernetes::KubeRouter;
use crate::Error;

#[derive(Subcommand)]
pub(super) enum KubernetesCmd {
    /// Print the EndpointSlices and Deployment scales the leader would apply for the cluster's
    /// current primary; applies nothing.
    Plan {
        /// A controller's configuration file (its `[kubernetes]` section is used).
        #[arg(long)]
        controller_config: PathBuf,
        /// The database cluster.
        #[arg(long, default_value = "customs")]
        cluster: String,
    },
}

pub(super) async fn run_kubernetes(c: &client::Client, cmd: KubernetesCmd) -> Result<(), Error> {
    let KubernetesCmd::Plan { controller_config, cluster } = cmd;
    let cfg = ControllerConfig::load(&controller_config)?;
    if cfg.kubernetes.cluster(&cluster).is_none() {
        return Err(Error::InvalidArgument(format!(
            "{}: [kubernetes] has no `[[kubernetes.clusters]]` entry for `{cluster}`",
            controller_config.display()
        )));
    }
    let view = status::gather(c).await?;
    let state = view
        .cluster_state
        .get(&cluster)
        .ok_or_else(|| Error::InvalidArgument(format!("no cluster `{cluster}` in status")))?;
    if state.primary.is_empty() {
        return Err(Error::InvalidArgument(format!("`{cluster}` has no primary recorded yet")));
    }
    let members = view.clusters.get(&cluster).cloned().unwrap_or_default();
    let site = members.iter().find(|m| m.name == state.primary).map(|m| m.site.clone()).unwrap_or_default();
    let route = Route {
        cluster: cluster.clone(),
        version: RouteVersion { epoch: state.epoch, step: RouteStep::In },
        primary: Some(state.primary.clone()),
        primary_site: site,
        standbys: members.iter().filter(|m| m.name != state.primary).map(|m| m.name.clone()).collect(),
    };
    let plan = KubeRouter::new(None, cfg.kubernetes.clone())
        .plan(&route)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    crate::outln!("# dry run: nothing is applied\n{plan}");
    Ok(())
}
