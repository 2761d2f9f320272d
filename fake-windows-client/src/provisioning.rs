//! The wap-provisioningdoc returned in the RSTRC ([MS-MDE2] §3.3.4.2, OMA Client Provisioning).
//!
//! Parsing is structural only (so documentation samples with placeholders parse); [`verify`]
//! then checks the document against the key the device generated.

use crate::error::ClientError;
use roxmltree::Node;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const STEP: &str = "provisioning_doc";

/// A `parm` element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parm {
    pub name: String,
    pub value: Option<String>,
    pub datatype: Option<String>,
}

/// A `characteristic` element and its subtree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Characteristic {
    pub kind: String,
    pub parms: Vec<Parm>,
    pub children: Vec<Characteristic>,
}

impl Characteristic {
    pub fn parm(&self, name: &str) -> Option<&str> {
        self.parms
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.value.as_deref())
    }
    pub fn child(&self, kind: &str) -> Option<&Characteristic> {
        self.children.iter().find(|c| c.kind == kind)
    }
    fn parm_map(&self) -> BTreeMap<String, String> {
        self.parms
            .iter()
            .map(|p| (p.name.clone(), p.value.clone().unwrap_or_default()))
            .collect()
    }
}

/// A certificate entry under `CertificateStore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionedCert {
    /// `Root/System`, `My/User` or `My/System`.
    pub store: String,
    /// The characteristic type: the SHA-1 thumbprint claimed by the server.
    pub thumbprint: String,
    /// `EncodedCertificate` value (base64 DER).
    pub encoded: String,
    pub private_key_container: bool,
}

/// `CertificateStore/My/WSTEP/Renew`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewSettings {
    pub robo_support: Option<bool>,
    pub renew_period_days: Option<u32>,
    pub retry_interval_days: Option<u32>,
}

/// `DMClient/Provider/<ProviderID>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmClientProvider {
    pub provider_id: String,
    pub parms: BTreeMap<String, String>,
    pub poll: BTreeMap<String, String>,
}

/// The structurally parsed provisioning document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningDoc {
    pub xml: String,
    pub version: String,
    pub root_certs: Vec<ProvisionedCert>,
    pub client_certs: Vec<ProvisionedCert>,
    pub renew: Option<RenewSettings>,
    /// Parms of the `APPLICATION` characteristic (APPID w7).
    pub application: Option<BTreeMap<String, String>>,
    /// Each `APPAUTH` characteristic's parms.
    pub app_auth: Vec<BTreeMap<String, String>>,
    pub dmclient: Vec<DmClientProvider>,
    pub characteristics: Vec<Characteristic>,
}

fn parse_char(n: Node) -> Characteristic {
    let mut c = Characteristic {
        kind: n.attribute("type").unwrap_or("").to_string(),
        parms: Vec::new(),
        children: Vec::new(),
    };
    for e in n.children().filter(|e| e.is_element()) {
        match e.tag_name().name() {
            "parm" => c.parms.push(Parm {
                name: e.attribute("name").unwrap_or("").to_string(),
                value: e.attribute("value").map(str::to_string),
                datatype: e.attribute("datatype").map(str::to_string),
            }),
            "characteristic" => c.children.push(parse_char(e)),
            _ => {}
        }
    }
    c
}

fn certs_under(store: &Characteristic, label: &str, out: &mut Vec<ProvisionedCert>) {
    let sibling_pkc = store.child("PrivateKeyContainer").is_some();
    for c in store
        .children
        .iter()
        .filter(|c| c.kind != "PrivateKeyContainer")
    {
        if let Some(enc) = c.parm("EncodedCertificate") {
            out.push(ProvisionedCert {
                store: label.to_string(),
                thumbprint: c.kind.clone(),
                encoded: enc.to_string(),
                private_key_container: sibling_pkc || c.child("PrivateKeyContainer").is_some(),
            });
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Parses the document structure. Fails only on XML that is not well-formed or a wrong root.
pub fn parse(xml: &str) -> Result<ProvisioningDoc, ClientError> {
    let doc = crate::xml::parse(STEP, xml)?;
    let root = doc.root_element();
    // provisioning.root_element (fail): the RSTRC token is a wap-provisioningdoc
    // ([MS-MDE2] §3.3.4.2, OMA Client Provisioning); anything else configures nothing.
    if root.tag_name().name() != "wap-provisioningdoc" {
        return Err(ClientError::invalid(
            STEP,
            format!(
                "root element is {}, expected wap-provisioningdoc",
                root.tag_name().name()
            ),
        ));
    }
    let characteristics: Vec<Characteristic> = root
        .children()
        .filter(|e| e.is_element() && e.tag_name().name() == "characteristic")
        .map(parse_char)
        .collect();
    let mut out = ProvisioningDoc {
        xml: xml.to_string(),
        version: root.attribute("version").unwrap_or("").to_string(),
        root_certs: Vec::new(),
        client_certs: Vec::new(),
        renew: None,
        application: None,
        app_auth: Vec::new(),
        dmclient: Vec::new(),
        characteristics: characteristics.clone(),
    };
    for c in &characteristics {
        match c.kind.as_str() {
            "CertificateStore" => {
                if let Some(sys) = c.child("Root").and_then(|r| r.child("System")) {
                    certs_under(sys, "Root/System", &mut out.root_certs);
                }
                if let Some(my) = c.child("My") {
                    for scope in ["User", "System"] {
                        if let Some(s) = my.child(scope) {
                            certs_under(s, &format!("My/{scope}"), &mut out.client_certs);
                        }
                    }
                    if let Some(renew) = my.child("WSTEP").and_then(|w| w.child("Renew")) {
                        out.renew = Some(RenewSettings {
                            robo_support: renew.parm("ROBOSupport").and_then(parse_bool),
                            renew_period_days: renew
                                .parm("RenewPeriod")
                                .and_then(|v| v.parse().ok()),
                            retry_interval_days: renew
                                .parm("RetryInterval")
                                .and_then(|v| v.parse().ok()),
                        });
                    }
                }
            }
            "APPLICATION" => {
                out.application = Some(c.parm_map());
                out.app_auth = c
                    .children
                    .iter()
                    .filter(|a| a.kind == "APPAUTH")
                    .map(Characteristic::parm_map)
                    .collect();
            }
            "DMClient" => {
                if let Some(p) = c.child("Provider") {
                    for prov in &p.children {
                        out.dmclient.push(DmClientProvider {
                            provider_id: prov.kind.clone(),
                            parms: prov.parm_map(),
                            poll: prov
                                .child("Poll")
                                .map(Characteristic::parm_map)
                                .unwrap_or_default(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Percent-decoding as used in `SSLCLIENTCERTSEARCHCRITERIA`.
pub fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `SSLCLIENTCERTSEARCHCRITERIA` decoded: `Subject=<DN>&Stores=<Store\Scope>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertSearchCriteria {
    pub subject: Option<String>,
    pub stores: Option<String>,
}

impl CertSearchCriteria {
    pub fn parse(raw: &str) -> Self {
        let mut c = CertSearchCriteria {
            subject: None,
            stores: None,
        };
        for part in raw.split('&') {
            if let Some((k, v)) = part.split_once('=') {
                match k.to_ascii_lowercase().as_str() {
                    "subject" => c.subject = Some(percent_decode(v)),
                    "stores" => c.stores = Some(percent_decode(v)),
                    _ => {}
                }
            }
        }
        c
    }

    /// `CN=` values named in the subject criterion.
    pub fn common_names(&self) -> Vec<String> {
        self.subject
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter_map(|p| p.trim().split_once('='))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("CN"))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    /// Whether the criterion names the store `My/User` or `My/System` (as `MY\User`).
    pub fn matches_store(&self, store: &str) -> bool {
        match &self.stores {
            None => true,
            Some(s) => s.replace('\\', "/").eq_ignore_ascii_case(store),
        }
    }
}
