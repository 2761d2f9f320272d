//! The Federated authentication page (MS-MDE2 §3.1.4.1.1.2, AuthPolicy Federated): Windows
//! opens `AuthenticationServiceUrl?appru=...&login_hint=...` in its web authentication
//! broker; after login the page posts a form with the `wresult` token back to `appru`
//! (layout of Microsoft's federated enrollment example). Accounts are the
//! `--enroll-user` ones; the token is a node key for the user's host.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use quick_xml::escape::escape;

use super::respond::html;
use crate::state::AppState;

/// Decodes `application/x-www-form-urlencoded` pairs.
fn form_pairs(text: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len()
                    && s.is_char_boundary(i + 1)
                    && s.is_char_boundary(i + 3) =>
                {
                    match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Whether `appru` is a callback of Windows' web authentication broker: Microsoft's
/// federated enrollment documentation has the page POST to "a redirect URL of the form
/// ms-app://string (the URL scheme is ms-app)" (MS-MDE2 §3.1.4.1.1.2). Anything else
/// (https, javascript:, data:, nothing) would hand the enrollment token to whoever wrote
/// the link. The scheme compares case-insensitively (RFC 3986 §3.1).
fn valid_appru(appru: &str) -> bool {
    const SCHEME: &str = "ms-app://";
    appru.len() > SCHEME.len()
        && appru
            .get(..SCHEME.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
        && !appru.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The `appru` of the query if it is a valid callback; else the 400 page, which does not
/// repeat the URL.
fn checked_appru(q: &HashMap<String, String>) -> Result<&str, Response> {
    match q.get("appru").map(String::as_str) {
        Some(a) if valid_appru(a) => Ok(a),
        _ => Err(html(
            StatusCode::BAD_REQUEST,
            "<html><body>Bad request: the appru parameter must be an ms-app:// callback of the Windows web authentication broker.</body></html>".into(),
        )),
    }
}

/// `GET`: the login form.
pub async fn login_page(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    if state.config.enroll_users.is_empty() {
        return html(
            StatusCode::NOT_FOUND,
            "<html><body>Federated enrollment is not offered.</body></html>".into(),
        );
    }
    let q = form_pairs(query.as_deref().unwrap_or(""));
    if let Err(refused) = checked_appru(&q) {
        return refused;
    }
    let hint = q.get("login_hint").map(String::as_str).unwrap_or("");
    html(
        StatusCode::OK,
        format!(
            "<!DOCTYPE html><html><head><title>Sign in</title></head><body><form method=\"post\"><p><input name=\"username\" value=\"{}\"/></p><p><input name=\"password\" type=\"password\"/></p><input type=\"submit\"/></form></body></html>",
            escape(hint)
        ),
    )
}

/// `POST` of the login form: on success, the page that hands `wresult` to `appru`.
pub async fn login(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let q = form_pairs(query.as_deref().unwrap_or(""));
    let appru = match checked_appru(&q) {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let form = form_pairs(&String::from_utf8_lossy(&body));
    let user = form.get("username").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    if state.config.enroll_users.is_empty() || !state.user_password_ok(user, password) {
        return html(
            StatusCode::UNAUTHORIZED,
            "<html><body>Invalid user name or password.</body></html>".into(),
        );
    }
    match state.user_host(user).await {
        Ok((_, token)) => html(
            StatusCode::OK,
            format!(
                "<!DOCTYPE html><html><head><title>Working...</title></head><body><form method=\"post\" action=\"{}\"><p><input type=\"hidden\" name=\"wresult\" value=\"{}\"/></p><input type=\"submit\"/></form></body></html>",
                escape(appru),
                escape(&token)
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, "federated login: storage failure");
            html(StatusCode::INTERNAL_SERVER_ERROR, "<html><body>Storage failure.</body></html>".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f = form_pairs("username=a%40b.org&password=p+w%21&bad=%zz&x");
        assert_eq!(f["username"], "a@b.org");
        assert_eq!(f["password"], "p w!");
        assert_eq!(f["bad"], "%zz");
        assert_eq!(f["x"], "");
    }

    #[test]
    fn only_ms_app_callbacks_are_accepted() {
        assert!(valid_appru("ms-app://windows.immersivecontrolpanel"));
        assert!(valid_appru("MS-APP://s-1-15-2-1"));
        for bad in [
            "",
            "ms-app://",
            "https://evil.example/x",
            "javascript:alert(1)",
            "data:text/html,x",
            "ms-app://x\" onmouseover=\"x",
            "ms-app:x",
        ] {
            assert!(!valid_appru(bad), "{bad:?}");
        }
    }
}
