//! The replicated state's records as the `Control` API carries them.

use triad_proto::v1 as pb;

use crate::state::{AgentRecord, Approval, ControllerRecord, DbCluster, HostFacts, Site};

pub(super) fn approval(a: &Approval) -> pb::ApprovalRecord {
    pb::ApprovalRecord {
        id: a.id,
        action: a.action.to_string(),
        cluster: a.cluster.clone(),
        to: a.to.clone(),
        reason: a.reason.clone(),
        accept_data_loss: a.accept_data_loss,
        attested_dead: a.attested_dead.clone(),
        requested_by: a.requested_by.clone(),
        requested_ms: a.requested_ms,
        expires_ms: a.expires_ms,
        approved_by: a.approved_by.clone().unwrap_or_default(),
        state: a.state.to_string(),
    }
}

pub(super) fn site(x: &Site) -> pb::SiteRecord {
    pb::SiteRecord { name: x.name.clone(), description: x.description.clone(), city: x.city.clone() }
}

pub(super) fn controller(c: &ControllerRecord) -> pb::ControllerRecord {
    pb::ControllerRecord {
        id: c.id,
        site: c.site.clone(),
        grpc_addr: c.grpc_addr.clone(),
        http_addr: c.http_addr.clone(),
        voter: c.voter,
    }
}

/// Agent `a`, last heard by this controller at `last_seen_ms` (0: never).
pub(super) fn agent(a: &AgentRecord, last_seen_ms: u64) -> pb::AgentRecord {
    pb::AgentRecord {
        name: a.name.clone(),
        site: a.site.clone(),
        host: a.host.clone(),
        up: a.up,
        since_ms: a.since_ms,
        last_seen_ms,
        facts: Some(facts(&a.facts)),
    }
}

pub(super) fn facts(f: &HostFacts) -> pb::HostFacts {
    pb::HostFacts {
        os: f.os.clone(),
        kernel: f.kernel.clone(),
        cpus: f.cpus,
        memory_total_bytes: f.memory_total_bytes,
        disk_total_bytes: f.disk_total_bytes,
        addresses: f.addresses.clone(),
    }
}

pub(super) fn cluster(c: &DbCluster) -> pb::DbClusterRecord {
    pb::DbClusterRecord {
        epoch: c.epoch,
        primary: c.primary.clone().unwrap_or_default(),
        synchronous: c.synchronous.iter().cloned().collect(),
        vouch: c.vouch.iter().cloned().collect(),
        paused: c.paused,
        want_synchronous: c.want_synchronous.iter().cloned().collect(),
        strict: c.strict,
        failover_blocked: c.failover_blocked.clone(),
        name: c.name.clone(),
        members: c
            .members
            .values()
            .map(|m| pb::DbMemberRecord {
                name: m.name.clone(),
                site: m.site.clone(),
                agent: m.agent.clone(),
                endpoint: m.endpoint.clone(),
            })
            .collect(),
    }
}
