//! MS-XCEP GetPolicies: the certificate enrollment policy Windows must follow when it
//! generates its key pair and CSR.

use crate::soap::NS_XCEP;

pub const ACTION_GET_POLICIES: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPolicies";
pub const ACTION_GET_POLICIES_RESPONSE: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPoliciesResponse";

/// Minimum RSA modulus size the policy demands, and the enroll endpoint enforces.
pub const MINIMAL_KEY_LENGTH: usize = 2048;

/// Whether a request body is an MS-XCEP GetPolicies element.
pub fn is_get_policies(body: roxmltree::Node<'_, '_>) -> bool {
    body.tag_name().name() == "GetPolicies" && body.tag_name().namespace() == Some(NS_XCEP)
}

/// The GetPoliciesResponse body for certificates valid `cert_validity_days` and renewed
/// `renewal_period_days` before they expire.
pub fn response_body(cert_validity_days: u32, renewal_period_days: u32) -> String {
    let validity = u64::from(cert_validity_days) * 86_400;
    let renewal = u64::from(renewal_period_days) * 86_400;
    // Shape from MS-XCEP §3.1.4.1.3 and the published GetPoliciesResponse example; the
    // hash OID is the OIW sha1RSA one that example (and Windows CSRs) use.
    format!(
        "<GetPoliciesResponse xmlns=\"{NS_XCEP}\"><response><policyID/><policyFriendlyName xsi:nil=\"true\"/><nextUpdateHours xsi:nil=\"true\"/><policiesNotChanged xsi:nil=\"true\"/><policies><policy><policyOIDReference>0</policyOIDReference><cAs xsi:nil=\"true\"/><attributes><commonName>winmdm</commonName><policySchema>3</policySchema><certificateValidity><validityPeriodSeconds>{validity}</validityPeriodSeconds><renewalPeriodSeconds>{renewal}</renewalPeriodSeconds></certificateValidity><permission><enroll>true</enroll><autoEnroll>false</autoEnroll></permission><privateKeyAttributes><minimalKeyLength>{MINIMAL_KEY_LENGTH}</minimalKeyLength><keySpec xsi:nil=\"true\"/><keyUsageProperty xsi:nil=\"true\"/><permissions xsi:nil=\"true\"/><algorithmOIDReference xsi:nil=\"true\"/><cryptoProviders xsi:nil=\"true\"/></privateKeyAttributes><revision><majorRevision>101</majorRevision><minorRevision>0</minorRevision></revision><supersededPolicies xsi:nil=\"true\"/><privateKeyFlags xsi:nil=\"true\"/><subjectNameFlags xsi:nil=\"true\"/><enrollmentFlags xsi:nil=\"true\"/><generalFlags xsi:nil=\"true\"/><hashAlgorithmOIDReference>0</hashAlgorithmOIDReference><rARequirements xsi:nil=\"true\"/><keyArchivalAttributes xsi:nil=\"true\"/><extensions xsi:nil=\"true\"/></attributes></policy></policies></response><cAs xsi:nil=\"true\"/><oIDs><oID><value>1.3.14.3.2.29</value><group>1</group><oIDReferenceID>0</oIDReferenceID><defaultName>szOID_OIWSEC_sha1RSASign</defaultName></oID></oIDs></GetPoliciesResponse>"
    )
}
