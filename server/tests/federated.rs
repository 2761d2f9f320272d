//! The Federated login page hands its token only to an `ms-app://` callback of
//! Windows' web authentication broker.

mod common;

use axum::http::StatusCode;
use common::*;

const AUTH: &str = "/api/mdm/microsoft/auth";
const FORM: &str = "application/x-www-form-urlencoded";

async fn users() -> TestServer {
    server_with(|c| c.enroll_users = vec!["alice:wonderland".into()]).await
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn wresult(body: &str) -> Option<String> {
    let at = body.find("name=\"wresult\" value=\"")? + "name=\"wresult\" value=\"".len();
    Some(body[at..].split('"').next()?.to_string())
}

#[tokio::test]
async fn an_ms_app_callback_receives_the_token() {
    let s = users().await;
    for appru in [
        "ms-app://windows.immersivecontrolpanel",
        "MS-App://s-1-15-2-1234",
    ] {
        let q = format!("{AUTH}?appru={}&login_hint=alice", encode(appru));
        let r = s.send("GET", &q, "", String::new(), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = s
            .send(
                "POST",
                &q,
                FORM,
                "username=alice&password=wonderland".into(),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(
            r.body.contains(&format!("action=\"{appru}\"")),
            "{}",
            r.body
        );
        assert!(
            wresult(&r.body).is_some_and(|t| t.len() >= 32),
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn any_other_callback_is_refused_with_400_and_no_token() {
    let s = users().await;
    let bad = [
        Some("https://evil.example/collect"),
        Some("http://evil.example/collect"),
        Some("javascript:alert(document.forms[0].wresult.value)"),
        Some("JavaScript:alert(1)"),
        Some("data:text/html,<script>alert(1)</script>"),
        Some("ms-app:"),
        Some(""),
        None,
    ];
    for appru in bad {
        let q = match appru {
            Some(a) => format!("{AUTH}?appru={}&login_hint=alice", encode(a)),
            None => format!("{AUTH}?login_hint=alice"),
        };
        for (method, body) in [
            ("GET", String::new()),
            ("POST", "username=alice&password=wonderland".to_string()),
        ] {
            let r = s.send(method, &q, FORM, body, None).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{appru:?} {method}");
            assert!(r.content_type.starts_with("text/html"), "{appru:?}");
            assert!(wresult(&r.body).is_none(), "{appru:?}: {}", r.body);
            assert!(!r.body.contains("action="), "{appru:?}: {}", r.body);
            // (The page names the ms-app:// scheme it wants.)
            if let Some(a) = appru.filter(|a| !a.is_empty() && !a.starts_with("ms-app")) {
                assert!(!r.body.contains(a), "{appru:?} reflected: {}", r.body);
            }
        }
    }
}
