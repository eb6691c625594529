//! Loading the controller's certificates and building tonic's server and client TLS settings.

use std::path::Path;

use tonic::transport::ServerTlsConfig;

use crate::config::TlsConfig;
use crate::error::{Error, Result};
use crate::raft::PeerTls;

/// The PEM files of one identity.
#[derive(Clone)]
pub struct TlsFiles {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>> {
    let bytes = triad_proto::files::read_bounded(path, triad_proto::files::CONFIG_LIMIT)
        .map_err(|e| Error::Tls(format!("{key} {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN") {
        return Err(Error::Tls(format!("{key} {} is not a PEM file", path.display())));
    }
    Ok(bytes)
}

impl TlsFiles {
    /// Reads the three PEM files named in `cfg`.
    pub fn load(cfg: &TlsConfig) -> Result<Self> {
        Ok(TlsFiles {
            ca: read("tls.ca", &cfg.ca)?,
            cert: read("tls.cert", &cfg.cert)?,
            key: read("tls.key", &cfg.key)?,
        })
    }

    /// Checks that our own certificate is a controller's (`peer`) for controller `id`: peers check
    /// that Raft messages come from the node their certificate names.
    pub fn check_own_identity(&self, id: u64) -> Result<()> {
        let der =
            x509_parser::pem::parse_x509_pem(&self.cert).map_err(|e| Error::Tls(format!("tls.cert: {e}")))?.1.contents;
        let (cn, ou) = crate::api::auth::identity_of(&der).map_err(|e| Error::Tls(format!("tls.cert: {e}")))?;
        let want = format!("controller-{id}");
        if cn != want || ou != "peer" {
            return Err(Error::ConfigKey {
                key: "tls.cert".into(),
                msg: format!(
                    "the certificate is for `{cn}` with role `{ou}`; controller {id} needs `{want}` with role `peer` \
                     (triadctl certs issue --role peer --name {want})"
                ),
            });
        }
        Ok(())
    }

    /// Server side: present our certificate and require a client certificate from the CA.
    pub fn server(&self) -> ServerTlsConfig {
        triad_proto::tls::server_tls(&self.ca, &self.cert, &self.key)
    }

    /// Client side, for dialling other controllers.
    pub fn client(&self) -> PeerTls {
        triad_proto::tls::client_tls(&self.ca, &self.cert, &self.key)
    }
}
