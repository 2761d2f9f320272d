//! The payload of an ADMX-backed policy (a Policy CSP node whose DDF `MSFT:AllowedValues`
//! has `ValueType="ADMX"`).
//!
//! Evidence: Microsoft Learn, "Understanding ADMX policies" (sections "Enabling a policy",
//! "Disabling a policy") and every `policy-csp-admx-*` page: such a policy "requires a
//! special SyncML format to enable or disable", its `Meta/Format` must be `chr` (the
//! catalogue's DFFormat, so another format answers 415 like any node), and its data is XML:
//! `<enabled/>` followed by one `<data id="…" value="…"/>` per ADMX element, or
//! `<disabled/>`; "not configured" is a Delete. A payload that is not XML or says neither
//! `<enabled/>` nor `<disabled/>` cannot be applied. Microsoft documents no status code for
//! that case; the device answers 400, OMA SyncML RepPro 1.2.2 §10's code for a command
//! whose data is malformed.
//!
//! Limits, kept permissive for lack of evidence: the ADMX files themselves are not bundled,
//! so `data` ids are not checked against the policy's ADMX elements, and elements other
//! than `enabled`, `disabled` and `data` are ignored.

/// Why an ADMX payload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmxError {
    #[error("not well-formed XML: {0}")]
    NotXml(String),
    #[error("neither <enabled/> nor <disabled/>")]
    NoState,
    #[error("both <enabled/> and <disabled/>")]
    BothStates,
    #[error("<data> without id or value")]
    DataWithoutIdOrValue,
}

/// Checks an ADMX-backed policy's payload (the `Data` text, CDATA already unwrapped).
pub fn check(data: &str) -> Result<(), AdmxError> {
    let wrapped = format!("<admx>{data}</admx>");
    let doc = crate::xml::parse("admx", &wrapped).map_err(|e| AdmxError::NotXml(e.to_string()))?;
    let elements: Vec<_> = doc
        .root_element()
        .children()
        .filter(|n| n.is_element())
        .collect();
    let has = |name: &str| elements.iter().any(|e| e.tag_name().name() == name);
    match (has("enabled"), has("disabled")) {
        (false, false) => return Err(AdmxError::NoState),
        (true, true) => return Err(AdmxError::BothStates),
        _ => {}
    }
    let bad_data = elements.iter().any(|e| {
        e.tag_name().name() == "data"
            && (e.attribute("id").is_none() || e.attribute("value").is_none())
    });
    if bad_data {
        return Err(AdmxError::DataWithoutIdOrValue);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(check("<enabled/>"), Ok(()));
        assert_eq!(check(" <disabled/> "), Ok(()));
        assert_eq!(
            check(r#"<enabled/><data id="List" value="https://contoso.com&#xF000;2,1,0,0"/>"#),
            Ok(())
        );
        assert_eq!(check(""), Err(AdmxError::NoState));
        assert_eq!(check("1"), Err(AdmxError::NoState));
        assert_eq!(check("<enabled/><disabled/>"), Err(AdmxError::BothStates));
        assert_eq!(
            check(r#"<enabled/><data id="x"/>"#),
            Err(AdmxError::DataWithoutIdOrValue)
        );
        assert!(matches!(check("<enabled>"), Err(AdmxError::NotXml(_))));
    }
}
