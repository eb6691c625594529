//! The deployment's TLS naming conventions, shared by every binary that dials a controller.
//!
//! Certificates carry the identity in the subject's common name and the role in its
//! organisational unit. Controllers' certificates also carry the DNS name [`CONTROLLER_SAN`], and
//! clients verify that name rather than the address they dialled: addresses change (namespaces,
//! NAT, a controller moved), but only certificates issued for role `peer` carry the name, so an
//! agent's or an operator's certificate cannot impersonate a controller.

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use x509_parser::prelude::{FromDer, X509Certificate};

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

/// Client TLS for dialling another agent's failsafe service: the same trust, but the name
/// verified is the one only agents' certificates carry.
pub fn agent_client_tls(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .identity(Identity::from_pem(cert_pem, key_pem))
        .domain_name(AGENT_SAN)
}

/// Server TLS: present our certificate and require a client certificate from the deployment's CA.
pub fn server_tls(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> ServerTlsConfig {
    ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)).client_ca_root(Certificate::from_pem(ca_pem))
}

/// Reads the common name (identity) and organisational unit (role) of a DER certificate.
pub fn identity_of(der: &[u8]) -> Result<(String, String), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("unreadable client certificate: {e}"))?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or("client certificate has no common name")?;
    let ou = subject
        .iter_organizational_unit()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or("client certificate has no organisational unit (role)")?;
    Ok((cn.to_string(), ou.to_string()))
}
