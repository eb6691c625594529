//! The controller's own resources as metrics: its data directory's size, the disk that holds it,
//! and the expiry of the certificates it serves and dials with (the NOC is woken before either
//! runs out, `deploy/prometheus/rules.yml`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{GaugeVec, IntGauge, Registry};

use super::{float_gauge_vec, gauge};
use crate::context::Ctx;

/// How often the data directory is walked and the certificates read.
const EVERY: Duration = Duration::from_secs(15);

pub struct ProcessMetrics {
    pub store_bytes: IntGauge,
    pub disk_free: IntGauge,
    pub disk_size: IntGauge,
    /// By `certificate` (`ca`, `node`) and the subject's common name.
    pub cert_expiry: GaugeVec,
}

impl ProcessMetrics {
    pub fn new(r: &Registry) -> Self {
        ProcessMetrics {
            store_bytes: gauge(r, "triad_controller_store_bytes", "Bytes in the controller's data directory"),
            disk_free: gauge(
                r,
                "triad_controller_disk_free_bytes",
                "Bytes free (to unprivileged users) on the filesystem holding the data directory",
            ),
            disk_size: gauge(
                r,
                "triad_controller_disk_size_bytes",
                "Size of the filesystem holding the data directory",
            ),
            cert_expiry: certificate_expiry_metric(r),
        }
    }
}

/// The metric both controllers and agents export for their certificates.
pub fn certificate_expiry_metric(r: &Registry) -> GaugeVec {
    float_gauge_vec(
        r,
        "triad_tls_certificate_expiry_timestamp_seconds",
        "When a certificate this process uses expires (notAfter), by certificate (ca, node) and subject",
        &["certificate", "subject"],
    )
}

/// Sets `metric` from the certificates in the files given; a file that cannot be read is
/// logged and its series dropped, so that a rule on `absent` or a stale value never hides it.
pub fn export_certificates(metric: &GaugeVec, files: &[(&str, &Path)]) {
    metric.reset();
    for (name, path) in files {
        match triad_proto::tls::certificate_expiries(path) {
            Ok(certs) => {
                for c in certs {
                    metric.with_label_values(&[name, &c.subject]).set(c.not_after as f64);
                }
            }
            Err(e) => tracing::warn!("certificate expiry not exported: {e}"),
        }
    }
}

/// Bytes in the files under `dir` (links not followed; unreadable entries skipped).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Updates the process metrics every [`EVERY`], for as long as the controller runs.
pub async fn follow_process(ctx: Arc<Ctx>) {
    let m = &ctx.metrics.process;
    loop {
        let data_dir = ctx.cfg.data_dir.clone();
        let walked = tokio::task::spawn_blocking(move || {
            let fs = nix::sys::statvfs::statvfs(&data_dir);
            (dir_bytes(&data_dir), fs)
        })
        .await;
        match walked {
            Ok((bytes, fs)) => {
                m.store_bytes.set(bytes as i64);
                match fs {
                    Ok(fs) => {
                        let frag = fs.fragment_size();
                        m.disk_free.set(fs.blocks_available().saturating_mul(frag) as i64);
                        m.disk_size.set(fs.blocks().saturating_mul(frag) as i64);
                    }
                    Err(e) => tracing::warn!("statvfs of {}: {e}", ctx.cfg.data_dir.display()),
                }
            }
            Err(e) => tracing::warn!("measuring the data directory: {e}"),
        }
        let tls = &ctx.cfg.tls;
        export_certificates(&m.cert_expiry, &[("ca", tls.ca.as_path()), ("node", tls.cert.as_path())]);
        tokio::time::sleep(EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificates_expiry_is_exported_and_an_unreadable_file_drops_its_series() {
        let dir = std::env::temp_dir().join(format!("triad-cert-expiry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["controller.triad".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "controller-1");
        params.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join("node.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        let r = Registry::new();
        let metric = certificate_expiry_metric(&r);
        export_certificates(&metric, &[("node", path.as_path())]);
        // 2031-01-02T00:00:00Z
        assert_eq!(metric.with_label_values(&["node", "controller-1"]).get(), 1_925_078_400.0);
        std::fs::write(&path, "not a certificate").unwrap();
        export_certificates(&metric, &[("node", path.as_path())]);
        assert!(r.gather().iter().all(|f| f.get_metric().is_empty()), "an unreadable file leaves no stale series");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
