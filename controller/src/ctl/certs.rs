//! `triadctl certs`: a deployment's CA and the certificates of its controllers, agents and people.
//!
//! Identity is the subject's common name and the role its organisational unit; controllers also
//! get the DNS name `controller.triad` that every client verifies (see `triad_proto::tls`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::config::check_name;
use crate::error::{Error, Result};
use crate::state::Role;

/// File names inside a certificate directory.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{what}: {e}"))
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if private {
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    f.write_all(contents.as_bytes()).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Creates a new CA in `dir`. Refuses to overwrite an existing one unless `force`.
pub fn init(dir: &Path, deployment: &str, force: bool) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    if ca_cert_path(dir).exists() && !force {
        return Err(Error::InvalidArgument(format!(
            "{} already exists; pass --force to replace the CA (every certificate it issued stops working)",
            ca_cert_path(dir).display()
        )));
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("Triad CA ({deployment})"));
    dn.push(DnType::OrganizationName, "Triad");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    let key = KeyPair::generate().map_err(|e| tls_err("generating the CA key", e))?;
    let cert = params.self_signed(&key).map_err(|e| tls_err("signing the CA certificate", e))?;
    write_file(&ca_key_path(dir), &key.serialize_pem(), true)?;
    write_file(&ca_cert_path(dir), &cert.pem(), false)?;
    Ok(ca_cert_path(dir))
}

/// Issues a certificate for `name` with `role`, signed by the CA in `dir`; writes `NAME.pem` and
/// `NAME.key` into `out` and returns their paths.
pub fn issue(dir: &Path, out: &Path, role: &str, name: &str, extra_sans: &[String]) -> Result<(PathBuf, PathBuf)> {
    let role = Role::parse(role)
        .filter(|r| !matches!(r, Role::System | Role::Disabled))
        .ok_or_else(|| Error::InvalidArgument(format!("--role `{role}` is not one of {}", Role::NAMES)))?;
    check_name("--name", name).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let ca_pem = fs::read_to_string(ca_cert_path(dir)).map_err(|e| {
        Error::io(format!("reading {} (run `triadctl certs init` first)", ca_cert_path(dir).display()), e)
    })?;
    let ca_key_pem = fs::read_to_string(ca_key_path(dir))
        .map_err(|e| Error::io(format!("reading {}", ca_key_path(dir).display()), e))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| tls_err("reading the CA key", e))?;
    let ca_params =
        CertificateParams::from_ca_cert_pem(&ca_pem).map_err(|e| tls_err("reading the CA certificate", e))?;
    // Re-signing the CA's own parameters with its key yields an issuer with the same name and key,
    // which is all that signing needs.
    let ca = ca_params.self_signed(&ca_key).map_err(|e| tls_err("loading the CA", e))?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationalUnitName, role.as_str());
    dn.push(DnType::OrganizationName, "Triad");
    params.distinguished_name = dn;
    let mut sans = vec![SanType::DnsName(name.try_into().map_err(|e| tls_err("name as DNS name", e))?)];
    match role {
        Role::Peer => {
            sans.push(SanType::DnsName(triad_proto::tls::CONTROLLER_SAN.try_into().map_err(|e| tls_err("san", e))?))
        }
        Role::Agent => {
            sans.push(SanType::DnsName(triad_proto::tls::AGENT_SAN.try_into().map_err(|e| tls_err("san", e))?))
        }
        _ => {}
    }
    for s in extra_sans {
        if s == triad_proto::tls::CONTROLLER_SAN && role != Role::Peer {
            return Err(Error::InvalidArgument(format!("--san {s} is reserved for controllers (role peer)")));
        }
        match s.parse::<std::net::IpAddr>() {
            Ok(ip) => sans.push(SanType::IpAddress(ip)),
            Err(_) => sans.push(SanType::DnsName(s.as_str().try_into().map_err(|e| tls_err("--san", e))?)),
        }
    }
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(825);
    let key = KeyPair::generate().map_err(|e| tls_err("generating a key", e))?;
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(|e| tls_err("signing the certificate", e))?;
    fs::create_dir_all(out).map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    let cert_path = out.join(format!("{name}.pem"));
    let key_path = out.join(format!("{name}.key"));
    write_file(&key_path, &key.serialize_pem(), true)?;
    write_file(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_identity_and_role() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "test", false).unwrap();
        assert!(init(dir.path(), "test", false).is_err(), "an existing CA is not overwritten");
        let (cert, _) = issue(dir.path(), dir.path(), "noc", "alice", &[]).unwrap();
        let pem = fs::read_to_string(cert).unwrap();
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents;
        let (cn, ou) = crate::api::auth::identity_of(&der).unwrap();
        assert_eq!((cn.as_str(), ou.as_str()), ("alice", "noc"));
        assert!(issue(dir.path(), dir.path(), "root", "bob", &[]).is_err());
        assert!(issue(dir.path(), dir.path(), "noc", "bad name", &[]).is_err());
        assert!(issue(dir.path(), dir.path(), "noc", "eve", &["controller.triad".into()]).is_err());
    }
}
