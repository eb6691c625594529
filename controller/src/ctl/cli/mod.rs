//! `triadctl`'s command line: its arguments (clap), and each command dispatched to its module in
//! `ctl/`, its result printed. The binary only parses and calls [`run`].

use std::path::PathBuf;
use std::time::Duration;

mod alerts;
mod assets;
mod drills;
mod kubernetes;
mod links;
mod observe;
mod services;

use self::alerts::{run_alerts, AlertsCmd};
use self::assets::{run_assets, AssetsArgs};
use self::drills::{run_drill, DrillCmd};
use self::kubernetes::{run_kubernetes, KubernetesCmd};
use self::links::{run_links, LinksArgs};
use self::observe::{run_dashboards, run_prometheus, DashboardsCmd, PrometheusCmd};
use self::services::{run_services, ServicesArgs};
use super::{admin, certs, client, demo, failover, status};
use crate::Error;
use clap::{Parser, Subcommand, ValueEnum};

/// Inspect and drive a Triad deployment.
///
/// Commands that talk to controllers read their endpoints and credentials from --config or
/// TRIAD_CONFIG (`triadctl demo` writes such a file: DIR/triadctl.toml).
#[derive(Parser)]
#[command(version, about, long_about)]
pub struct Args {
    /// triadctl's TOML file: controllers' addresses and your certificate.
    #[arg(long, short, env = "TRIAD_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Controllers (leader/follower, term, last applied, reachable), agents and database clusters.
    Status {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Make a deployment's CA and certificates.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Change the controller cluster's membership.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Give people roles (overriding their certificate's), or disable them.
    #[command(subcommand)]
    User(UserCmd),
    /// Hand the primary role to a caught-up standby with no acknowledged write lost: pre-checks,
    /// stop writes, wait for the target, commit the new epoch, promote, rejoin the old primary as
    /// a standby, restore synchronous replication. Prints each step's timing.
    Switchover {
        #[arg(long)]
        cluster: String,
        /// The member to make primary.
        #[arg(long)]
        to: String,
    },
    /// Request a manual failover of a cluster whose primary is lost, to MEMBER. Nothing happens
    /// until a second person (another admin or noc identity) runs `triadctl approve ID`; the
    /// request lapses after 10 minutes. Refused while the primary runs (use switchover). A target
    /// outside the synchronous set (e.g. dr) needs --accept-data-loss, and the workflow records
    /// the data-loss window; a voucher whose agent cannot be reached must be named in
    /// --attest-dead (the approver vouches for that too).
    Failover {
        #[arg(long)]
        cluster: String,
        /// The member to promote.
        #[arg(long)]
        to: String,
        /// Why (shown to the approver, kept in the audit log and the history).
        #[arg(long)]
        reason: String,
        /// Promote a member that may lack acknowledged commits.
        #[arg(long)]
        accept_data_loss: bool,
        /// Members attested dead or fenced (comma-separated), e.g. both sites of a lost city.
        #[arg(long, value_delimiter = ',')]
        attest_dead: Vec<String>,
    },
    /// Approve someone else's failover request, then follow it to its end.
    Approve {
        /// The request's id, as `triadctl failover` printed it (also in `triadctl status`).
        id: u64,
        /// How long to follow it, in seconds.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// The last resort when a city is lost and even the witnesses with it: the one controller left
    /// (normally dr's) has no quorum, so nothing can be promoted. One person requests, attesting
    /// that the other sites are dead or fenced; a second (admin or noc) approves; the controller
    /// then restarts as the only voter, cuts the others off, raises the cluster's epoch by a
    /// million (so a member that returns fences itself) and fails over to MEMBER accepting data
    /// loss. See runbooks/break-glass.md.
    #[command(subcommand)]
    BreakGlass(BreakGlassCmd),
    /// Cancel a failover request that has not started.
    Cancel { id: u64 },
    /// Where writers go: the cluster's committed primary and how to reach it. With --watch, a
    /// line for every change until Ctrl-C.
    Endpoint {
        #[arg(long)]
        cluster: String,
        /// Keep watching and print every change.
        #[arg(long)]
        watch: bool,
        /// Output format (one JSON object per line with --watch).
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Role changes (switchovers, failovers, rejoins): who or what decided, each step's timing,
    /// the outcome. Newest first.
    History {
        /// Only this cluster.
        #[arg(long, default_value = "")]
        cluster: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Maintenance mode: no automatic role changes for the cluster until `resume`. It turns
    /// automatic failover off, so it is a request that a second person (admin or noc) approves
    /// with `triadctl approve ID`.
    Pause {
        #[arg(long)]
        cluster: String,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// End maintenance mode.
    Resume {
        #[arg(long)]
        cluster: String,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The replicated audit log, newest first.
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Security alerts: the SOC's queue, triage, silences and alert sources.
    ///
    /// Examples:
    ///   triadctl alerts list --status active --severity high
    ///   triadctl alerts show 42
    ///   triadctl alerts ack 42 43
    ///   triadctl alerts resolve 42 --reason "firewall rule fixed"
    ///   triadctl alerts silence add --match site=dc --match alertname=HostDiskFull --for 2h --reason "disk swap"
    ///   triadctl alerts sources add prometheus --kind alertmanager
    #[command(subcommand, verbatim_doc_comment)]
    Alerts(AlertsCmd),
    /// The network links between the sites: state, round trip, loss, jitter, and SNMP where a
    /// device is polled; defining and removing links (admin, noc).
    ///
    /// Examples:
    ///   triadctl links
    ///   triadctl links -o json
    ///   triadctl links put dwdm-dc-ndc --a dc --b ndc --kind dwdm --capacity-mbps 10000 --carries customs
    ///   triadctl links delete wan-dc-dr
    #[command(verbatim_doc_comment)]
    Links(LinksArgs),
    /// The IT asset register: hardware, software and licences by site and office; CSV import and
    /// export, reports, licence seats, an issue log per asset (changes: admin, noc).
    ///
    /// Examples:
    ///   triadctl assets --site dc --kind hardware
    ///   triadctl assets show BD-CUS-000123
    ///   triadctl assets put BD-CUS-000123 --kind hardware --site dc --office "Server room" --assignee ops
    ///   triadctl assets import register.csv
    ///   triadctl assets export register.csv
    ///   triadctl assets report
    ///   triadctl assets seat LIC-ORACLE-EE --host db1
    ///   triadctl assets issue open BD-CUS-000123 --title "fan noise"
    #[command(verbatim_doc_comment)]
    Assets(AssetsArgs),
    /// The services that follow the database clusters (the application, e-payment, ...): their
    /// health from the agents' HTTP, TCP or SQL checks, recovery group and hooks (changes: admin,
    /// noc). A definition is a TOML file written like one `[[services]]` entry of the controllers'
    /// config.
    ///
    /// Examples:
    ///   triadctl services
    ///   triadctl services -o json
    ///   triadctl services put --file asycuda.toml
    ///   triadctl services delete asycuda
    #[command(verbatim_doc_comment)]
    Services(ServicesArgs),
    /// Drills: rehearsed moves of a database cluster (switchover round trip, DR test, failover
    /// rehearsal). Plans are TOML files written like one `[[drills]]` entry of the controllers'
    /// config (changes: admin, noc); `check` runs a plan's pre-checks now and changes nothing.
    ///
    /// Examples:
    ///   triadctl drill list
    ///   triadctl drill put --file quarterly-ndc.toml
    ///   triadctl drill check quarterly-ndc
    ///   triadctl drill check quarterly-ndc --override-alerts "UPS test announced, ticket 4411"
    ///   triadctl drill delete quarterly-ndc
    #[command(subcommand, verbatim_doc_comment)]
    Drill(DrillCmd),
    /// The Kubernetes edge's dry run: the EndpointSlices (`<cluster>-rw`, `<cluster>-ro`) and
    /// Deployment scales the leader would apply for the cluster as it stands, from a controller's
    /// `[kubernetes]` config and the live status. Applies nothing.
    ///
    /// Examples:
    ///   triadctl kubernetes plan --controller-config /etc/triad/controller.toml
    ///   triadctl kubernetes plan --controller-config controller.toml --cluster customs
    #[command(subcommand, verbatim_doc_comment)]
    Kubernetes(KubernetesCmd),
    /// The NOC's Grafana dashboards: write them as this version generates them, or check any
    /// dashboard JSON offline (no Grafana needed). runbooks/noc-dashboards.md says what each shows.
    ///
    /// Examples:
    ///   triadctl dashboards write --dir dashboards
    ///   triadctl dashboards check dashboards/grafana
    #[command(subcommand, verbatim_doc_comment)]
    Dashboards(DashboardsCmd),
    /// Prometheus for Triad: a scrape configuration for a running demo (the alerting rules are in
    /// deploy/prometheus/rules.yml).
    ///
    /// Examples:
    ///   triadctl prometheus scrape-config --demo triad-demo/demo.json > prometheus.yml
    ///   triadctl prometheus scrape-config --demo triad-demo/demo.json --rules deploy/prometheus/rules.yml \
    ///       --alertmanager 127.0.0.1:9093 --out triad-demo/prometheus.yml
    #[command(subcommand, verbatim_doc_comment)]
    Prometheus(PrometheusCmd),
    /// Start a complete three-site deployment on this machine, in the foreground (Ctrl-C stops it).
    Demo {
        /// Directory for certificates, configs, data, logs and demo.json.
        #[arg(long, default_value = "triad-demo")]
        dir: PathBuf,
        /// Simulated database members inside the agents instead of PostgreSQL (also the
        /// fallback, said loudly, when no PostgreSQL server binaries are found).
        #[arg(long)]
        simulated: bool,
    },
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Create the deployment's CA (ca.pem, ca.key) in DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// A name for the deployment, shown in the CA's subject.
        #[arg(long, default_value = "triad")]
        deployment: String,
        /// Replace an existing CA (every certificate it issued stops working).
        #[arg(long)]
        force: bool,
    },
    /// Issue NAME.pem and NAME.key signed by the CA in DIR.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// admin, noc, soc, auditor (people), agent (hosts) or peer (controllers).
        #[arg(long)]
        role: String,
        /// The identity: a controller's `controller-ID`, an agent's name, a person's login.
        #[arg(long)]
        name: String,
        /// Where to write the files (default: DIR).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Extra subject alternative names (DNS names or IP addresses).
        #[arg(long)]
        san: Vec<String>,
    },
}

#[derive(Subcommand)]
enum BreakGlassCmd {
    /// Record a break-glass request on the stranded controller (refused while any leader is
    /// known, and until it has known none for 10 s or five election timeouts).
    Request {
        #[arg(long)]
        cluster: String,
        /// The member to promote (normally dr).
        #[arg(long)]
        to: String,
        /// Why the other sites are dead or fenced: who confirmed what, and how.
        #[arg(long)]
        attest: String,
        /// The stranded controller's gRPC address (default: the first in the config that answers).
        #[arg(long)]
        controller: Option<String>,
    },
    /// Approve someone else's break-glass request (within 15 minutes); the controller restarts.
    Approve {
        /// The request's id, as `break-glass request` printed it.
        id: u64,
        /// The controller that recorded it (default: the first in the config that answers).
        #[arg(long)]
        controller: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Add a controller: it must be running with `join = true`; it joins as a learner, catches up,
    /// then becomes a voter. Refused if its city would then hold more than two voters. A witness
    /// (a controller with no database, so that losing one city leaves a quorum) is added the same
    /// way, at a site of its own.
    Add {
        /// Its Raft node id: unique, never reused.
        #[arg(long)]
        id: u64,
        /// The site it runs in; a new site (e.g. a witness's) is recorded with `--city`.
        #[arg(long)]
        site: String,
        /// The site's city: required for a new site, checked against a known one.
        #[arg(long, default_value = "")]
        city: String,
        /// Its gRPC address, as in its config.
        #[arg(long)]
        grpc_addr: String,
        /// Its HTTP address, as in its config.
        #[arg(long)]
        http_addr: String,
    },
    /// Remove a controller from the cluster (it stops counting toward the quorum).
    Remove {
        #[arg(long)]
        id: u64,
    },
    /// Lift the leader's quorum hold. A quorum that re-formed after an absence (status: `QUORUM
    /// HELD`) grants no lease and changes no role until every voter answers it, because the silent
    /// voter may have broken the glass (runbooks/break-glass.md). Confirm only once you know that
    /// it did not: e.g. `triadctl status --controller <its address>` shows no break-glass order, or
    /// its host is confirmed powered off with its disks intact.
    ///
    /// Example: triadctl cluster confirm-quorum --reason "dr's controller host is powered off
    /// (checked by bob at the console); no break-glass was run"
    ConfirmQuorum {
        /// Who checked what: recorded in the audit log.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Set a person's role: admin, noc, soc, auditor, or disabled.
    Put {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
    },
    /// Remove a person's override; their certificate's role applies again.
    Delete {
        #[arg(long)]
        name: String,
    },
}

fn client(config: &Option<PathBuf>) -> Result<client::Client, Error> {
    let path = config.clone().ok_or_else(|| {
        Error::InvalidArgument(
            "no triadctl config: pass --config FILE or set TRIAD_CONFIG (the demo writes DIR/triadctl.toml)".into(),
        )
    })?;
    client::Client::new(client::CtlConfig::load(&path)?)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Runs the command `args` names.
pub async fn run(args: Args) -> Result<(), Error> {
    match args.command {
        Cmd::Status { output } => {
            let v = status::gather(&client(&args.config)?).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&v)),
                Output::Table => crate::out!("{}", status::render(&v)),
            }
        }
        Cmd::Certs(CertsCmd::Init { dir, deployment, force }) => {
            let p = certs::init(&dir, &deployment, force)?;
            crate::outln!("created the CA: {}", p.display());
        }
        Cmd::Certs(CertsCmd::Issue { dir, role, name, out, san }) => {
            let out = out.unwrap_or_else(|| dir.clone());
            let (cert, key) = certs::issue(&dir, &out, &role, &name, &san)?;
            crate::outln!("issued {name} ({role}): {} {}", cert.display(), key.display());
        }
        Cmd::Cluster(ClusterCmd::Add { id, site, city, grpc_addr, http_addr }) => {
            let req = triad_proto::v1::AddControllerRequest { id, site, city, grpc_addr, http_addr };
            crate::outln!("{}", admin::cluster_add(&client(&args.config)?, req).await?);
        }
        Cmd::Cluster(ClusterCmd::Remove { id }) => {
            crate::outln!("{}", admin::cluster_remove(&client(&args.config)?, id).await?);
        }
        Cmd::Cluster(ClusterCmd::ConfirmQuorum { reason }) => {
            crate::outln!("{}", admin::confirm_quorum(&client(&args.config)?, &reason).await?);
        }
        Cmd::User(UserCmd::Put { name, role }) => {
            crate::outln!("{}", admin::user_put(&client(&args.config)?, &name, &role).await?)
        }
        Cmd::User(UserCmd::Delete { name }) => {
            crate::outln!("{}", admin::user_delete(&client(&args.config)?, &name).await?)
        }
        Cmd::Switchover { cluster, to } => {
            crate::outln!("{}", admin::switchover(&client(&args.config)?, &cluster, &to).await?)
        }
        Cmd::Failover { cluster, to, reason, accept_data_loss, attest_dead } => {
            let c = client(&args.config)?;
            crate::outln!("{}", failover::request(&c, &cluster, &to, &reason, accept_data_loss, &attest_dead).await?)
        }
        Cmd::Approve { id, wait } => {
            crate::outln!("{}", failover::approve(&client(&args.config)?, id, Duration::from_secs(wait)).await?)
        }
        Cmd::BreakGlass(BreakGlassCmd::Request { cluster, to, attest, controller }) => {
            let c = client(&args.config)?;
            crate::outln!("{}", failover::break_glass_request(&c, controller.as_deref(), &cluster, &to, &attest).await?)
        }
        Cmd::BreakGlass(BreakGlassCmd::Approve { id, controller }) => {
            crate::outln!("{}", failover::break_glass_approve(&client(&args.config)?, controller.as_deref(), id).await?)
        }
        Cmd::Cancel { id } => crate::outln!("{}", failover::cancel(&client(&args.config)?, id).await?),
        Cmd::Endpoint { cluster, watch, output } => {
            let c = client(&args.config)?;
            let show = |v: &admin::EndpointView| match output {
                Output::Json => crate::outln!("{}", serde_json::to_string(v).unwrap_or_default()),
                Output::Table => crate::outln!("{}", admin::render_endpoint(v)),
            };
            let mut reader = c.reader().await?;
            let mut last = admin::endpoint_on(&mut reader, &cluster).await?;
            show(&last);
            if watch {
                let stop = crate::shutdown_signal();
                tokio::pin!(stop);
                // One connection, picked again every few seconds (to follow a new leader) or
                // after a failed read, rather than a new one for every look.
                let mut picked = Some(std::time::Instant::now());
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {
                            if picked.is_none_or(|p| p.elapsed() > std::time::Duration::from_secs(5)) {
                                // A controller may be briefly unreachable during an election.
                                if let Ok(r) = c.reader().await {
                                    (reader, picked) = (r, Some(std::time::Instant::now()));
                                }
                            }
                            match admin::endpoint_on(&mut reader, &cluster).await {
                                // Never backwards: a follower picked during an election may lag.
                                Ok(v) if v != last && v.epoch >= last.epoch => {
                                    show(&v);
                                    last = v;
                                }
                                Ok(_) => {}
                                Err(_) => picked = None,
                            }
                        }
                    }
                }
            }
        }
        Cmd::History { cluster, output } => {
            let lines = admin::history(&client(&args.config)?, &cluster).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&lines)),
                Output::Table => crate::out!("{}", admin::render_history(&lines)),
            }
        }
        Cmd::Pause { cluster, reason } => {
            crate::outln!("{}", admin::set_paused(&client(&args.config)?, &cluster, true, &reason).await?)
        }
        Cmd::Resume { cluster, reason } => {
            crate::outln!("{}", admin::set_paused(&client(&args.config)?, &cluster, false, &reason).await?)
        }
        Cmd::Audit { limit, output } => {
            let lines = admin::audit(&client(&args.config)?, limit).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&lines)),
                Output::Table => crate::out!("{}", admin::render_audit(&lines)),
            }
        }
        Cmd::Alerts(cmd) => run_alerts(&client(&args.config)?, cmd).await?,
        Cmd::Links(cmd) => run_links(&client(&args.config)?, cmd).await?,
        Cmd::Assets(cmd) => run_assets(&client(&args.config)?, cmd).await?,
        Cmd::Services(cmd) => run_services(&client(&args.config)?, cmd).await?,
        Cmd::Drill(cmd) => run_drill(&client(&args.config)?, cmd).await?,
        Cmd::Kubernetes(cmd) => run_kubernetes(&client(&args.config)?, cmd).await?,
        Cmd::Dashboards(cmd) => run_dashboards(cmd)?,
        Cmd::Prometheus(cmd) => run_prometheus(cmd)?,
        Cmd::Demo { dir, simulated } => {
            if std::env::var_os("RUST_LOG").is_some() {
                crate::init_logging("text");
            }
            demo::run(dir, simulated).await?
        }
    }
    Ok(())
}
