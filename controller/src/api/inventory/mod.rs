//! The `Inventory` service: the network links (`links.rs`), the IT asset register
//! (`assets.rs`) and the services that follow the database clusters (`services.rs`). Reads answer from the local applied state and this controller's observations
//! (agents report to every controller); changes are commands through the proposer, checked by
//! role here and again by the state, and audited, refusals too.

mod assets;
mod links;
mod services;

pub use links::{spec_from, spec_record};

use std::sync::Arc;

use tonic::{Request, Response, Status};
use triad_proto::v1 as pb;
use triad_proto::v1::inventory_server::Inventory;

use super::auth::{self, Caller};
use super::bounded_text;
use crate::brain::links::assess_all;
use crate::context::Ctx;
use crate::state::{Command, Role};

/// Who may read the inventory.
const READERS: &[Role] = &[Role::Admin, Role::Noc, Role::Soc, Role::Auditor];
/// Who may change it.
const EDITORS: &[Role] = &[Role::Admin, Role::Noc];

/// Serves the NOC's inventory.
pub struct InventoryApi {
    ctx: Arc<Ctx>,
}

impl InventoryApi {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        InventoryApi { ctx }
    }

    async fn propose(&self, caller: &Caller, command: Command) -> Result<Response<pb::MutationReply>, Status> {
        super::mutation(&self.ctx, caller, command).await
    }

    /// The caller, if it may change `what` (a refusal is audited).
    fn edit<T>(&self, req: &Request<T>, what: &str) -> Result<Caller, Status> {
        let caller = auth::caller(req, &self.ctx.state)?;
        auth::require_recorded(&self.ctx, &caller, EDITORS, what)?;
        Ok(caller)
    }

    /// The caller, if it may read.
    fn read<T>(&self, req: &Request<T>, what: &str) -> Result<Caller, Status> {
        let caller = auth::caller(req, &self.ctx.state)?;
        auth::require(&caller, READERS, what)?;
        Ok(caller)
    }

    fn counted<T>(&self, method: &str, result: Result<T, Status>) -> Result<T, Status> {
        self.ctx.metrics.rpc(method, &result);
        result
    }
}

#[tonic::async_trait]
impl Inventory for InventoryApi {
    async fn list_services(
        &self,
        req: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesReply>, Status> {
        let result = self.read(&req, "reading services").map(|_| {
            let assessed = crate::brain::services::assess_all(&self.ctx, &self.ctx.obs.snapshot());
            let g = self.ctx.state.read().expect("state lock poisoned");
            let services = g.state.services.iter().map(|(n, s)| services::record(s, assessed.get(n))).collect();
            Response::new(pb::ListServicesReply { answered_by: self.ctx.id, stale: !self.ctx.is_leader(), services })
        });
        self.counted("Inventory/ListServices", result)
    }

    async fn put_service(&self, req: Request<pb::PutServiceRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.edit(&req, "defining services")?;
            let spec = services::spec_from_toml(&req.into_inner().spec_toml)?;
            self.propose(&caller, Command::PutService(spec)).await
        }
        .await;
        self.counted("Inventory/PutService", result)
    }

    async fn delete_service(
        &self,
        req: Request<pb::DeleteServiceRequest>,
    ) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.edit(&req, "defining services")?;
            let name = bounded_text("the service's name", &req.into_inner().name, 64)?;
            self.propose(&caller, Command::DeleteService { name }).await
        }
        .await;
        self.counted("Inventory/DeleteService", result)
    }

    async fn list_links(&self, req: Request<pb::ListLinksRequest>) -> Result<Response<pb::ListLinksReply>, Status> {
        let result = self.read(&req, "reading links").map(|_| {
            let assessed = assess_all(&self.ctx, &self.ctx.obs.snapshot());
            let g = self.ctx.state.read().expect("state lock poisoned");
            let links = g.state.links.iter().map(|(n, l)| links::record(l, assessed.get(n))).collect();
            Response::new(pb::ListLinksReply { answered_by: self.ctx.id, stale: !self.ctx.is_leader(), links })
        });
        self.counted("Inventory/ListLinks", result)
    }

    async fn put_link(&self, req: Request<pb::PutLinkRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.edit(&req, "defining links")?;
            let spec = req.into_inner().spec.ok_or_else(|| Status::invalid_argument("no link given"))?;
            self.propose(&caller, Command::PutLink(spec_from(spec)?)).await
        }
        .await;
        self.counted("Inventory/PutLink", result)
    }

    async fn delete_link(&self, req: Request<pb::DeleteLinkRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.edit(&req, "defining links")?;
            let name = bounded_text("the link's name", &req.into_inner().name, 64)?;
            self.propose(&caller, Command::DeleteLink { name }).await
        }
        .await;
        self.counted("Inventory/DeleteLink", result)
    }

    async fn list_assets(&self, req: Request<pb::ListAssetsRequest>) -> Result<Response<pb::ListAssetsReply>, Status> {
        let result = self.read(&req, "reading the asset register").and_then(|_| {
            let g = self.ctx.state.read().expect("state lock poisoned");
            let (assets, matched) = assets::list(&g.state, req.get_ref())?;
            Ok(Response::new(pb::ListAssetsReply {
                answered_by: self.ctx.id,
                stale: !self.ctx.is_leader(),
                assets,
                matched,
            }))
        });
        self.counted("Inventory/ListAssets", result)
    }

    async fn get_asset(&self, req: Request<pb::GetAssetRequest>) -> Result<Response<pb::AssetRecord>, Status> {
        let result = self.read(&req, "reading the asset register").and_then(|_| {
            let g = self.ctx.state.read().expect("state lock poisoned");
            let tag = &req.get_ref().tag;
            let a = g.state.assets.assets.get(tag).ok_or_else(|| Status::not_found(format!("no asset `{tag}`")))?;
            Ok(Response::new(assets::record(a, true)))
        });
        self.counted("Inventory/GetAsset", result)
    }

    async fn put_asset(&self, req: Request<pb::PutAssetRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.edit(&req, "changing the asset register")?;
            let command = assets::put_command(req.into_inner())?;
            self.propose(&caller, command).await
        }
        .await;
        self.counted("Inventory/PutAsset", result)
    }

    async fn delete_asset(&self, req: Request<pb::DeleteAssetRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.edit(&req, "changing the asset register")?;
            let tag = bounded_text("the asset tag", &req.into_inner().tag, 64)?;
            self.propose(&caller, Command::DeleteAsset { tag }).await
        }
        .await;
        self.counted("Inventory/DeleteAsset", result)
    }

    async fn import_assets(
        &self,
        req: Request<pb::ImportAssetsRequest>,
    ) -> Result<Response<pb::ImportAssetsReply>, Status> {
        let result = async {
            let caller = self.edit(&req, "importing assets")?;
            let sites = self.ctx.state.read().expect("state lock poisoned").state.sites.keys().cloned().collect();
            let parsed = crate::inventory::csv::parse(&req.get_ref().csv, &sites)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let rejected: Vec<pb::RejectedRow> =
                parsed.rejected.iter().map(|r| pb::RejectedRow { line: r.line, reason: r.reason.clone() }).collect();
            let imported = parsed.rows.len() as u32;
            if parsed.rows.is_empty() {
                let message = "no row to import".to_string();
                return Ok(Response::new(pb::ImportAssetsReply { imported, rejected, log_index: 0, message }));
            }
            let done = self.propose(&caller, Command::ImportAssets { rows: parsed.rows }).await?.into_inner();
            Ok(Response::new(pb::ImportAssetsReply {
                imported,
                rejected,
                log_index: done.log_index,
                message: done.message,
            }))
        }
        .await;
        self.counted("Inventory/ImportAssets", result)
    }

    async fn export_assets(
        &self,
        req: Request<pb::ExportAssetsRequest>,
    ) -> Result<Response<pb::ExportAssetsReply>, Status> {
        let result = self.read(&req, "reading the asset register").map(|_| {
            let g = self.ctx.state.read().expect("state lock poisoned");
            let csv = crate::inventory::csv::write(g.state.assets.assets.values().map(|a| &a.spec));
            Response::new(pb::ExportAssetsReply { csv })
        });
        self.counted("Inventory/ExportAssets", result)
    }

    async fn asset_report(
        &self,
        req: Request<pb::AssetReportRequest>,
    ) -> Result<Response<pb::AssetReportReply>, Status> {
        let result = self.read(&req, "reading the asset register").map(|_| {
            let g = self.ctx.state.read().expect("state lock poisoned");
            Response::new(assets::report(&g.state, crate::context::now_ms()))
        });
        self.counted("Inventory/AssetReport", result)
    }

    async fn seat(&self, req: Request<pb::SeatRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.edit(&req, "assigning licence seats")?;
            let r = req.into_inner();
            let tag = bounded_text("the asset tag", &r.tag, 64)?;
            let host = bounded_text("the host", &r.host, 200)?;
            self.propose(&caller, Command::SeatLicence { tag, host, hold: r.hold }).await
        }
        .await;
        self.counted("Inventory/Seat", result)
    }

    async fn asset_issue(&self, req: Request<pb::AssetIssueRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.edit(&req, "keeping the asset issue log")?;
            let command = assets::issue_command(req.into_inner())?;
            self.propose(&caller, command).await
        }
        .await;
        self.counted("Inventory/AssetIssue", result)
    }
}
