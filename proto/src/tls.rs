//! The deployment's TLS naming conventions, shared by every binary that dials a controller.
//!
//! Certificates carry the identity in the subject's common name and the role in its
//! organisational unit. Controllers' certificates also carry the DNS name [`CONTROLLER_SAN`], and
//! clients verify that name rather than the address they dialled: addresses change (namespaces,
//! NAT, a controller moved), but only certificates issued for role `peer` carry the name, so an
//! agent's or an operator's certificate cannot impersonate a controller.

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// DNS subject alternative name present in every controller certificate, and only in those.
pub const CONTROLLER_SAN: &str = "controller.triad";
/// DNS subject alternative name present in every agent certificate.
pub const AGENT_SAN: &str = "agent.triad";

/// Client TLS for dialling controllers: trust only the deployment's CA, present our certificate.
pub fn client_tls(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .identity(Identity::from_pem(cert_pem, key_pem))
        .domain_name(CONTROLLER_SAN)
}
