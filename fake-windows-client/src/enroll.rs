//! mdmregistration.dll's RegisterDeviceWithManagement, step by step ([MS-MDE2] §3.1
//! discovery, §3.2 policy, §3.3 enrollment).

use crate::csr;
use crate::device::Device;
use crate::discovery::{self, DiscoverRequest, DiscoverResult};
use crate::error::ClientError;
use crate::http::{self, Response};

use crate::provisioning::{self, ProvisioningDoc};
use crate::soap::{self, HttpReply};
use crate::wstep;
use crate::xcep::{self, EnrollmentPolicy};
use rsa::RsaPrivateKey;

/// Discover RequestVersion sent by current Windows 11 builds.
const REQUEST_VERSION: &str = "6.0";
const DEVICE_TYPE: &str = "CIMClient_Windows";

fn reply(r: &Response) -> HttpReply<'_> {
    HttpReply {
        status: r.status,
        content_type: r.content_type.as_deref(),
        retry_after: r.retry_after.as_deref(),
        body: &r.body,
    }
}

impl Device {
    pub(crate) fn plain_client(&self) -> Result<reqwest::Client, ClientError> {
        match &self.shared_client {
            Some(c) => Ok(c.clone()),
            None => http::client(&self.tls, None),
        }
    }

    async fn post_soap(
        &mut self,
        step: &'static str,
        url: &str,
        body: String,
    ) -> Result<Response, ClientError> {
        let client = self.plain_client()?;
        let r = self
            .send_retrying(
                &client,
                step,
                reqwest::Method::POST,
                url,
                &[
                    ("Content-Type", soap::CONTENT_TYPE),
                    ("User-Agent", soap::USER_AGENT),
                ],
                Some(body),
            )
            .await?;
        soap::check_reply_with(step, &reply(&r), &mut self.warnings)?;
        Ok(r)
    }

    /// `GET <discovery URL>`; Windows expects 200 before it POSTs ([MS-MDE2] §3.1.5.1).
    pub async fn discovery_probe(&mut self, discovery_url: &str) -> Result<(), ClientError> {
        const STEP: &str = "discovery_probe";
        let client = self.plain_client()?;
        let r = self
            .send_retrying(
                &client,
                STEP,
                reqwest::Method::GET,
                discovery_url,
                &[
                    ("User-Agent", soap::USER_AGENT),
                    ("Cache-Control", "no-cache"),
                    ("Pragma", "no-cache"),
                ],
                None,
            )
            .await?;
        // http.discovery_probe_status (fail): [MS-MDE2] §3.1.5.1: the client continues
        // with the POST only after a 200 to its GET; 429 is a throttle (http.throttled).
        match r.status {
            200 => Ok(()),
            429 => Err(ClientError::Throttled {
                step: STEP,
                retry_after: r.retry_after,
            }),
            s => Err(ClientError::Http {
                step: STEP,
                status: s,
                body: r.body,
            }),
        }
    }

    /// The Discover SOAP call.
    pub async fn discover(
        &mut self,
        discovery_url: &str,
        upn: &str,
    ) -> Result<DiscoverResult, ClientError> {
        let mid = soap::new_message_id();
        let p = &self.state.profile;
        let req = DiscoverRequest {
            email: upn,
            request_version: REQUEST_VERSION,
            device_type: DEVICE_TYPE,
            application_version: &p.os_version,
            os_edition: &p.os_edition,
            auth_policies: &self.auth.advertised(),
        };
        let body = discovery::build_request(&req, &mid, discovery_url);
        let r = self.post_soap("discover", discovery_url, body).await?;
        discovery::parse_response_with(&r.body, &mid, &mut self.warnings)
    }

    /// MS-XCEP GetPolicies with the access token as DeviceEnrollmentUserToken.
    pub async fn get_policies(
        &mut self,
        discovery: &DiscoverResult,
        token: &str,
    ) -> Result<EnrollmentPolicy, ClientError> {
        let mid = soap::new_message_id();
        let url = discovery.enrollment_policy_service_url.clone();
        let body = xcep::build_request_as(&mid, &url, &self.auth.credential(token));
        let r = self.post_soap("get_policies", &url, body).await?;
        xcep::parse_response_with(&r.body, &mid, &mut self.warnings)
    }

    /// Generates the enrollment key: RSA of at least `minimalKeyLength` bits (2048 minimum).
    pub fn generate_key_pair(&mut self, policy: &EnrollmentPolicy) -> Result<(), ClientError> {
        let bits = policy.minimal_key_length.max(xcep::DEFAULT_KEY_BITS) as usize;
        let preset_pem = self.preset_key_pem.take();
        let (key, pem) = match self.preset_key.take() {
            Some(k) if rsa::traits::PublicKeyParts::size(&k) * 8 >= bits => (k, preset_pem),
            _ => {
                self.presigned_csr = None;
                let k = RsaPrivateKey::new(&mut rand::thread_rng(), bits)
                    .map_err(|e| ClientError::Crypto(format!("RSA key generation: {e}")))?;
                (k, None)
            }
        };
        let pem = match pem {
            Some(p) => p,
            None => crate::foreign::key_pem(&key)?,
        };
        self.state.key_pem = Some(pem);
        self.key = Some(key);
        Ok(())
    }

    /// The AdditionalContext items, in the order Windows sends them.
    fn context_items(&self, discovery: &DiscoverResult) -> Vec<(&'static str, String)> {
        let p = &self.state.profile;
        vec![
            // Programmatic enrollment through the agent, not from the Settings UI.
            ("UXInitiated", "false".into()),
            ("HWDevID", self.state.hw_dev_id.clone()),
            ("Locale", p.locale.clone()),
            ("TargetedUserLoggedIn", "true".into()),
            ("OSEdition", p.os_edition.clone()),
            ("DeviceName", p.device_name.clone()),
            ("MAC", p.mac.clone()),
            ("DeviceID", self.state.device_id.clone()),
            ("EnrollmentType", "Full".into()),
            ("DeviceType", DEVICE_TYPE.into()),
            ("OSVersion", p.os_version.clone()),
            ("ApplicationVersion", p.os_version.clone()),
            ("NotInOobe", "false".into()),
            // The enrollment version the discovery service offered (optional in
            // DiscoverResult; without it, the version the device asked for).
            (
                "RequestVersion",
                if discovery.enrollment_version.is_empty() {
                    REQUEST_VERSION.to_string()
                } else {
                    discovery.enrollment_version.clone()
                },
            ),
        ]
    }

    /// MS-WSTEP RequestSecurityToken with a Windows-shaped CSR; returns the parsed
    /// provisioning document (not yet verified or applied).
    pub async fn request_security_token(
        &mut self,
        discovery: &DiscoverResult,
        policy: &EnrollmentPolicy,
        token: &str,
    ) -> Result<ProvisioningDoc, ClientError> {
        let key = self
            .key
            .clone()
            .ok_or_else(|| ClientError::State("no key pair generated".into()))?;
        let device_id = self.state.device_id.clone();
        let csr_der = match self.presigned_csr.take() {
            Some((hash, id, der)) if hash == policy.hash && id == device_id => der,
            _ => csr::build(
                &key,
                &csr::windows_subject_cn(&device_id),
                &device_id,
                policy.hash,
            )?,
        };
        let mid = soap::new_message_id();
        let url = discovery.enrollment_service_url.clone();
        let items = self.context_items(discovery);
        let body =
            wstep::build_request_as(&mid, &url, &self.auth.credential(token), &csr_der, &items);
        self.state.pending_wstep = Some((url.clone(), policy.hash));
        let r = self.post_soap("request_security_token", &url, body).await?;
        wstep::check_not_chunked("request_security_token", r.chunked)?;
        let xml = wstep::parse_response_with(&r.body, &mid, &mut self.warnings)?;
        provisioning::parse(&xml)
    }

    /// `RegisterDeviceWithManagement(upn, discovery_url, access_token)`: every step in order.
    pub async fn register_device_with_management(
        &mut self,
        upn: &str,
        discovery_url: &str,
        access_token: &str,
    ) -> Result<(), ClientError> {
        self.discovery_probe(discovery_url).await?;
        let discovery = self.discover(discovery_url, upn).await?;
        let policy = self.get_policies(&discovery, access_token).await?;
        self.generate_key_pair(&policy)?;
        let doc = self
            .request_security_token(&discovery, &policy, access_token)
            .await?;
        self.apply_provisioning(discovery_url, upn, &doc)
    }
}
