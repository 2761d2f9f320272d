//! The wap-provisioningdoc returned in the MS-WSTEP RSTRC (MS-MDE2 §3.2.4.2; layout from
//! Microsoft's published enrollment example): certificates, the w7 APPLICATION block
//! pointing at the management endpoint, and DMClient provider settings.

use base64::Engine;
use quick_xml::escape::escape;

/// What goes into one device's provisioning document.
pub struct ProvisioningInput<'a> {
    pub provider_id: &'a str,
    pub management_url: &'a str,
    /// The root certificate's DER, base64 (standard alphabet, padded).
    pub root_cert_base64: &'a str,
    pub root_thumbprint: &'a str,
    pub client_cert_der: &'a [u8],
    pub client_thumbprint: &'a str,
    pub client_subject_cn: &'a str,
    /// "User" or "System": which `My` store holds the client certificate.
    pub client_store: &'a str,
    pub renewal_period_days: u32,
    pub device_id: &'a str,
    pub device_name: &'a str,
    pub upn: &'a str,
    /// Digest credentials for management (`--management-auth` with digest); None keeps
    /// placeholder APPAUTH values, as mTLS alone authenticates.
    pub digest: Option<DigestCredentials<'a>>,
}

/// The device's OMA-DM digest credentials (w7 APPLICATION CSP, APPAUTH).
pub struct DigestCredentials<'a> {
    /// `AAUTHNAME` of the APPSRV level: the DeviceID.
    pub name: &'a str,
    pub secret: &'a str,
    /// The first nonce, base64 (`AAUTHDATA`).
    pub nonce: &'a str,
    /// Secret of the CLIENT level (the server toward the device), which this server
    /// never uses: random, so that no two devices share one.
    pub client_secret: &'a str,
}

fn parm(name: &str, value: &str) -> String {
    format!(
        "<parm name=\"{}\" value=\"{}\"/>",
        escape(name),
        escape(value)
    )
}

fn typed_parm(name: &str, value: &str, datatype: &str) -> String {
    format!(
        "<parm name=\"{}\" value=\"{}\" datatype=\"{datatype}\"/>",
        escape(name),
        escape(value)
    )
}

/// Percent-encodes the few characters SSLCLIENTCERTSEARCHCRITERIA escapes (`=`, `,`, `\`).
fn criteria_escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace('=', "%3d")
        .replace(',', "%2c")
        .replace('\\', "%5C")
}

/// An `EncodedCertificate` parm: base64 needs no XML escaping (its alphabet has no
/// `<`, `>`, `&` or quotes), so the value is written as is.
fn encoded_certificate(base64: &str) -> String {
    format!("<parm name=\"EncodedCertificate\" value=\"{base64}\"/>")
}

/// The root store characteristic (`base64`: the certificate's DER).
fn root_store(thumbprint: &str, base64: &str) -> String {
    format!(
        "<characteristic type=\"CertificateStore\"><characteristic type=\"Root\"><characteristic type=\"System\"><characteristic type=\"{thumbprint}\">{}</characteristic></characteristic></characteristic></characteristic>",
        encoded_certificate(base64),
    )
}

/// The client certificate in `My/<store>` and the WSTEP renewal parameters. ROBOSupport
/// is advertised because the enroll endpoint performs renewals (advertising it without
/// doing so drives devices into EnrollmentState 3, protocol-reference §7).
fn my_store(store: &str, thumbprint: &str, der: &[u8], renewal_period_days: u32) -> String {
    format!(
        "<characteristic type=\"CertificateStore\"><characteristic type=\"My\"><characteristic type=\"{store}\"><characteristic type=\"{thumbprint}\">{}</characteristic><characteristic type=\"PrivateKeyContainer\"/></characteristic><characteristic type=\"WSTEP\"><characteristic type=\"Renew\">{}{}{}</characteristic></characteristic></characteristic></characteristic>",
        encoded_certificate(&base64::engine::general_purpose::STANDARD.encode(der)),
        typed_parm("ROBOSupport", "true", "boolean"),
        typed_parm("RenewPeriod", &renewal_period_days.to_string(), "integer"),
        typed_parm("RetryInterval", "4", "integer"),
    )
}

/// What goes into a renewal's provisioning document.
pub struct RenewalInput<'a> {
    pub provider_id: &'a str,
    /// The root certificate's DER, base64 (standard alphabet, padded).
    pub root_cert_base64: &'a str,
    pub root_thumbprint: &'a str,
    pub client_cert_der: &'a [u8],
    pub client_thumbprint: &'a str,
    pub client_store: &'a str,
    pub renewal_period_days: u32,
}

/// The provisioning document answering a renewal: the root, the new client certificate
/// and the provider it belongs to (layout of Microsoft's renewal example).
pub fn build_renewal(p: &RenewalInput<'_>) -> String {
    format!(
        "<wap-provisioningdoc version=\"1.1\">{}{}<characteristic type=\"APPLICATION\">{}</characteristic></wap-provisioningdoc>",
        root_store(p.root_thumbprint, p.root_cert_base64),
        my_store(p.client_store, p.client_thumbprint, p.client_cert_der, p.renewal_period_days),
        parm("PROVIDER-ID", p.provider_id),
    )
}

/// Builds the provisioning document XML.
pub fn build(p: &ProvisioningInput<'_>) -> String {
    let search = format!(
        "Subject={}&Stores={}",
        criteria_escape(&format!("CN={}", p.client_subject_cn)),
        criteria_escape(&format!("MY\\{}", p.client_store)),
    );
    let mut doc = String::with_capacity(8192);
    doc.push_str("<wap-provisioningdoc version=\"1.1\">");
    doc.push_str(&root_store(p.root_thumbprint, p.root_cert_base64));
    doc.push_str(&my_store(
        p.client_store,
        p.client_thumbprint,
        p.client_cert_der,
        p.renewal_period_days,
    ));
    doc.push_str("<characteristic type=\"APPLICATION\">");
    for (name, value) in [
        ("APPID", "w7"),
        ("PROVIDER-ID", p.provider_id),
        ("NAME", p.provider_id),
        ("ADDR", p.management_url),
        ("CONNRETRYFREQ", "6"),
        ("INITIALBACKOFFTIME", "30000"),
        ("MAXBACKOFFTIME", "120000"),
    ] {
        doc.push_str(&parm(name, value));
    }
    doc.push_str("<parm name=\"BACKCOMPATRETRYDISABLED\"/>");
    doc.push_str(&parm("DEFAULTENCODING", "application/vnd.syncml.dm+xml"));
    doc.push_str(&parm("SSLCLIENTCERTSEARCHCRITERIA", &search));
    // APPAUTH entries are required by the w7 schema. AAUTHLEVEL APPSRV is the device
    // authenticating to the server, CLIENT the server to the device (w7 APPLICATION CSP).
    let (client_name, client_secret, app_name, app_secret, nonce) = match &p.digest {
        Some(d) => (p.provider_id, d.client_secret, d.name, d.secret, d.nonce),
        None => ("dummy", "dummy", "dummy", "dummy", "nonce"),
    };
    doc.push_str("<characteristic type=\"APPAUTH\">");
    doc.push_str(&parm("AAUTHLEVEL", "CLIENT"));
    doc.push_str(&parm("AAUTHTYPE", "DIGEST"));
    if p.digest.is_some() {
        doc.push_str(&parm("AAUTHNAME", client_name));
    }
    doc.push_str(&parm("AAUTHSECRET", client_secret));
    doc.push_str(&parm("AAUTHDATA", nonce));
    doc.push_str("</characteristic><characteristic type=\"APPAUTH\">");
    doc.push_str(&parm("AAUTHLEVEL", "APPSRV"));
    doc.push_str(&parm("AAUTHTYPE", "DIGEST"));
    doc.push_str(&parm("AAUTHNAME", app_name));
    doc.push_str(&parm("AAUTHSECRET", app_secret));
    doc.push_str(&parm("AAUTHDATA", nonce));
    doc.push_str("</characteristic></characteristic>");
    doc.push_str(&format!(
        "<characteristic type=\"DMClient\"><characteristic type=\"Provider\"><characteristic type=\"{}\">",
        escape(p.provider_id)
    ));
    doc.push_str(&typed_parm("EntDeviceName", p.device_name, "string"));
    doc.push_str(&typed_parm("EntDMID", p.device_id, "string"));
    doc.push_str(&typed_parm("UPN", p.upn, "string"));
    doc.push_str(&typed_parm("SyncApplicationVersion", "5.0", "string"));
    doc.push_str("<characteristic type=\"Poll\">");
    for (name, value) in [
        ("NumberOfFirstRetries", "8"),
        ("IntervalForFirstSetOfRetries", "15"),
        ("NumberOfSecondRetries", "5"),
        ("IntervalForSecondSetOfRetries", "3"),
        ("NumberOfRemainingScheduledRetries", "0"),
        ("IntervalForRemainingScheduledRetries", "1560"),
    ] {
        doc.push_str(&typed_parm(name, value, "integer"));
    }
    doc.push_str(&typed_parm("PollOnLogin", "true", "boolean"));
    doc.push_str("</characteristic></characteristic></characteristic></characteristic>");
    doc.push_str("</wap-provisioningdoc>");
    doc
}
