//! mTLS and roles: callers without a certificate from the deployment's CA are refused at the
//! handshake; callers whose role lacks the right are refused with a clear gRPC status.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;
use triad_proto::v1 as pb;
use triad_proto::v1::agent_link_client::AgentLinkClient;
use triad_proto::v1::control_client::ControlClient;
use triad_proto::v1::peer_client::PeerClient;
use triad_tests::{certs, Deployment};

async fn channel(addr: &str, ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca)?))
        .domain_name(triad_proto::tls::CONTROLLER_SAN);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(std::fs::read(cert)?, std::fs::read(key)?));
    }
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// A Control client presenting the certificate `name` from the deployment's CA.
async fn as_identity(d: &Deployment, addr: &str, name: &str) -> Result<ControlClient<Channel>> {
    let certs = d.plan.certs_dir();
    let ch = channel(
        addr,
        &certs.join("ca.pem"),
        Some((&certs.join(format!("{name}.pem")), &certs.join(format!("{name}.key")))),
    )
    .await?;
    Ok(ControlClient::new(ch))
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn strangers_and_roles_without_rights_are_refused() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_controllers()?;
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
    let addr = d.addr(leader);
    let certs_dir = d.plan.certs_dir();
    let ca = certs_dir.join("ca.pem");

    // No client certificate: the TLS handshake is refused, nothing is served.
    let mut anon = ControlClient::new(channel(&addr, &ca, None).await?);
    let r = anon.state(pb::StateRequest {}).await;
    ensure!(r.is_err(), "a client without a certificate was served");

    // A certificate from another CA, even claiming admin: refused.
    let other = d.dir().join("other-ca");
    certs::init(&other, "other", false)?;
    certs::issue(&other, &other, "admin", "mallory", &[])?;
    let mut mallory =
        ControlClient::new(channel(&addr, &ca, Some((&other.join("mallory.pem"), &other.join("mallory.key")))).await?);
    let r = mallory.put_user(pb::PutUserRequest { name: "mallory".into(), role: "admin".into() }).await;
    ensure!(r.is_err(), "a certificate from another CA was accepted");

    // Roles: each identity gets what its role allows, and a clear refusal otherwise.
    for (role, name) in [("auditor", "audrey"), ("noc", "nick"), ("soc", "sam"), ("admin", "carol")] {
        certs::issue(&certs_dir, &certs_dir, role, name, &[])?;
    }
    let mut audrey = as_identity(&d, &addr, "audrey").await?;
    audrey.state(pb::StateRequest {}).await.context("an auditor may read state")?;
    audrey.audit(pb::AuditRequest { limit: 5 }).await.context("an auditor may read the audit log")?;
    let denied = audrey.put_user(pb::PutUserRequest { name: "x".into(), role: "noc".into() }).await;
    let status = denied.expect_err("an auditor may not change users");
    ensure!(status.code() == Code::PermissionDenied);
    ensure!(
        status.message().contains("auditor") && status.message().contains("admin"),
        "message names the roles: {}",
        status.message()
    );

    let mut nick = as_identity(&d, &addr, "nick").await?;
    let r = nick
        .add_controller(pb::AddControllerRequest {
            id: 9,
            site: "dc".into(),
            city: String::new(),
            grpc_addr: "127.0.0.1:1".into(),
            http_addr: "127.0.0.1:2".into(),
        })
        .await;
    ensure!(code(r) == Code::PermissionDenied, "noc may not change membership");
    let mut sam = as_identity(&d, &addr, "sam").await?;
    ensure!(
        code(sam.audit(pb::AuditRequest { limit: 5 }).await) == Code::PermissionDenied,
        "soc may not read the audit log"
    );

    // Machine identities: an agent may not use the operator API, an operator not the peer protocol.
    let mut agent = as_identity(&d, &addr, "agent-dc").await?;
    ensure!(code(agent.state(pb::StateRequest {}).await) == Code::PermissionDenied);
    let admin_ch = channel(&addr, &ca, Some((&certs_dir.join("admin.pem"), &certs_dir.join("admin.key")))).await?;
    let r =
        PeerClient::new(admin_ch).append_entries(pb::RaftPayload { data: vec![1, 2, 3], ..Default::default() }).await;
    ensure!(code(r) == Code::PermissionDenied, "an admin may not speak Raft");

    // A controller speaks Raft only as itself: controller-1's certificate cannot ask for votes
    // as controller 2.
    let c1 =
        channel(&addr, &ca, Some((&certs_dir.join("controller-1.pem"), &certs_dir.join("controller-1.key")))).await?;
    let forged: openraft::raft::VoteRequest<u64> = openraft::raft::VoteRequest::new(openraft::Vote::new(99, 2), None);
    let r = PeerClient::new(c1)
        .vote(pb::RaftPayload { data: triad_controller::raft::encode(&forged), ..Default::default() })
        .await;
    let status = r.expect_err("a forged sender is refused");
    ensure!(
        status.code() == Code::PermissionDenied && status.message().contains("controller 2"),
        "{}",
        status.message()
    );

    // An agent stream claiming another agent's name is refused.
    let agent_ch =
        channel(&addr, &ca, Some((&certs_dir.join("agent-dc.pem"), &certs_dir.join("agent-dc.key")))).await?;
    let hello = pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::AgentHello {
            name: "agent-ndc".into(),
            site: "ndc".into(),
            host: "h".into(),
            version: "t".into(),
            ..Default::default()
        })),
    };
    let r = AgentLinkClient::new(agent_ch).attach(tokio_stream_iter(vec![hello])).await;
    ensure!(code(r) == Code::PermissionDenied, "an agent may not claim another's name");

    // An admin disables carol (an admin by certificate): she is refused from then on.
    let mut carol = as_identity(&d, &addr, "carol").await?;
    carol.state(pb::StateRequest {}).await.context("carol works before")?;
    d.put_user("carol", "disabled").await?;
    let r = carol.put_user(pb::PutUserRequest { name: "carol".into(), role: "admin".into() }).await;
    let status = r.expect_err("a disabled identity is refused");
    ensure!(status.code() == Code::PermissionDenied && status.message().contains("disabled"), "{}", status.message());

    // Bad input changes nothing and says what is wrong.
    let mut admin = d.control(leader).await?;
    let before = admin.state(pb::StateRequest {}).await?.into_inner().users.len();
    let r = admin.put_user(pb::PutUserRequest { name: "eve".into(), role: "root".into() }).await;
    let status = r.expect_err("an unknown role is refused");
    ensure!(status.code() == Code::InvalidArgument && status.message().contains("root"), "{}", status.message());
    let r = admin.put_user(pb::PutUserRequest { name: "bad name!".into(), role: "noc".into() }).await;
    ensure!(code(r) == Code::InvalidArgument);
    let r = admin.delete_user(pb::DeleteUserRequest { name: "nobody".into() }).await;
    ensure!(code(r) == Code::NotFound, "deleting a missing user is refused as not found");
    let after = admin.state(pb::StateRequest {}).await?.into_inner().users.len();
    ensure!(before == after, "refused calls changed nothing");

    // Refusals for want of a role are recorded in the audit log, with who asked (issue 16).
    let r = sam.put_user(pb::PutUserRequest { name: "sam".into(), role: "admin".into() }).await;
    ensure!(code(r) == Code::PermissionDenied, "soc may not change users");
    let mut as_agent = as_identity(&d, &addr, "agent-dc").await?;
    let r = as_agent.switchover(pb::SwitchoverRequest { cluster: "customs".into(), to: "ndc".into() }).await;
    ensure!(code(r) == Code::PermissionDenied, "an agent may not switch over");
    let mut as_peer = as_identity(&d, &addr, "controller-1").await?;
    let r = as_peer.delete_user(pb::DeleteUserRequest { name: "carol".into() }).await;
    ensure!(code(r) == Code::PermissionDenied, "a controller's certificate may not change users");
    let expected = [
        ("audrey", "auditor", "refused call: changing users"),
        ("nick", "noc", "refused call: adding a controller"),
        ("sam", "soc", "refused call: changing users"),
        ("agent-dc", "agent", "refused call: a switchover"),
        ("controller-1", "peer", "refused call: changing users"),
        ("admin", "admin", "refused call: the Raft peer protocol"),
    ];
    let recorded = triad_tests::wait_for("the refusals in the audit log", Duration::from_secs(10), || {
        let mut admin = admin.clone();
        async move {
            let entries = admin.audit(pb::AuditRequest { limit: 200 }).await.ok()?.into_inner().entries;
            let found = |(actor, role, action): &(&str, &str, &str)| {
                entries.iter().any(|e| e.actor == *actor && e.role == *role && e.action.starts_with(action))
            };
            expected.iter().all(found).then_some(())
        }
    })
    .await;
    if recorded.is_err() {
        let entries = admin.audit(pb::AuditRequest { limit: 50 }).await?.into_inner().entries;
        let actions: Vec<String> = entries.iter().map(|e| format!("{} ({}): {}", e.actor, e.role, e.action)).collect();
        anyhow::bail!("refusals missing from the audit log: {actions:#?}");
    }
    Ok(())
}

fn tokio_stream_iter(v: Vec<pb::AgentMessage>) -> impl tonic::codegen::tokio_stream::Stream<Item = pb::AgentMessage> {
    tonic::codegen::tokio_stream::iter(v)
}
