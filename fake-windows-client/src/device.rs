//! One emulated Windows machine: its persistent state and inspection accessors.

use crate::clock::Clock;
use crate::csp::NodeStore;
use crate::csr::HashAlg;
use crate::error::ClientError;
use crate::http::{ClientIdentity, Exchange, TlsOptions};
use crate::profile::DeviceProfile;
use crate::provisioning::RenewSettings;
use crate::registry::{CertStores, Registry, StoredCert};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::RsaPrivateKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

pub const STATE_FILE: &str = "device.json";

/// What the device learned from a successful enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentInfo {
    /// Subkey name under `HKLM\SOFTWARE\Microsoft\Enrollments` (uppercase GUID).
    pub enrollment_guid: String,
    pub provider_id: String,
    /// `ADDR` of the w7 application: the OMA-DM endpoint.
    pub management_url: String,
    pub discovery_url: String,
    pub upn: String,
    #[serde(with = "crate::registry::b64")]
    pub client_cert_der: Vec<u8>,
    pub client_thumbprint: String,
    /// `My\User` or `My\System`.
    pub client_store: String,
    #[serde(with = "crate::registry::b64")]
    pub root_cert_der: Vec<u8>,
    pub root_thumbprint: String,
    /// Raw `SSLCLIENTCERTSEARCHCRITERIA`.
    pub cert_search_criteria: String,
    /// MS-WSTEP endpoint the certificate came from; renewals go there too.
    #[serde(default)]
    pub enrollment_service_url: String,
    /// Hash the enrollment policy asked for; renewal CSRs use it again.
    #[serde(default)]
    pub csr_hash: Option<HashAlg>,
    /// `CertificateStore/My/WSTEP/Renew` settings.
    #[serde(default)]
    pub renew: RenewSettings,
    /// Device clock (Unix seconds) when the enrollment was applied.
    #[serde(default)]
    pub enrolled_at: i64,
    /// OMA-DM digest credentials toward the server (w7 APPAUTH, AAUTHLEVEL APPSRV) with
    /// the latest nonce the server sent.
    #[serde(default)]
    pub digest: Option<crate::digest::DigestAuth>,
}

/// A certificate the device replaced (kept for negative tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousIdentity {
    #[serde(with = "crate::registry::b64")]
    pub cert_der: Vec<u8>,
    pub key_pem: String,
}

/// A RebootNow Exec the device accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootRecord {
    /// Device clock, RFC 3339.
    pub at: String,
    pub session_id: String,
}

/// How the device authenticates management sessions (for negative tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IdentityOverride {
    /// Use the certificate chosen by SSLCLIENTCERTSEARCHCRITERIA (normal behaviour).
    #[default]
    None,
    /// Present no client certificate.
    NoCertificate,
    /// Present this certificate and key instead.
    Foreign { cert_pem: String, key_pem: String },
}

/// How the device authenticates its management sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManagementAuth {
    /// Present the enrollment certificate (SSLCLIENTCERTSEARCHCRITERIA); answer digest
    /// challenges too when digest credentials were provisioned.
    #[default]
    Certificate,
    /// Present no certificate: OMA-DM digest only, from the provisioned credentials,
    /// package 1 sent without them and challenges answered (fleetdm/fleet#14662).
    Digest,
}

/// Everything persisted in `device.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceState {
    pub profile: DeviceProfile,
    pub device_id: String,
    pub hw_dev_id: String,
    #[serde(default)]
    pub tls_ca_pem: Option<String>,
    #[serde(default)]
    pub tls_insecure: bool,
    pub server_url: Option<String>,
    pub node_key: Option<String>,
    /// PKCS#8 PEM of the enrollment key, once generated.
    pub key_pem: Option<String>,
    pub registry: Registry,
    pub certs: CertStores,
    pub enrollment: Option<EnrollmentInfo>,
    pub nodes: NodeStore,
    pub session_counter: u64,
    #[serde(default)]
    pub clock: Clock,
    /// Endpoint and hash of the last MS-WSTEP request, for the enrollment it produces.
    #[serde(default)]
    pub pending_wstep: Option<(String, HashAlg)>,
    #[serde(default)]
    pub previous_identity: Option<PreviousIdentity>,
    #[serde(default)]
    pub reboots: Vec<RebootRecord>,
    /// Device clock (Unix seconds) of the last completed management session.
    #[serde(default)]
    pub last_session_at: Option<i64>,
    #[serde(default)]
    pub management_auth: ManagementAuth,
}

/// One emulated Windows machine.
pub struct Device {
    pub(crate) state: DeviceState,
    pub(crate) tls: TlsOptions,
    pub(crate) key: Option<RsaPrivateKey>,
    pub(crate) exchanges: Vec<Exchange>,
    pub(crate) identity_override: IdentityOverride,
    /// Longest Retry-After wait honoured before retrying (60 s unless set for tests).
    pub(crate) retry_after_cap: Duration,
    /// A key handed in with [`Device::use_key`], taken by the next key generation.
    pub(crate) preset_key: Option<RsaPrivateKey>,
    /// PKCS#8 PEM of the preset key, when handed in as DER ([`Device::use_key_pkcs8`]).
    pub(crate) preset_key_pem: Option<String>,
    /// A CSR signed in advance with the preset key ([`Device::presign_csr`]).
    pub(crate) presigned_csr: Option<(crate::csr::HashAlg, String, Vec<u8>)>,
    /// A client shared with other devices for requests without a client certificate.
    pub(crate) shared_client: Option<reqwest::Client>,
    /// How the device authenticates at enrollment (see [`crate::auth`]).
    pub(crate) auth: crate::credential::EnrollmentAuth,
    /// Tolerated deviations in server responses, oldest first (not saved).
    pub(crate) warnings: Vec<crate::Warning>,
    /// TLS sessions kept for resumption on the next connection (not saved).
    pub(crate) tls_sessions: crate::http::TlsSessions,
}

/// Default cap on a Retry-After wait.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode_upper(v)
}

impl Device {
    /// A new, unenrolled machine.
    pub fn new(profile: DeviceProfile, tls: TlsOptions) -> Result<Self, ClientError> {
        let state = DeviceState {
            profile,
            // DeviceID: 32 uppercase hex characters, as in the RST and SyncHdr Source.
            device_id: random_hex(16),
            hw_dev_id: random_hex(32),
            tls_ca_pem: tls
                .ca_pem
                .as_ref()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            tls_insecure: tls.insecure,
            server_url: None,
            node_key: None,
            key_pem: None,
            registry: Registry::default(),
            certs: CertStores::default(),
            enrollment: None,
            nodes: NodeStore::default(),
            session_counter: 0,
            clock: Clock::default(),
            pending_wstep: None,
            previous_identity: None,
            reboots: Vec::new(),
            last_session_at: None,
            management_auth: ManagementAuth::Certificate,
        };
        Ok(Device::with_state(state, tls, None))
    }

    /// Loads `device.json` from `state_dir`. TLS options that are empty (no CA, not
    /// insecure) fall back to the ones saved with the state.
    pub fn load(state_dir: &Path, tls: TlsOptions) -> Result<Self, ClientError> {
        let path = state_dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClientError::State(format!(
                    "no device state at {} (enroll the device first)",
                    path.display()
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let state: DeviceState = serde_json::from_str(&text)?;
        let tls = if tls.ca_pem.is_none() && !tls.insecure {
            TlsOptions {
                ca_pem: state.tls_ca_pem.as_ref().map(|p| p.as_bytes().to_vec()),
                insecure: state.tls_insecure,
            }
        } else {
            tls
        };
        let key = match &state.key_pem {
            Some(pem) => Some(
                RsaPrivateKey::from_pkcs8_pem(pem)
                    .map_err(|e| ClientError::Crypto(format!("stored key: {e}")))?,
            ),
            None => None,
        };
        Ok(Device::with_state(state, tls, key))
    }

    /// A machine with this state and key, and everything that is not saved at its
    /// defaults.
    fn with_state(state: DeviceState, tls: TlsOptions, key: Option<RsaPrivateKey>) -> Self {
        Device {
            state,
            tls,
            key,
            exchanges: Vec::new(),
            identity_override: IdentityOverride::None,
            retry_after_cap: RETRY_AFTER_CAP,
            preset_key: None,
            preset_key_pem: None,
            presigned_csr: None,
            auth: Default::default(),
            shared_client: None,
            warnings: Vec::new(),
            tls_sessions: Default::default(),
        }
    }

    /// Writes `device.json` (and the TLS options in use) to `state_dir`.
    pub fn save(&self, state_dir: &Path) -> Result<(), ClientError> {
        std::fs::create_dir_all(state_dir)?;
        let mut state = self.state.clone();
        state.tls_ca_pem = self
            .tls
            .ca_pem
            .as_ref()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        state.tls_insecure = self.tls.insecure;
        let tmp = state_dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_string_pretty(&state)?)?;
        std::fs::rename(tmp, state_dir.join(STATE_FILE))?;
        Ok(())
    }

    pub fn profile(&self) -> &DeviceProfile {
        &self.state.profile
    }
    pub fn device_id(&self) -> &str {
        &self.state.device_id
    }
    /// Claims another DeviceID (an attacker posing as an enrolled machine; the harness's
    /// security scenarios). Only for a device that is not enrolled yet.
    pub fn set_device_id(&mut self, device_id: &str) {
        self.state.device_id = device_id.to_string();
    }
    pub fn hw_dev_id(&self) -> &str {
        &self.state.hw_dev_id
    }
    pub fn node_key(&self) -> Option<&str> {
        self.state.node_key.as_deref()
    }
    pub fn server_url(&self) -> Option<&str> {
        self.state.server_url.as_deref()
    }
    pub fn tls_options(&self) -> &TlsOptions {
        &self.tls
    }
    pub fn registry(&self) -> &Registry {
        &self.state.registry
    }
    pub fn cert_store(&self) -> &CertStores {
        &self.state.certs
    }
    pub fn enrollment(&self) -> Option<&EnrollmentInfo> {
        self.state.enrollment.as_ref()
    }
    /// The generic CSP node store (everything the server added or replaced).
    pub fn nodes(&self) -> &NodeStore {
        &self.state.nodes
    }
    /// Warnings recorded since the device was created or loaded, or since the last
    /// [`Device::take_warnings`]: deviations in server responses that Windows tolerates
    /// (each names its check; see `docs/conformance.md`).
    pub fn warnings(&self) -> &[crate::Warning] {
        &self.warnings
    }

    /// Returns the recorded warnings and clears the list (e.g. once per scenario step).
    pub fn take_warnings(&mut self) -> Vec<crate::Warning> {
        std::mem::take(&mut self.warnings)
    }

    /// Every HTTP request/response this device made since it was created or loaded.
    pub fn exchanges(&self) -> &[Exchange] {
        &self.exchanges
    }

    /// The recorded exchanges, leaving the record empty (long-running devices).
    pub fn take_exchanges(&mut self) -> Vec<Exchange> {
        std::mem::take(&mut self.exchanges)
    }
    /// DER SubjectPublicKeyInfo of the enrollment key, once generated.
    pub fn public_key_der(&self) -> Option<Vec<u8>> {
        self.key.as_ref().and_then(|k| crate::csr::spki_der(k).ok())
    }
    pub fn set_management_auth(&mut self, auth: ManagementAuth) {
        self.state.management_auth = auth;
    }

    pub fn management_auth(&self) -> ManagementAuth {
        self.state.management_auth
    }

    pub fn set_identity_override(&mut self, o: IdentityOverride) {
        self.identity_override = o;
    }

    /// The enrolled client certificate and its key as PEM (certificate, PKCS#8 key).
    pub fn client_identity_pem(&self) -> Option<(String, String)> {
        let e = self.state.enrollment.as_ref()?;
        let key = self.key.as_ref()?;
        let key_pem = crate::foreign::key_pem(key).ok()?;
        Some((
            crate::foreign::pem("CERTIFICATE", &e.client_cert_der),
            key_pem,
        ))
    }

    /// The certificate and key (PEM) a renewal replaced, for presenting a retired identity.
    pub fn previous_identity_pem(&self) -> Option<(String, String)> {
        self.state.previous_identity.as_ref().map(|p| {
            (
                crate::foreign::pem("CERTIFICATE", &p.cert_der),
                p.key_pem.clone(),
            )
        })
    }

    /// Whether the device holds an MDM enrollment.
    pub fn is_enrolled(&self) -> bool {
        self.state.enrollment.is_some()
    }

    /// The device clock.
    pub fn clock(&self) -> Clock {
        self.state.clock
    }

    /// The device's current time.
    pub fn now(&self) -> time::OffsetDateTime {
        self.state.clock.now()
    }

    /// Moves the device clock forward.
    pub fn advance_clock(&mut self, by: Duration) {
        self.state.clock.advance(by);
    }

    /// Sets the device clock.
    pub fn set_clock(&mut self, at: time::OffsetDateTime) {
        self.state.clock.set(at);
    }

    /// Caps how long a Retry-After from an enrollment endpoint is honoured.
    pub fn set_retry_after_cap(&mut self, cap: Duration) {
        self.retry_after_cap = cap;
    }

    /// Uses `key` as the enrollment key instead of generating one, when it is at least
    /// as long as the enrollment policy asks (load tests use keys generated in advance).
    pub fn use_key(&mut self, key: RsaPrivateKey) {
        self.preset_key = Some(key);
        self.preset_key_pem = None;
        self.presigned_csr = None;
    }

    /// [`Device::use_key`] with the key as PKCS#8 DER, which the device also keeps as its
    /// PEM without re-encoding the key.
    pub fn use_key_pkcs8(&mut self, der: &[u8]) -> Result<(), ClientError> {
        use rsa::pkcs8::DecodePrivateKey;
        let key = RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|e| ClientError::Crypto(format!("PKCS#8 key: {e}")))?;
        self.use_key(key);
        self.preset_key_pem = Some(crate::foreign::pem("PRIVATE KEY", der));
        Ok(())
    }

    /// Signs the enrollment CSR now, with the key given to [`Device::use_key`], for a
    /// policy asking for `hash`; `request_security_token` then sends it as is. A load-test
    /// shortcut: it moves the device's own signing out of a timed window, the way each
    /// real device spends its own CPU on it. The CSR is the one that would be built later.
    pub fn presign_csr(&mut self, hash: HashAlg) -> Result<(), ClientError> {
        let key = self
            .preset_key
            .as_ref()
            .ok_or_else(|| ClientError::State("presign_csr needs a key from use_key".into()))?;
        let device_id = &self.state.device_id;
        let der = crate::csr::build(
            key,
            &crate::csr::windows_subject_cn(device_id),
            device_id,
            hash,
        )?;
        self.presigned_csr = Some((hash, device_id.clone(), der));
        Ok(())
    }

    /// Sends requests that carry no client certificate (Orbit, discovery, policy,
    /// enrollment) through `client`, sharing its connections with other devices.
    /// The client must trust the server as this device's [`TlsOptions`] would.
    pub fn set_http_client(&mut self, client: reqwest::Client) {
        self.shared_client = Some(client);
    }

    /// Number of RebootNow Execs the device accepted.
    pub fn reboots(&self) -> usize {
        self.state.reboots.len()
    }

    /// The RebootNow Execs the device accepted.
    pub fn reboot_requests(&self) -> &[RebootRecord] {
        &self.state.reboots
    }

    /// The identity for a management session: the override, or the store certificate
    /// chosen by SSLCLIENTCERTSEARCHCRITERIA.
    pub(crate) fn session_identity(&self) -> Result<Option<ClientIdentity>, ClientError> {
        match &self.identity_override {
            IdentityOverride::NoCertificate => Ok(None),
            IdentityOverride::None if self.state.management_auth == ManagementAuth::Digest => {
                Ok(None)
            }
            IdentityOverride::Foreign { cert_pem, key_pem } => {
                let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
                    .map_err(|e| ClientError::Tls(format!("foreign certificate PEM: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                    .map_err(|e| ClientError::Tls(format!("foreign key PEM: {e}")))?;
                Ok(Some(ClientIdentity {
                    cert_der: cert.to_vec(),
                    key,
                }))
            }
            IdentityOverride::None => self.select_store_identity().map(Some),
        }
    }

    /// The certificate chosen by SSLCLIENTCERTSEARCHCRITERIA (with a private key).
    pub(crate) fn select_store_cert(&self) -> Result<&StoredCert, ClientError> {
        let e = self
            .state
            .enrollment
            .as_ref()
            .ok_or_else(|| ClientError::State("device is not enrolled".into()))?;
        // Without SSLCLIENTCERTSEARCHCRITERIA (optional in the w7 APPLICATION CSP) the
        // account refers to the certificate the document installed: SslClientCertReference
        // "MY;<scope>;<thumbprint>", renewed in place.
        if e.cert_search_criteria.trim().is_empty() {
            let store = self.state.certs.store(&e.client_store).ok_or_else(|| {
                ClientError::State(format!(
                    "certificate store {:?} does not exist",
                    e.client_store
                ))
            })?;
            return store
                .iter()
                .find(|c| c.thumbprint == e.client_thumbprint && c.private_key_pem.is_some())
                .ok_or_else(|| {
                    ClientError::State(format!(
                        "no certificate {} with a private key in {}",
                        e.client_thumbprint, e.client_store
                    ))
                });
        }
        let criteria = crate::provisioning::CertSearchCriteria::parse(&e.cert_search_criteria);
        let store_name = criteria
            .stores
            .clone()
            .unwrap_or_else(|| e.client_store.clone());
        let store = self.state.certs.store(&store_name).ok_or_else(|| {
            ClientError::State(format!("certificate store {store_name:?} does not exist"))
        })?;
        let wanted_cns = criteria.common_names();
        store
            .iter()
            .rev()
            .filter(|c| c.private_key_pem.is_some())
            .find(|c| {
                let cns: Vec<String> = x509_parser::parse_x509_certificate(&c.der)
                    .map(|(_, x)| {
                        x.subject()
                            .iter_common_name()
                            .filter_map(|a| a.as_str().ok().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                // RFC 5280 §7.1: names compare without case.
                wanted_cns
                    .iter()
                    .all(|w| cns.iter().any(|cn| cn.eq_ignore_ascii_case(w)))
            })
            .ok_or_else(|| {
                ClientError::State(format!(
                    "no certificate with a private key in {store_name} matches SSLCLIENTCERTSEARCHCRITERIA {:?}",
                    e.cert_search_criteria
                ))
            })
    }

    pub(crate) fn select_store_identity(&self) -> Result<ClientIdentity, ClientError> {
        let chosen = self.select_store_cert()?;
        let key_pem = chosen.private_key_pem.as_deref().unwrap_or("");
        let key = RsaPrivateKey::from_pkcs8_pem(key_pem)
            .map_err(|e| ClientError::Crypto(format!("stored client key: {e}")))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| ClientError::Crypto(format!("client key encoding: {e}")))?;
        Ok(ClientIdentity {
            cert_der: chosen.der.clone(),
            key: PrivateKeyDer::Pkcs8(der.as_bytes().to_vec().into()),
        })
    }
}
