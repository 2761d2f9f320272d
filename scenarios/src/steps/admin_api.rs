//! The target's admin API as the steps call it: every call is recorded like the
//! device's own exchanges, so that reports and captures show it.

use super::*;

/// This device's delivery of a queued command, from the admin API (state, status code,
/// stored results); a command without one was lost.
pub(super) async fn delivery(ctx: &mut Context<'_>, id: &str) -> Result<Value, String> {
    let all = admin(
        ctx,
        reqwest::Method::GET,
        &format!("/api/v1/commands/{id}"),
        None,
    )
    .await?;
    let device_id = ctx.device.device_id();
    all["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["device_id"] == device_id)
        .cloned()
        .ok_or_else(|| format!("command {id} lost: no delivery for this device ({all})"))
}

/// Drops null members so optional fields are simply absent.
pub(super) fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

/// An admin API error body (`{"error": {"code": "...", "message": "..."}}`, see
/// docs/admin-api.md) as `code: message`; any other body as it is.
pub fn error_text(body: &str) -> String {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return body.trim().to_string(),
    };
    match (v["error"]["code"].as_str(), v["error"]["message"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => body.trim().to_string(),
    }
}

/// Calls the admin API of the target.
pub(super) async fn admin(
    ctx: &mut Context<'_>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let token = ctx
        .target
        .admin_token
        .clone()
        .ok_or("this step needs the server's admin API: pass --admin-token")?;
    let url = format!("{}{path}", ctx.target.server_url);
    let body_text = body.map(|b| b.to_string());
    let mut req = ctx.http.request(method.clone(), &url).bearer_auth(&token);
    if let Some(b) = &body_text {
        req = req
            .header("content-type", "application/json")
            .body(b.clone());
    }
    // Recorded like the device's own exchanges, so reports and captures show them.
    let mut exchange = fake_windows_client::Exchange {
        step: "admin".into(),
        method: method.to_string(),
        url: url.clone(),
        request_headers: vec![
            ("authorization".into(), "Bearer [redacted]".into()),
            ("content-type".into(), "application/json".into()),
        ],
        request_body: body_text.unwrap_or_default(),
        status: None,
        response_headers: Vec::new(),
        response_body: String::new(),
        error: None,
    };
    let result = async {
        let resp = req.send().await.map_err(|e| format!("admin API: {e}"))?;
        let status = resp.status();
        exchange.status = Some(status.as_u16());
        exchange.response_headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp.text().await.map_err(|e| format!("admin API: {e}"))?;
        exchange.response_body = text.clone();
        if !status.is_success() {
            return Err(format!(
                "admin API {path}: HTTP {status}: {}",
                error_text(&text)
            ));
        }
        serde_json::from_str(&text).map_err(|e| format!("admin API {path}: invalid JSON: {e}"))
    }
    .await;
    if let Err(e) = &result {
        exchange.error = Some(e.clone());
    }
    ctx.admin_exchanges.push(exchange);
    result
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn admin_errors_read_as_code_and_message() {
        let body = r#"{"error":{"code":"device_not_found","message":"no device \"X\""}}"#;
        assert_eq!(error_text(body), r#"device_not_found: no device "X""#);
        assert_eq!(error_text("plain text\n"), "plain text");
    }
}
