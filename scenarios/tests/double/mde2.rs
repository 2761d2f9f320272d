//! Enrollment of the double: MS-MDE2 discovery, MS-XCEP GetPolicies, MS-WSTEP
//! RequestSecurityToken, written after the samples of MS-MDE2 §4 with only required
//! elements; and the smallest Orbit endpoints the harness can drive.

use base64::Engine;
use sha1::Digest;

use super::{Defect, Enrolled, Hole, Request, Response, State, TOKEN};

const SOAP: &str = "application/soap+xml; charset=utf-8";
const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn thumbprint(der: &[u8]) -> String {
    hex::encode_upper(sha1::Sha1::digest(der))
}

/// Text of the first element with this local name.
fn find<'a>(doc: &'a roxmltree::Document, name: &str) -> Option<&'a str> {
    doc.descendants()
        .find(|n| n.tag_name().name() == name)
        .and_then(|n| n.text())
        .map(str::trim)
}

fn envelope(state: &State, action: &str, message_id: &str, body: &str) -> String {
    let action = if state.opts.defect == Some(Defect::WrongDiscoverAction)
        && action.ends_with("IDiscoveryService/DiscoverResponse")
    {
        "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPoliciesResponse"
    } else {
        action
    };
    let relates = if state.opts.defect == Some(Defect::MissingRelatesTo) {
        String::new()
    } else {
        format!("<a:RelatesTo>{message_id}</a:RelatesTo>")
    };
    format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:a=\"http://www.w3.org/2005/08/addressing\"><s:Header><a:Action s:mustUnderstand=\"1\">{action}</a:Action>{relates}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
}

fn fault(message_id: &str, subcode: &str, reason: &str) -> Response {
    let body = format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:a=\"http://www.w3.org/2005/08/addressing\"><s:Header><a:Action s:mustUnderstand=\"1\">http://www.w3.org/2005/08/addressing/soap/fault</a:Action><a:RelatesTo>{message_id}</a:RelatesTo></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang=\"en-US\">{reason}</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>"
    );
    Response::new(500, SOAP, body)
}

/// The enrollment token of a request's WS-Security header, if it is one the double
/// handed out (the fixed [`TOKEN`], an Orbit node key, or a federated login's token).
fn authenticated(state: &State, doc: &roxmltree::Document) -> Option<String> {
    let raw = doc
        .descendants()
        .find(|n| {
            n.tag_name().name() == "BinarySecurityToken" && n.tag_name().namespace() == Some(WSSE)
        })
        .and_then(|n| n.text())?
        .trim();
    let token = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| raw.to_string());
    let known = token == TOKEN
        || token == super::omadm::FEDERATED_TOKEN
        || state.node_keys.lock().expect("lock").contains_key(&token);
    known.then_some(token)
}

/// MS-MDE2 §3.1.4.1: DiscoverResponse.
pub(crate) fn discover(state: &State, req: &Request) -> Response {
    let text = req.text();
    let Ok(doc) = roxmltree::Document::parse(&text) else {
        return Response::text(400, "not XML");
    };
    let id = find(&doc, "MessageID").unwrap_or_default().to_string();
    // Federated for a device that cannot do OnPremise (MS-MDE2 §3.1.4.1.1.2).
    let offers_on_premise = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "AuthPolicy")
        .any(|n| n.text().map(str::trim) == Some("OnPremise"));
    let (policy, auth_url) = if state.opts.federated && !offers_on_premise {
        (
            "Federated",
            format!(
                "<AuthenticationServiceUrl>{}/login</AuthenticationServiceUrl>",
                state.base
            ),
        )
    } else {
        ("OnPremise", String::new())
    };
    let body = format!(
        "<DiscoverResponse xmlns=\"http://schemas.microsoft.com/windows/management/2012/01/enrollment\"><DiscoverResult><AuthPolicy>{policy}</AuthPolicy><EnrollmentVersion>4.0</EnrollmentVersion><EnrollmentPolicyServiceUrl>{base}/EnrollmentServer/Policy.svc</EnrollmentPolicyServiceUrl><EnrollmentServiceUrl>{base}/EnrollmentServer/Enrollment.svc</EnrollmentServiceUrl>{auth_url}</DiscoverResult></DiscoverResponse>",
        base = state.base
    );
    Response::new(
        200,
        SOAP,
        envelope(
            state,
            "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/DiscoverResponse",
            &id,
            &body,
        ),
    )
}

/// MS-XCEP §3.1.4.1: GetPoliciesResponse with the nil elements of the MS-MDE2 sample.
pub(crate) fn get_policies(state: &State, req: &Request) -> Response {
    let text = req.text();
    let Ok(doc) = roxmltree::Document::parse(&text) else {
        return Response::text(400, "not XML");
    };
    let id = find(&doc, "MessageID").unwrap_or_default().to_string();
    if authenticated(state, &doc).is_none() {
        return fault(&id, "s:Authentication", "unknown token");
    }
    let body = "<GetPoliciesResponse xmlns=\"http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy\"><response><policyID/><policyFriendlyName xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><nextUpdateHours xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><policiesNotChanged xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><policies><policy><policyOIDReference>0</policyOIDReference><cAs xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><attributes><commonName>double</commonName><policySchema>3</policySchema><certificateValidity><validityPeriodSeconds>2592000</validityPeriodSeconds><renewalPeriodSeconds>172800</renewalPeriodSeconds></certificateValidity><permission><enroll>true</enroll><autoEnroll>false</autoEnroll></permission><privateKeyAttributes><minimalKeyLength>2048</minimalKeyLength><keySpec xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><keyUsageProperty xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><permissions xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><algorithmOIDReference xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><cryptoProviders xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/></privateKeyAttributes><revision><majorRevision>101</majorRevision><minorRevision>0</minorRevision></revision><supersededPolicies xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><privateKeyFlags xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><subjectNameFlags xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><enrollmentFlags xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><generalFlags xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><hashAlgorithmOIDReference>0</hashAlgorithmOIDReference><rARequirements xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><keyArchivalAttributes xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><extensions xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/></attributes></policy></policies></response><cAs xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/><oIDs><oID><value>1.3.14.3.2.29</value><group>1</group><oIDReferenceID>0</oIDReferenceID><defaultName>szOID_OIWSEC_sha1RSASign</defaultName></oID></oIDs></GetPoliciesResponse>";
    let mut response = Response::new(
        200,
        SOAP,
        envelope(
            state,
            "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPoliciesResponse",
            &id,
            body,
        ),
    );
    if state.opts.defect == Some(Defect::TruncatedPolicyBody) {
        // Content-Length announces the whole document; half of it is sent.
        response.declared_length = Some(response.body.len());
        let half = response.body.len() / 2;
        response.body.truncate(half);
    }
    response
}

/// MS-WSTEP §3.1.4.1: signs the CSR and answers the provisioning document.
pub(crate) fn request_security_token(state: &State, req: &Request) -> Response {
    let text = req.text();
    let Ok(doc) = roxmltree::Document::parse(&text) else {
        return Response::text(400, "not XML");
    };
    let id = find(&doc, "MessageID").unwrap_or_default().to_string();
    let Some(token) = authenticated(state, &doc) else {
        return fault(&id, "s:Authentication", "unknown token");
    };
    let csr_b64 = doc
        .descendants()
        .find(|n| {
            n.tag_name().name() == "BinarySecurityToken"
                && n.attribute("ValueType")
                    .is_some_and(|v| v.ends_with("#PKCS10"))
        })
        .and_then(|n| n.text())
        .unwrap_or_default();
    let compact: String = csr_b64.chars().filter(|c| !c.is_whitespace()).collect();
    let Ok(csr) = base64::engine::general_purpose::STANDARD.decode(compact) else {
        return fault(&id, "s:MessageFormat", "CSR is not base64");
    };
    let device_id = doc
        .descendants()
        .find(|n| n.tag_name().name() == "ContextItem" && n.attribute("Name") == Some("DeviceID"))
        .and_then(|n| n.descendants().find(|v| v.tag_name().name() == "Value"))
        .and_then(|n| n.text())
        .unwrap_or_default()
        .trim()
        .to_string();
    if device_id.is_empty() {
        return fault(&id, "s:MessageFormat", "no DeviceID");
    }
    {
        let devices = state.devices.lock().expect("lock");
        if let Some(existing) = devices.get(&device_id) {
            // A DeviceID belongs to the token that enrolled it.
            if existing.token != token && !state.opts.holes.contains(&Hole::DeviceIdTakeover) {
                return fault(&id, "s:Authorization", "DeviceID enrolled by another host");
            }
        }
        // A host's node key enrolls that host's device only.
        let per_host = state.node_keys.lock().expect("lock").contains_key(&token);
        let used_elsewhere = devices
            .iter()
            .any(|(d, e)| e.token == token && *d != device_id);
        if per_host && used_elsewhere && !state.opts.holes.contains(&Hole::TokenReuse) {
            return fault(
                &id,
                "s:Authorization",
                "this token already enrolled a device",
            );
        }
    }
    let cert = match state.issue(&csr, &device_id) {
        Ok(c) => c,
        Err(e) => return fault(&id, "s:CertificateRequest", &e),
    };
    let serial = x509_parser::parse_x509_certificate(&cert)
        .map(|(_, c)| c.raw_serial().to_vec())
        .unwrap_or_default();
    state.devices.lock().expect("lock").insert(
        device_id.clone(),
        Enrolled {
            token,
            serial,
            cert_der: cert.clone(),
        },
    );
    let root = if state.opts.defect == Some(Defect::MissingRoot) {
        String::new()
    } else {
        format!(
            "<characteristic type=\"CertificateStore\"><characteristic type=\"Root\"><characteristic type=\"System\"><characteristic type=\"{}\"><parm name=\"EncodedCertificate\" value=\"{}\"/></characteristic></characteristic></characteristic></characteristic>",
            thumbprint(&state.ca_der),
            b64(&state.ca_der)
        )
    };
    let provisioning = format!(
        "<wap-provisioningdoc version=\"1.1\">{root}<characteristic type=\"CertificateStore\"><characteristic type=\"My\"><characteristic type=\"User\"><characteristic type=\"{thumb}\"><parm name=\"EncodedCertificate\" value=\"{cert}\"/></characteristic><characteristic type=\"PrivateKeyContainer\"/></characteristic></characteristic></characteristic><characteristic type=\"APPLICATION\"><parm name=\"APPID\" value=\"w7\"/><parm name=\"PROVIDER-ID\" value=\"double\"/><parm name=\"NAME\" value=\"double\"/><parm name=\"ADDR\" value=\"{base}/manage\"/><characteristic type=\"APPAUTH\"><parm name=\"AAUTHLEVEL\" value=\"CLIENT\"/><parm name=\"AAUTHTYPE\" value=\"DIGEST\"/><parm name=\"AAUTHSECRET\" value=\"dummy\"/><parm name=\"AAUTHDATA\" value=\"nonce\"/></characteristic><characteristic type=\"APPAUTH\"><parm name=\"AAUTHLEVEL\" value=\"APPSRV\"/><parm name=\"AAUTHTYPE\" value=\"DIGEST\"/><parm name=\"AAUTHNAME\" value=\"dummy\"/><parm name=\"AAUTHSECRET\" value=\"dummy\"/><parm name=\"AAUTHDATA\" value=\"nonce\"/></characteristic></characteristic><characteristic type=\"DMClient\"><characteristic type=\"Provider\"><characteristic type=\"double\"><parm name=\"EntDMID\" value=\"{device_id}\" datatype=\"string\"/></characteristic></characteristic></characteristic></wap-provisioningdoc>",
        thumb = thumbprint(&cert),
        cert = b64(&cert),
        base = state.base,
    );
    let body = format!(
        "<RequestSecurityTokenResponseCollection xmlns=\"http://docs.oasis-open.org/ws-sx/ws-trust/200512\"><RequestSecurityTokenResponse><TokenType>http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken</TokenType><RequestedSecurityToken><BinarySecurityToken ValueType=\"http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc\" EncodingType=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary\" xmlns=\"{WSSE}\">{}</BinarySecurityToken></RequestedSecurityToken><RequestID xmlns=\"http://schemas.microsoft.com/windows/pki/2009/01/enrollment\">0</RequestID></RequestSecurityTokenResponse></RequestSecurityTokenResponseCollection>",
        b64(provisioning.as_bytes())
    );
    Response::new(
        200,
        SOAP,
        envelope(
            state,
            "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep",
            &id,
            &body,
        ),
    )
}

/// Query parameter `name`, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() && s.is_char_boundary(i + 3) {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// MS-MDE2 §3.1.4.1.1.2 (Federated): the login page; its form posts back here.
pub(crate) fn login_page(state: &State, req: &Request) -> Response {
    let appru = query_param(&req.query, "appru").unwrap_or_default();
    if !state.opts.holes.contains(&Hole::OpenRedirectAppru)
        && !appru.to_ascii_lowercase().starts_with("ms-app://")
    {
        return Response::text(400, "appru must be an ms-app:// callback");
    }
    let body = format!(
        "<html><body><form method=\"post\" action=\"/login?appru={}\"><input name=\"username\"/><input name=\"password\" type=\"password\"/></form></body></html>",
        quick_xml::escape::escape(&appru)
    );
    Response::new(200, "text/html; charset=UTF-8", body)
}

/// The login form's post: answers the page that posts `wresult` to `appru`.
pub(crate) fn login_post(state: &State, req: &Request) -> Response {
    let appru = query_param(&req.query, "appru").unwrap_or_default();
    if !state.opts.holes.contains(&Hole::OpenRedirectAppru)
        && !appru.to_ascii_lowercase().starts_with("ms-app://")
    {
        return Response::text(400, "appru must be an ms-app:// callback");
    }
    let body = format!(
        "<html><body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"wresult\" value=\"{}\"/></form></body></html>",
        quick_xml::escape::escape(&appru),
        super::omadm::FEDERATED_TOKEN
    );
    Response::new(200, "text/html; charset=UTF-8", body)
}

/// `POST /api/fleet/orbit/enroll`: a node key per hardware UUID for the right secret.
pub(crate) fn orbit_enroll(state: &State, req: &Request) -> Response {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&req.body) else {
        return Response::new(400, "application/json", "{\"error\":\"not JSON\"}");
    };
    if body["enroll_secret"].as_str() != Some(super::SECRET) {
        return Response::new(401, "application/json", "{\"error\":\"wrong secret\"}");
    }
    let hw = body["hardware_uuid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let key = uuid::Uuid::new_v4().simple().to_string();
    state
        .node_keys
        .lock()
        .expect("lock")
        .insert(key.clone(), hw);
    Response::new(
        200,
        "application/json",
        serde_json::json!({ "orbit_node_key": key }).to_string(),
    )
}

/// `POST /api/fleet/orbit/config`: always asks for enrollment.
pub(crate) fn orbit_config(state: &State, req: &Request) -> Response {
    let key = serde_json::from_slice::<serde_json::Value>(&req.body)
        .ok()
        .and_then(|v| v["orbit_node_key"].as_str().map(str::to_string))
        .unwrap_or_default();
    if !state.node_keys.lock().expect("lock").contains_key(&key) {
        return Response::new(401, "application/json", "{\"error\":\"unknown node key\"}");
    }
    Response::new(
        200,
        "application/json",
        serde_json::json!({ "notifications": {
            "needs_programmatic_windows_mdm_enrollment": true,
            "windows_mdm_discovery_endpoint": format!("{}/EnrollmentServer/Discovery.svc", state.base),
        }})
        .to_string(),
    )
}
