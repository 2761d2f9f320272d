//! OMA-DM MD5 digest authentication on the wire (OMA-DM 1.2 Security, `syncml:auth-md5`):
//! the device's `SyncHdr/Cred`, the server's `Chal`, and the digest arithmetic
//! `Data = B64(MD5(B64(MD5(name ":" secret)) ":" nonce))`, the nonce being the decoded
//! bytes of the `NextNonce` the server sent last.

use base64::Engine;
use md5::{Digest, Md5};
use quick_xml::escape::escape;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `Meta/Type` of MD5 digest credentials and challenges.
pub const AUTH_MD5: &str = "syncml:auth-md5";

/// The `SyncHdr/Cred` of a device message, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cred {
    /// `Meta/Type` (`syncml:auth-md5` for digest).
    pub kind: String,
    /// `Meta/Format` (`b64`; absent means the same for auth-md5).
    pub format: Option<String>,
    pub data: String,
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn text(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name).map(|c| c.text().unwrap_or("").trim().to_string())
}

/// The `SyncHdr/Cred` of a parsed SyncML message, if any.
pub fn parse_cred(doc: &roxmltree::Document<'_>) -> Option<Cred> {
    let cred = child(child(doc.root_element(), "SyncHdr")?, "Cred")?;
    let meta = child(cred, "Meta");
    Some(Cred {
        kind: meta.and_then(|m| text(m, "Type")).unwrap_or_default(),
        format: meta.and_then(|m| text(m, "Format")),
        data: text(cred, "Data").unwrap_or_default(),
    })
}

/// `B64(MD5(name ":" secret))`: what the server stores instead of the secret.
pub fn credential_hash(name: &str, secret: &str) -> String {
    B64.encode(Md5::digest(format!("{name}:{secret}").as_bytes()))
}

/// `B64(MD5(credential_hash ":" nonce))`: the `Cred/Data` a device with these
/// credentials sends for `nonce` (decoded bytes).
pub fn expected_digest(credential_hash: &str, nonce: &[u8]) -> String {
    let mut h = Md5::new();
    h.update(credential_hash.as_bytes());
    h.update(b":");
    h.update(nonce);
    B64.encode(h.finalize())
}

/// A nonce as it travels (`NextNonce`, `AAUTHDATA`): base64.
pub fn encode_nonce(nonce: &[u8]) -> String {
    B64.encode(nonce)
}

/// The decoded bytes of a base64 nonce.
pub fn decode_nonce(nonce_b64: &str) -> Option<Vec<u8>> {
    B64.decode(nonce_b64.trim()).ok()
}

/// The `Chal` of a SyncHdr Status: digest with the next nonce (base64).
pub fn chal_xml(next_nonce_b64: &str) -> String {
    format!(
        r#"<Chal><Meta><Type xmlns="syncml:metinf">{AUTH_MD5}</Type><Format xmlns="syncml:metinf">b64</Format><NextNonce xmlns="syncml:metinf">{}</NextNonce></Meta></Chal>"#,
        escape(next_nonce_b64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of the issue that specified digest support: name `dev1`, secret
    /// `secret`, NextNonce `bm9uY2UtMQ==` ("nonce-1").
    #[test]
    fn digest_matches_the_published_vector() {
        let inner = credential_hash("dev1", "secret");
        assert_eq!(inner, "5JCaBwg5UOKeo+yimuXGew==");
        let nonce = decode_nonce("bm9uY2UtMQ==").expect("b64");
        assert_eq!(expected_digest(&inner, &nonce), "Mn2bScWUVyRvTB9HhUt69w==");
    }

    #[test]
    fn cred_is_read_from_the_synchdr() {
        let xml = r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><Cred><Meta><Format xmlns="syncml:metinf">b64</Format><Type xmlns="syncml:metinf">syncml:auth-md5</Type></Meta><Data>Mn2bScWUVyRvTB9HhUt69w==</Data></Cred></SyncHdr><SyncBody/></SyncML>"#;
        let doc = roxmltree::Document::parse(xml).expect("xml");
        let cred = parse_cred(&doc).expect("cred");
        assert_eq!(cred.kind, AUTH_MD5);
        assert_eq!(cred.format.as_deref(), Some("b64"));
        assert_eq!(cred.data, "Mn2bScWUVyRvTB9HhUt69w==");
        let none = roxmltree::Document::parse(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr/><SyncBody/></SyncML>"#,
        )
        .expect("xml");
        assert_eq!(parse_cred(&none), None);
    }

    #[test]
    fn chal_names_the_nonce() {
        assert!(chal_xml("bm9uY2UtMQ==")
            .contains(r#"<NextNonce xmlns="syncml:metinf">bm9uY2UtMQ==</NextNonce>"#));
    }
}
