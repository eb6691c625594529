//! The controller's own resources as metrics: its data directory's size, the disk that holds it,
//! and the expiry of the certificates it serves and dials with (the NOC is woken before either
//! runs out, `deploy/prometheus/rules.yml`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{GaugeVec, IntGauge, IntGaugeVec, Registry};

use super::{float_gauge_vec, gauge, gauge_vec};
use crate::context::Ctx;

/// How often the data directory is walked and the certificates read.
const EVERY: Duration = Duration::from_secs(15);

pub struct ProcessMetrics {
    pub store_bytes: IntGauge,
    pub disk_free: IntGauge,
    pub disk_size: IntGauge,
    /// By `certificate` (`ca`, `node`) and the subject's common name.
    pub cert_expiry: GaugeVec,
    /// Whether each certificate file could be read (1) or not (0).
    pub cert_readable: IntGaugeVec,
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
            cert_readable: certificate_readable_metric(r),
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

/// Whether each certificate file of the process could be read: without it, an unreadable
/// file would only drop its expiry series, and the expiry alerts would go quiet instead of loud.
pub fn certificate_readable_metric(r: &Registry) -> IntGaugeVec {
    gauge_vec(
        r,
        "triad_tls_certificate_readable",
        "Whether a certificate file this process uses could be read and parsed (1) or not (0), by certificate (ca, node)",
        &["certificate"],
    )
}

/// Sets `metric` from the certificates in the files given and `readable` for each file; a file
/// that cannot be read is logged, its expiry series dropped (no stale value) and its
/// `readable` set to 0, which `TriadCertificateUnreadable` alerts on.
pub fn export_certificates(metric: &GaugeVec, readable: &IntGaugeVec, files: &[(&str, &Path)]) {
    metric.reset();
    for (name, path) in files {
        match triad_proto::tls::certificate_expiries(path) {
            Ok(certs) => {
                for c in certs {
                    metric.with_label_values(&[name, &c.subject]).set(c.not_after as f64);
                }
                readable.with_label_values(&[name]).set(1);
            }
            Err(e) => {
                tracing::warn!("certificate expiry not exported: {e}");
                readable.with_label_values(&[name]).set(0);
            }
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
        let files = [("ca", tls.ca.as_path()), ("node", tls.cert.as_path())];
        export_certificates(&m.cert_expiry, &m.cert_readable, &files);
        tokio::time::sleep(EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificates_expiry_is_exported_and_an_unreadable_file_is_said_so() {
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
        let readable = certificate_readable_metric(&r);
        export_certificates(&metric, &readable, &[("node", path.as_path())]);
        // 2031-01-02T00:00:00Z
        assert_eq!(metric.with_label_values(&["node", "controller-1"]).get(), 1_925_078_400.0);
        assert_eq!(readable.with_label_values(&["node"]).get(), 1);
        std::fs::write(&path, "not a certificate").unwrap();
        export_certificates(&metric, &readable, &[("node", path.as_path())]);
        let expiry = r.gather().into_iter().find(|f| f.get_name() == "triad_tls_certificate_expiry_timestamp_seconds");
        assert!(expiry.is_none_or(|f| f.get_metric().is_empty()), "an unreadable file leaves no stale series");
        assert_eq!(readable.with_label_values(&["node"]).get(), 0, "and says it is unreadable");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
