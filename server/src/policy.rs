//! MS-XCEP GetPolicies: the certificate enrollment policy Windows must follow when it
//! generates its key pair and CSR.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::soap::{self, Fault, FaultSubcode, NS_XCEP};

pub const ACTION_GET_POLICIES: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPolicies";
pub const ACTION_GET_POLICIES_RESPONSE: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPoliciesResponse";

/// Minimum RSA modulus size the policy demands, and the enroll endpoint enforces.
pub const MINIMAL_KEY_LENGTH: usize = 2048;

/// `POST /api/mdm/microsoft/policy`.
pub async fn get_policies(State(state): State<Arc<AppState>>, body: String) -> Response {
    let doc = match soap::parse_xml(&body) {
        Ok(d) => d,
        Err(e) => return Fault::new(FaultSubcode::MessageFormat, e).into_response(),
    };
    let req = match soap::parse_request(&doc, ACTION_GET_POLICIES) {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let mid = req.message_id.as_deref();
    if req.body.tag_name().name() != "GetPolicies"
        || req.body.tag_name().namespace() != Some(NS_XCEP)
    {
        return Fault::new(
            FaultSubcode::MessageFormat,
            "body is not an MS-XCEP GetPolicies element",
        )
        .relating_to(mid)
        .into_response();
    }
    if let Err(f) = state.authenticate_token(&req).await {
        return f.into_response();
    }
    let validity = u64::from(state.config.cert_validity_days) * 86_400;
    let renewal = u64::from(state.config.renewal_period_days) * 86_400;
    // Shape from MS-XCEP §3.1.4.1.3 and the published GetPoliciesResponse example; the
    // hash OID is the OIW sha1RSA one that example (and Windows CSRs) use.
    let body = format!(
        "<GetPoliciesResponse xmlns=\"{NS_XCEP}\"><response><policyID/><policyFriendlyName xsi:nil=\"true\"/><nextUpdateHours xsi:nil=\"true\"/><policiesNotChanged xsi:nil=\"true\"/><policies><policy><policyOIDReference>0</policyOIDReference><cAs xsi:nil=\"true\"/><attributes><commonName>winmdm</commonName><policySchema>3</policySchema><certificateValidity><validityPeriodSeconds>{validity}</validityPeriodSeconds><renewalPeriodSeconds>{renewal}</renewalPeriodSeconds></certificateValidity><permission><enroll>true</enroll><autoEnroll>false</autoEnroll></permission><privateKeyAttributes><minimalKeyLength>{MINIMAL_KEY_LENGTH}</minimalKeyLength><keySpec xsi:nil=\"true\"/><keyUsageProperty xsi:nil=\"true\"/><permissions xsi:nil=\"true\"/><algorithmOIDReference xsi:nil=\"true\"/><cryptoProviders xsi:nil=\"true\"/></privateKeyAttributes><revision><majorRevision>101</majorRevision><minorRevision>0</minorRevision></revision><supersededPolicies xsi:nil=\"true\"/><privateKeyFlags xsi:nil=\"true\"/><subjectNameFlags xsi:nil=\"true\"/><enrollmentFlags xsi:nil=\"true\"/><generalFlags xsi:nil=\"true\"/><hashAlgorithmOIDReference>0</hashAlgorithmOIDReference><rARequirements xsi:nil=\"true\"/><keyArchivalAttributes xsi:nil=\"true\"/><extensions xsi:nil=\"true\"/></attributes></policy></policies></response><cAs xsi:nil=\"true\"/><oIDs><oID><value>1.3.14.3.2.29</value><group>1</group><oIDReferenceID>0</oIDReferenceID><defaultName>szOID_OIWSEC_sha1RSASign</defaultName></oID></oIDs></GetPoliciesResponse>"
    );
    soap::soap_response(
        StatusCode::OK,
        soap::envelope(ACTION_GET_POLICIES_RESPONSE, mid, "", &body),
    )
}
