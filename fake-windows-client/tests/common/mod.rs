//! Shared helpers: a stand-in CA that issues a provisioning document for a device.
#![allow(dead_code)]

use base64::Engine;
use fake_windows_client::{csr, foreign, verify};
use rsa::RsaPrivateKey;

pub struct TestCa {
    pub key: RsaPrivateKey,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("keygen");
        let spki = csr::spki_der(&key).expect("spki");
        let der = foreign::issue("Test WSTEP CA", &key, "Test WSTEP CA", &spki, true).expect("ca");
        TestCa { key, der }
    }

    pub fn client_cert(&self, cn: &str, spki: &[u8]) -> Vec<u8> {
        foreign::issue("Test WSTEP CA", &self.key, cn, spki, false).expect("client cert")
    }
}

pub struct DocParams<'a> {
    pub root_der: &'a [u8],
    pub client_der: &'a [u8],
    pub client_thumbprint: Option<String>,
    pub scope: &'a str,
    pub provider_id: &'a str,
    pub dmclient_provider: &'a str,
    pub addr: &'a str,
    pub criteria: String,
}

pub fn provisioning_xml(p: &DocParams) -> String {
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let root_tp = verify::thumbprint(p.root_der);
    let client_tp = p
        .client_thumbprint
        .clone()
        .unwrap_or_else(|| verify::thumbprint(p.client_der));
    format!(
        r#"<wap-provisioningdoc version="1.1">
<characteristic type="CertificateStore"><characteristic type="Root"><characteristic type="System">
<characteristic type="{root_tp}"><parm name="EncodedCertificate" value="{root}"/></characteristic>
</characteristic></characteristic></characteristic>
<characteristic type="CertificateStore"><characteristic type="My"><characteristic type="{scope}">
<characteristic type="{client_tp}"><parm name="EncodedCertificate" value="{client}"/></characteristic>
<characteristic type="PrivateKeyContainer"/></characteristic>
<characteristic type="WSTEP"><characteristic type="Renew">
<parm name="ROBOSupport" value="false" datatype="boolean"/><parm name="RenewPeriod" value="42" datatype="integer"/><parm name="RetryInterval" value="4" datatype="integer"/>
</characteristic></characteristic></characteristic></characteristic>
<characteristic type="APPLICATION">
<parm name="APPID" value="w7"/><parm name="PROVIDER-ID" value="{provider}"/><parm name="NAME" value="Test MDM"/>
<parm name="ADDR" value="{addr}"/><parm name="CONNRETRYFREQ" value="6"/><parm name="INITIALBACKOFFTIME" value="30000"/>
<parm name="MAXBACKOFFTIME" value="120000"/><parm name="BACKCOMPATRETRYDISABLED"/>
<parm name="DEFAULTENCODING" value="application/vnd.syncml.dm+xml"/>
<parm name="SSLCLIENTCERTSEARCHCRITERIA" value="{criteria}"/>
<characteristic type="APPAUTH"><parm name="AAUTHLEVEL" value="CLIENT"/><parm name="AAUTHTYPE" value="DIGEST"/><parm name="AAUTHSECRET" value="dummy"/><parm name="AAUTHDATA" value="nonce"/></characteristic>
<characteristic type="APPAUTH"><parm name="AAUTHLEVEL" value="APPSRV"/><parm name="AAUTHTYPE" value="DIGEST"/><parm name="AAUTHNAME" value="dummy"/><parm name="AAUTHSECRET" value="dummy"/><parm name="AAUTHDATA" value="nonce"/></characteristic>
</characteristic>
<characteristic type="DMClient"><characteristic type="Provider"><characteristic type="{dmc}">
<parm name="EntDMID" value="abc" datatype="string"/>
<characteristic type="Poll"><parm name="NumberOfFirstRetries" value="8" datatype="integer"/></characteristic>
</characteristic></characteristic></characteristic>
</wap-provisioningdoc>"#,
        root = b64(p.root_der),
        client = b64(p.client_der),
        scope = p.scope,
        provider = p.provider_id,
        addr = p.addr,
        criteria = p.criteria.replace('&', "&amp;"),
        dmc = p.dmclient_provider,
    )
}

pub fn criteria(cn: &str, scope: &str) -> String {
    format!("Subject=CN%3D{cn}&Stores=MY%5C{scope}")
}

/// A renewal provisioning document (certificate renewal for Windows MDM): root and new
/// client certificate, WSTEP/Renew, APPLICATION with only PROVIDER-ID.
pub fn renewal_xml(root_der: &[u8], client_der: &[u8], scope: &str, provider: &str) -> String {
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    format!(
        r#"<wap-provisioningdoc version="1.1"><characteristic type="CertificateStore"><characteristic type="Root"><characteristic type="System"><characteristic type="{rt}"><parm name="EncodedCertificate" value="{r}"/></characteristic></characteristic></characteristic><characteristic type="My"><characteristic type="{scope}"><characteristic type="{ct}"><parm name="EncodedCertificate" value="{c}"/></characteristic><characteristic type="PrivateKeyContainer"/></characteristic><characteristic type="WSTEP"><characteristic type="Renew"><parm name="ROBOSupport" value="true" datatype="boolean"/><parm name="RenewPeriod" value="30" datatype="integer"/><parm name="RetryInterval" value="7" datatype="integer"/></characteristic></characteristic></characteristic></characteristic><characteristic type="APPLICATION"><parm name="PROVIDER-ID" value="{provider}"/></characteristic></wap-provisioningdoc>"#,
        rt = verify::thumbprint(root_der),
        r = b64(root_der),
        ct = verify::thumbprint(client_der),
        c = b64(client_der),
    )
}

/// A device enrolled through a provisioning document issued by `ca` (no network).
pub fn enrolled_device(ca: &TestCa) -> fake_windows_client::Device {
    use fake_windows_client::{provisioning, Device, DeviceProfile, TlsOptions};
    let mut d = Device::new(
        DeviceProfile::random(),
        TlsOptions {
            ca_pem: None,
            insecure: true,
        },
    )
    .expect("device");
    d.generate_key_pair(&fake_windows_client::xcep::EnrollmentPolicy {
        policy_schema: 3,
        minimal_key_length: 2048,
        hash_oid: None,
        hash: csr::HashAlg::Sha256,
        validity_period_seconds: None,
        renewal_period_seconds: None,
    })
    .expect("key");
    let client_der = ca.client_cert(d.device_id(), &d.public_key_der().expect("spki"));
    let xml = provisioning_xml(&DocParams {
        root_der: &ca.der,
        client_der: &client_der,
        client_thumbprint: None,
        scope: "User",
        provider_id: "TestMDM",
        dmclient_provider: "TestMDM",
        addr: "https://mdm.example.org/api/mdm/microsoft/management",
        criteria: criteria(d.device_id(), "User"),
    });
    let doc = provisioning::parse(&xml).expect("doc");
    d.apply_provisioning(
        "https://mdm.example.org/api/mdm/microsoft/discovery",
        "user@example.org",
        &doc,
    )
    .expect("applies");
    d
}

/// Points the enrollment at `url` for renewals (as discovery would have).
pub fn with_enrollment_service(
    d: fake_windows_client::Device,
    url: &str,
) -> fake_windows_client::Device {
    let dir = tempfile::tempdir().expect("dir");
    d.save(dir.path()).expect("save");
    let path = dir.path().join(fake_windows_client::device::STATE_FILE);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    v["enrollment"]["enrollment_service_url"] = serde_json::Value::String(url.to_string());
    std::fs::write(&path, v.to_string()).expect("write");
    fake_windows_client::Device::load(dir.path(), fake_windows_client::TlsOptions::default())
        .expect("load")
}
