//! HTTP 429 handling on the enrollment endpoints: Windows waits for `Retry-After` and sends
//! the same request again (protocol reference §6, "Throttling"). Here: at most
//! [`MAX_RETRIES`] retries, each wait capped by the device's retry-after cap.

use crate::device::Device;
use crate::error::ClientError;
use crate::http::{self, Response};
use std::time::Duration;

/// Retries after a 429 before the step fails with [`ClientError::Throttled`].
pub const MAX_RETRIES: usize = 3;

/// `Retry-After` as delay-seconds (RFC 9110 §10.2.3); an HTTP-date or garbage waits `cap`.
pub fn retry_after(value: Option<&str>, cap: Duration) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(cap)
        .min(cap)
}

impl Device {
    /// Sends a request, honouring up to [`MAX_RETRIES`] 429 answers. The last response
    /// is returned as is (a final 429 included) for the caller to map.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send_retrying(
        &mut self,
        client: &reqwest::Client,
        step: &'static str,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Response, ClientError> {
        let mut retries = 0;
        loop {
            let r = http::send(
                &mut self.exchanges,
                client,
                step,
                method.clone(),
                url,
                headers,
                body.clone(),
            )
            .await?;
            if r.status != 429 || retries >= MAX_RETRIES {
                return Ok(r);
            }
            retries += 1;
            let wait = retry_after(r.retry_after.as_deref(), self.retry_after_cap);
            tracing::info!(
                step,
                retries,
                ?wait,
                "throttled; retrying after Retry-After"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_capped() {
        let cap = Duration::from_secs(60);
        assert_eq!(retry_after(Some("5"), cap), Duration::from_secs(5));
        assert_eq!(retry_after(Some("3600"), cap), cap);
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), cap), cap);
        assert_eq!(retry_after(None, Duration::ZERO), Duration::ZERO);
    }
}
