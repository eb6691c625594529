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
pub fn identity_of(der: &[u8]) -> Result<(String, String), IdentityError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| IdentityError::Cert(format!("unreadable client certificate: {e}")))?;
    let subject = cert.subject();
    let field = |it: Option<&x509_parser::x509::AttributeTypeAndValue>, what: &str| {
        let value = it.and_then(|a| a.as_str().ok());
        value.map(str::to_string).ok_or_else(|| IdentityError::Cert(format!("client certificate has no {what}")))
    };
    let cn = field(subject.iter_common_name().next(), "common name")?;
    let ou = field(subject.iter_organizational_unit().next(), "organisational unit (role)")?;
    Ok((cn, ou))
}

/// What is wrong with a certificate and key pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Cert(String),
    #[error("{0}")]
    Key(String),
    #[error("the private key does not belong to the certificate")]
    Mismatch,
}

/// Checks a PEM certificate and its PEM private key before anything dials or serves with them:
/// the certificate parses, the key parses, and the key is the certificate's (a mismatch would
/// otherwise show only as "transport error" on every call). Returns the certificate's common
/// name and organisational unit (identity and role).
pub fn check_identity_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<(String, String), IdentityError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem)
        .map_err(|e| IdentityError::Cert(format!("the certificate is not PEM: {e}")))?;
    let (_, cert) = X509Certificate::from_der(&pem.contents)
        .map_err(|e| IdentityError::Cert(format!("unreadable certificate: {e}")))?;
    let key_text =
        std::str::from_utf8(key_pem).map_err(|_| IdentityError::Key("the private key is not PEM text".into()))?;
    let key =
        rcgen::KeyPair::from_pem(key_text).map_err(|e| IdentityError::Key(format!("unreadable private key: {e}")))?;
    use rcgen::PublicKeyData;
    if key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(IdentityError::Mismatch);
    }
    identity_of(&pem.contents)
}

/// [`check_identity_pem`] on the files at `cert` and `key` (each read with the configuration
/// size limit); the error names the file at fault and why.
pub fn check_identity_files(cert: &std::path::Path, key: &std::path::Path) -> Result<(String, String), IdentityError> {
    use crate::files::{read_bounded, CONFIG_LIMIT};
    let cert_pem =
        read_bounded(cert, CONFIG_LIMIT).map_err(|e| IdentityError::Cert(format!("{}: {e}", cert.display())))?;
    let key_pem = read_bounded(key, CONFIG_LIMIT).map_err(|e| IdentityError::Key(format!("{}: {e}", key.display())))?;
    check_identity_pem(&cert_pem, &key_pem).map_err(|e| match e {
        IdentityError::Cert(why) => IdentityError::Cert(format!("{}: {why}", cert.display())),
        IdentityError::Key(why) => IdentityError::Key(format!("{}: {why}", key.display())),
        IdentityError::Mismatch => IdentityError::Key(format!(
            "{} is not the private key of the certificate {}",
            key.display(),
            cert.display()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![AGENT_SAN.to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, "agent");
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_key_from_another_certificate_is_named_as_such() {
        let (cert, key) = issue("agent-dc");
        assert_eq!(check_identity_pem(cert.as_bytes(), key.as_bytes()), Ok(("agent-dc".into(), "agent".into())));
        let (_, other_key) = issue("agent-dc");
        assert_eq!(check_identity_pem(cert.as_bytes(), other_key.as_bytes()), Err(IdentityError::Mismatch));
        assert!(matches!(check_identity_pem(b"garbage", key.as_bytes()), Err(IdentityError::Cert(_))));
        assert!(matches!(check_identity_pem(cert.as_bytes(), b"garbage"), Err(IdentityError::Key(_))));
    }
}

/// A certificate's expiry, for the metric `triad_tls_certificate_expiry_timestamp_seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// The subject's common name (empty if it has none).
    pub subject: String,
    /// `notAfter`, seconds since the Unix epoch.
    pub not_after: i64,
}

/// The expiry of every certificate in the PEM file at `path` (a CA bundle may hold several).
pub fn certificate_expiries(path: &std::path::Path) -> Result<Vec<Expiry>, IdentityError> {
    use crate::files::{read_bounded, CONFIG_LIMIT};
    let pem = read_bounded(path, CONFIG_LIMIT).map_err(|e| IdentityError::Cert(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
        let block = block.map_err(|e| IdentityError::Cert(format!("{}: not PEM: {e}", path.display())))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let (_, cert) = X509Certificate::from_der(&block.contents)
            .map_err(|e| IdentityError::Cert(format!("{}: unreadable certificate: {e}", path.display())))?;
        let subject = cert.subject().iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or("").to_string();
        out.push(Expiry { subject, not_after: cert.validity().not_after.timestamp() });
    }
    if out.is_empty() {
        return Err(IdentityError::Cert(format!("{}: no certificate in the file", path.display())));
    }
    Ok(out)
}
