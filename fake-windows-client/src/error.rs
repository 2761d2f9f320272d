//! Errors reported by the emulated device.

use std::fmt;

/// A SOAP 1.2 fault returned by an enrollment endpoint ([MS-MDE2] §2.2.9, §4.3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SoapFault {
    /// HTTP status the fault arrived with (usually 500).
    pub http_status: u16,
    /// `s:Code/s:Value`, e.g. `s:Receiver`.
    pub code: String,
    /// `s:Code/s:Subcode/s:Value`, e.g. `s:Authentication`.
    pub subcode: String,
    /// `s:Reason/s:Text`.
    pub reason: String,
    /// `s:Detail/DeviceEnrollmentServiceError/ErrorType`, when present.
    pub error_type: Option<String>,
}

impl fmt::Display for SoapFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} fault {} / {}: {}",
            self.http_status, self.code, self.subcode, self.reason
        )?;
        if let Some(t) = &self.error_type {
            write!(f, " (ErrorType {t})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong while the device talks to a server or handles its state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an unexpected HTTP status and no SOAP fault.
    #[error("{step}: unexpected HTTP status {status}: {body}")]
    Http {
        step: &'static str,
        status: u16,
        body: String,
    },
    /// The server asked the device to back off (HTTP 429).
    #[error("{step}: throttled (HTTP 429), Retry-After {retry_after:?}")]
    Throttled {
        step: &'static str,
        retry_after: Option<String>,
    },
    /// The server returned a SOAP fault.
    #[error("SOAP fault: {0}")]
    SoapFault(SoapFault),
    /// A required element or value is absent from a response.
    #[error("{step}: missing {element}")]
    Missing { step: &'static str, element: String },
    /// A response is present but wrong.
    #[error("{step}: invalid response: {what}")]
    Invalid { step: &'static str, what: String },
    /// The device is not in a state where the operation makes sense.
    #[error("device state: {0}")]
    State(String),
    /// XML that is not well-formed.
    #[error("{step}: XML not well-formed: {source}")]
    Xml {
        step: &'static str,
        #[source]
        source: roxmltree::Error,
    },
    /// TLS configuration or handshake problem.
    #[error("TLS: {0}")]
    Tls(String),
    /// Key generation, signing or certificate problem.
    #[error("crypto: {0}")]
    Crypto(String),
    /// Transport failure (connection refused, handshake failed, timeout).
    #[error("{step}: transport error: {source}")]
    Transport {
        step: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// Local file problem (state directory, CA file).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// JSON encoding or decoding problem.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl ClientError {
    pub(crate) fn invalid(step: &'static str, what: impl Into<String>) -> Self {
        ClientError::Invalid {
            step,
            what: what.into(),
        }
    }

    pub(crate) fn missing(step: &'static str, element: impl Into<String>) -> Self {
        ClientError::Missing {
            step,
            element: element.into(),
        }
    }

    /// The SOAP fault carried by this error, if it is one.
    pub fn soap_fault(&self) -> Option<&SoapFault> {
        match self {
            ClientError::SoapFault(f) => Some(f),
            _ => None,
        }
    }

    /// How the server refused the connection at the TLS layer, if it did (see
    /// [`refusal_in`]): a server that verifies client certificates itself,
    /// e.g. IIS or nginx with `ssl_verify_client on`, refuses an unknown certificate that
    /// way rather than with an HTTP status.
    pub fn tls_alert(&self) -> Option<String> {
        let ClientError::Transport { source, .. } = self else {
            return None;
        };
        refusal_in(source)
    }

    /// The HTTP status carried by this error, if any.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            ClientError::SoapFault(f) => Some(f.http_status),
            ClientError::Throttled { .. } => Some(429),
            _ => None,
        }
    }
}

/// How a server refused a connection at the TLS layer, from a request error's causes:
/// the TLS alert it sent, or the connection closed under the request. With TLS 1.3 the
/// client finishes its side of the handshake and sends its request before the server's
/// verdict on the client certificate arrives, so a refused request may see the alert,
/// a reset or an end of stream, depending on timing.
pub fn refusal_in(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        // An io::Error's `source` skips the error it wraps: look inside each layer.
        let mut inner: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(i) = inner {
            if let Some(rustls::Error::AlertReceived(alert)) = i.downcast_ref::<rustls::Error>() {
                return Some(format!("{alert:?}"));
            }
            inner = i
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|b| b as &(dyn std::error::Error + 'static));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return Some(format!("connection closed: {io}"));
            }
        }
        // hyper: the server closed before answering ("connection closed before message
        // completed", or a request canceled because the connection closed).
        if e.to_string().contains("connection closed") {
            return Some("connection closed before an answer".into());
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_formats() {
        let fault = SoapFault {
            http_status: 500,
            code: "s:Receiver".into(),
            subcode: "s:Authentication".into(),
            reason: "bad token".into(),
            error_type: Some("NotSupported".into()),
        };
        let xml_err = match roxmltree::Document::parse("<a>") {
            Err(e) => e,
            Ok(_) => return,
        };
        let all = vec![
            ClientError::Http {
                step: "discover",
                status: 404,
                body: "nope".into(),
            },
            ClientError::Throttled {
                step: "sync",
                retry_after: Some("30".into()),
            },
            ClientError::SoapFault(fault),
            ClientError::missing("discover", "EnrollmentServiceUrl"),
            ClientError::invalid("discover", "bad"),
            ClientError::State("not enrolled".into()),
            ClientError::Xml {
                step: "sync",
                source: xml_err,
            },
            ClientError::Tls("x".into()),
            ClientError::Crypto("x".into()),
            ClientError::Io(std::io::Error::other("x")),
        ];
        for e in all {
            assert!(!e.to_string().is_empty());
        }
        let e = ClientError::missing("discover", "EnrollmentServiceUrl");
        assert!(e.to_string().contains("EnrollmentServiceUrl"));
    }
}
