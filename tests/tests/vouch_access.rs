//! The failsafe's vouch service cannot be used to stall a promotion (issue 16, item 13): only the
//! agent of the primary that the voucher's target state names may ask, and a refused request
//! does not extend the voucher's hold. Real processes: `agent-dr`'s own certificate floods
//! `agent-ndc`'s vouch port over mutual TLS while a switchover to ndc runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use triad_proto::v1::vouch_client::VouchClient;
use triad_proto::v1::VouchRequest;
use triad_tests::Deployment;

/// Asks `addr` for a vouch for `dc` at epoch 1 as fast as it answers, with agent `name`'s
/// certificate, until `stop`; counts the refusals and keeps the last reason.
async fn flood(
    d: &Deployment,
    name: &str,
    addr: String,
    stop: Arc<AtomicBool>,
) -> Result<(tokio::task::JoinHandle<()>, Arc<AtomicUsize>, Arc<Mutex<String>>)> {
    let certs = d.plan.certs_dir();
    let read = |f: &str| std::fs::read(certs.join(f)).with_context(|| format!("reading {f}"));
    let ca = std::fs::read(triad_controller::ctl::certs::ca_cert_path(&certs))?;
    let tls = triad_proto::tls::agent_client_tls(&ca, &read(&format!("{name}.pem"))?, &read(&format!("{name}.key"))?);
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let mut client = VouchClient::new(channel);
    let (refused, last) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(String::new())));
    let (r, l) = (refused.clone(), last.clone());
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let ask = VouchRequest { cluster: "customs".into(), primary: "dc".into(), epoch: 1 };
            match client.vouch(ask).await {
                Ok(reply) if !reply.get_ref().vouched => {
                    r.fetch_add(1, Ordering::Relaxed);
                    *l.lock().unwrap() = reply.into_inner().refused;
                }
                Ok(_) => *l.lock().unwrap() = "VOUCHED".into(),
                Err(e) => *l.lock().unwrap() = format!("error: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    Ok((task, refused, last))
}

/// The number after `marker` in `text` (0 when absent).
fn number_after(text: &str, marker: &str) -> u64 {
    text.split_once(marker)
        .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect::<String>())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_vouch_requests_from_another_agent_do_not_hold_back_a_promote() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    let v = d.wait_ready(true).await?;
    let ndc_vouch = d.plan.agents.iter().find(|a| a.site == "ndc").expect("ndc's agent").vouch_addr.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let (task, refused, last) = flood(&d, "agent-dr", ndc_vouch, stop.clone()).await?;
    // The flood is under way before the switchover starts.
    triad_tests::wait_for("the first refusals", Duration::from_secs(10), || async {
        (refused.load(Ordering::Relaxed) >= 5).then_some(())
    })
    .await?;
    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", "ndc"])?;
    stop.store(true, Ordering::Relaxed);
    task.await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        d.diagnose(&["controller-1", "controller-2", "controller-3", "agent-ndc"])?;
    }
    ensure!(out.status.success(), "switchover to ndc: {}{text}", String::from_utf8_lossy(&out.stderr));
    let why = last.lock().unwrap().clone();
    ensure!(why.contains("only it may ask"), "agent-dr's requests are refused for who asks: {why}");
    // ndc last vouched (and started) long ago: its hold is over, whatever agent-dr asked since.
    // On the flooded voucher of old it stayed P(1+rho)+m (more than P) after every request.
    let hold = number_after(&text, "vouch hold ");
    ensure!(
        text.contains("vouch hold ") && hold < v.lease.period_ms,
        "the promote waited {hold} ms for refused requests (P = {} ms): {text}",
        v.lease.period_ms
    );
    ensure!(refused.load(Ordering::Relaxed) >= 5);
    Ok(())
}
