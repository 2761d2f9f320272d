//! How the device authenticates at enrollment (MS-MDE2 §3.1.4.1.1.2 AuthPolicy):
//! `OnPremise` with the token handed to RegisterDeviceWithManagement (as the Orbit agent
//! does) or with a user name and password (UsernameToken), or `Federated`, where the
//! token comes from the server's AuthenticationServiceUrl page, as Windows' web
//! authentication broker gets it (the page posts a `wresult` form field back to the
//! app, as in Microsoft's federated enrollment example).

use crate::device::Device;
use crate::discovery::DiscoverResult;
use crate::error::ClientError;

pub use crate::credential::{Credential, EnrollmentAuth, PASSWORD_TEXT};

/// The `appru` Windows passes to the authentication page (its enrollment app).
const APPRU: &str = "ms-app://windows.immersivecontrolpanel";

/// The `wresult` hidden field of an authentication page's form, HTML entities decoded.
pub fn wresult_from_page(html: &str) -> Option<String> {
    let at = html
        .find("name=\"wresult\"")
        .or_else(|| html.find("name='wresult'"))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let v = tag.find("value=")? + "value=".len();
    let quote = tag[v..].chars().next()?;
    let rest = &tag[v + 1..];
    let value = &rest[..rest.find(quote)?];
    quick_xml::escape::unescape(value)
        .ok()
        .map(|c| c.into_owned())
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 3986 unreserved
/// characters kept, everything else percent-encoded).
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Device {
    /// Offers only these AuthPolicies in Discover and, with `username_password`,
    /// authenticates OnPremise with a UsernameToken or logs in to the federated page.
    pub fn set_enrollment_auth(
        &mut self,
        policies: Vec<String>,
        username_password: Option<(String, String)>,
    ) {
        self.auth = EnrollmentAuth {
            policies,
            username_password,
        };
    }

    /// Federated authentication: opens the AuthenticationServiceUrl with `appru` and
    /// `login_hint`, logs in with the configured user name and password when the page
    /// asks for them (form fields `username`, `password`), and returns the `wresult`
    /// token the page hands back.
    pub async fn federated_token(
        &mut self,
        discovery: &DiscoverResult,
        upn: &str,
    ) -> Result<String, ClientError> {
        const STEP: &str = "federated_auth";
        let base = discovery
            .authentication_service_url
            .clone()
            .ok_or_else(|| ClientError::missing(STEP, "DiscoverResult/AuthenticationServiceUrl"))?;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!(
            "{base}{sep}appru={}&login_hint={}",
            form_encode(APPRU),
            form_encode(upn)
        );
        let client = self.plain_client()?;
        let page = self
            .send_retrying(
                &client,
                STEP,
                reqwest::Method::GET,
                &url,
                &[("User-Agent", crate::soap::USER_AGENT)],
                None,
            )
            .await?;
        if let Some(token) = wresult_from_page(&page.body) {
            return Ok(token);
        }
        let Some((user, password)) = self.auth.username_password.clone() else {
            return Err(ClientError::invalid(
                STEP,
                "the authentication page asks for a login and no user name/password was given",
            ));
        };
        let form = format!(
            "username={}&password={}&login_hint={}",
            form_encode(&user),
            form_encode(&password),
            form_encode(upn)
        );
        let page = self
            .send_retrying(
                &client,
                STEP,
                reqwest::Method::POST,
                &url,
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("User-Agent", crate::soap::USER_AGENT),
                ],
                Some(form),
            )
            .await?;
        wresult_from_page(&page.body).ok_or_else(|| {
            ClientError::missing(STEP, "form field wresult in the authentication page")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wresult_is_read_from_the_published_page() {
        let page = include_str!("../../testdata/vectors/mde2-wab-auth-response.http");
        assert_eq!(wresult_from_page(page).as_deref(), Some("token value"));
        assert_eq!(
            wresult_from_page("<input name='wresult' value='a&amp;b'>").as_deref(),
            Some("a&b")
        );
        assert_eq!(wresult_from_page("<html>login</html>"), None);
    }

    #[test]
    fn username_token_header_for_on_premise_with_password() {
        let auth = EnrollmentAuth {
            policies: vec!["OnPremise".into()],
            username_password: Some(("user@contoso.com".into(), "p<w".into())),
        };
        let header = crate::soap::security_header(&auth.credential("node-key"));
        assert!(
            header.contains("<wsse:Username>user@contoso.com</wsse:Username>"),
            "{header}"
        );
        assert!(
            header.contains("p&lt;w") && header.contains(PASSWORD_TEXT),
            "{header}"
        );
        let default = EnrollmentAuth::default();
        assert!(
            crate::soap::security_header(&default.credential("node-key"))
                .contains("BinarySecurityToken")
        );
        assert_eq!(default.advertised(), vec!["OnPremise", "Federated"]);
    }
}
