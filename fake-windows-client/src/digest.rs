//! OMA-DM MD5 digest authentication of the device to the server (OMA-DM 1.2 Security,
//! `syncml:auth-md5`), for servers that authenticate management sessions without a
//! client certificate (Fleet does, fleetdm/fleet#14662, #46197).
//!
//! The credentials come from the provisioning document: the w7 `APPLICATION`
//! characteristic's `APPAUTH` with `AAUTHLEVEL` `APPSRV` (the device toward the server)
//! and `AAUTHTYPE` `DIGEST` gives `AAUTHNAME`, `AAUTHSECRET` and the first nonce
//! `AAUTHDATA` (base64). The device sends `SyncHdr/Cred` with
//! `Data = B64(MD5(B64(MD5(name ":" secret)) ":" nonce))`, the nonce being the decoded
//! bytes of the latest `NextNonce` the server sent (in the `Chal` of the Status for our
//! SyncHdr) or, before any, of `AAUTHDATA`. A server challenges a package without (or
//! with wrong) credentials with SyncHdr status 407 (or 401) carrying `Chal`.

use std::collections::BTreeMap;

use base64::Engine;
use md5::{Digest, Md5};

use crate::syncml::NS_METINF;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `Meta/Type` of MD5 digest credentials and challenges.
pub const AUTH_MD5: &str = "syncml:auth-md5";

/// The device's digest credentials toward the server and the nonce to use next.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DigestAuth {
    /// `AAUTHNAME` (the DeviceID, as the server provisions it).
    pub name: String,
    /// `AAUTHSECRET`.
    pub secret: String,
    /// The decoded bytes of the nonce the next credentials are hashed with.
    pub nonce: Vec<u8>,
}

impl std::fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never appears in logs or reports.
        f.debug_struct("DigestAuth")
            .field("name", &self.name)
            .field("secret", &"[redacted]")
            .field("nonce", &B64.encode(&self.nonce))
            .finish()
    }
}

impl DigestAuth {
    /// The APPSRV digest credentials among the `APPAUTH` characteristics of a
    /// provisioning document, if the server provisioned any. `AAUTHDATA` that is not
    /// base64 gives an empty first nonce (the server's first challenge brings one).
    pub fn from_app_auth(app_auth: &[BTreeMap<String, String>]) -> Option<DigestAuth> {
        let a = app_auth.iter().find(|a| {
            a.get("AAUTHLEVEL").is_some_and(|l| l == "APPSRV")
                && a.get("AAUTHTYPE")
                    .is_some_and(|t| t.eq_ignore_ascii_case("DIGEST"))
        })?;
        Some(DigestAuth {
            name: a.get("AAUTHNAME")?.clone(),
            secret: a.get("AAUTHSECRET")?.clone(),
            nonce: a
                .get("AAUTHDATA")
                .and_then(|d| B64.decode(d.trim()).ok())
                .unwrap_or_default(),
        })
    }

    /// `SyncHdr/Cred` for the current nonce.
    pub fn cred_xml(&self) -> String {
        format!(
            r#"<Cred><Meta><Format xmlns="{NS_METINF}">b64</Format><Type xmlns="{NS_METINF}">{AUTH_MD5}</Type></Meta><Data>{}</Data></Cred>"#,
            digest(&self.name, &self.secret, &self.nonce)
        )
    }

    /// Takes a server's `NextNonce` (base64) as the nonce for the next credentials.
    /// False when it is not base64 (the nonce is then left as it was).
    pub fn take_next_nonce(&mut self, next_nonce_b64: &str) -> bool {
        match B64.decode(next_nonce_b64.trim()) {
            Ok(n) => {
                self.nonce = n;
                true
            }
            Err(_) => false,
        }
    }
}

/// `B64(MD5(name ":" secret))`: what a server stores to verify digests without the secret.
pub fn inner_hash(name: &str, secret: &str) -> String {
    B64.encode(Md5::digest(format!("{name}:{secret}").as_bytes()))
}

/// `B64(MD5(B64(MD5(name ":" secret)) ":" nonce))` (OMA-DM 1.2 Security, auth-md5).
pub fn digest(name: &str, secret: &str, nonce: &[u8]) -> String {
    let mut h = Md5::new();
    h.update(inner_hash(name, secret).as_bytes());
    h.update(b":");
    h.update(nonce);
    B64.encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of the issue that specified digest support: name `dev1`, secret
    /// `secret`, NextNonce `bm9uY2UtMQ==` ("nonce-1").
    #[test]
    fn digest_matches_the_published_vector() {
        assert_eq!(inner_hash("dev1", "secret"), "5JCaBwg5UOKeo+yimuXGew==");
        let nonce = B64.decode("bm9uY2UtMQ==").expect("b64");
        assert_eq!(digest("dev1", "secret", &nonce), "Mn2bScWUVyRvTB9HhUt69w==");
    }

    #[test]
    fn credentials_come_from_the_appsrv_digest_appauth() {
        let entry = |level: &str, kind: &str| {
            BTreeMap::from([
                ("AAUTHLEVEL".to_string(), level.to_string()),
                ("AAUTHTYPE".to_string(), kind.to_string()),
                ("AAUTHNAME".to_string(), "dev1".to_string()),
                ("AAUTHSECRET".to_string(), "secret".to_string()),
                ("AAUTHDATA".to_string(), "bm9uY2UtMQ==".to_string()),
            ])
        };
        let d = DigestAuth::from_app_auth(&[entry("CLIENT", "DIGEST"), entry("APPSRV", "DIGEST")])
            .expect("APPSRV digest");
        assert_eq!(d.nonce, b"nonce-1");
        assert!(d
            .cred_xml()
            .contains("<Data>Mn2bScWUVyRvTB9HhUt69w==</Data>"));
        assert!(d.cred_xml().contains(AUTH_MD5));
        let hidden = DigestAuth {
            secret: "hunter2".into(),
            ..d.clone()
        };
        assert!(!format!("{hidden:?}").contains("hunter2"));
        assert!(DigestAuth::from_app_auth(&[entry("APPSRV", "BASIC")]).is_none());
        assert!(DigestAuth::from_app_auth(&[entry("CLIENT", "DIGEST")]).is_none());
    }

    #[test]
    fn next_nonce_replaces_the_nonce() {
        let mut d = DigestAuth {
            name: "dev1".into(),
            secret: "secret".into(),
            nonce: Vec::new(),
        };
        assert!(d.take_next_nonce("bm9uY2UtMQ=="));
        assert_eq!(d.nonce, b"nonce-1");
        assert!(!d.take_next_nonce("not base64!"));
        assert_eq!(d.nonce, b"nonce-1");
    }
}
