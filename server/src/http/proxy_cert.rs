//! The client certificate of a connection whose TLS a trusted proxy ended: read from the
//! header the proxy sets (`--client-cert-header`), only when the request comes from one
//! of the `--trusted-proxy` addresses and presented no certificate of its own. The
//! certificate is then judged exactly as one from a handshake (issuer, validity, EKU,
//! binding to an enrollment); from anyone else the header is ignored and logged.
//!
//! Formats:
//! - nginx `$ssl_client_escaped_cert`: the PEM, URL-encoded;
//! - Envoy `X-Forwarded-Client-Cert`: `By=...;Hash=...;Cert="<URL-encoded PEM>"`,
//!   elements separated by commas; the last element is the nearest proxy's;
//! - a PEM, or the DER in base64, as other proxies forward it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::respond::refuse;
use crate::state::{AppState, ClientAddr, PeerCertificate};

/// An address range `addr/prefix` (a bare address is one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("--trusted-proxy {s:?}: not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("--trusted-proxy {s:?}: prefix must be 0-{max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer seen as an IPv4-mapped IPv6 address still matches IPv4 ranges.
        let ip = match ip {
            IpAddr::V6(v) => v.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let (net, host, len) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(h)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(h)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(h)) => (u128::from(n), u128::from(h), 128),
            _ => return false,
        };
        let shift = len - u32::from(self.prefix);
        shift >= 128 || (net >> shift) == (host >> shift)
    }
}

/// Decodes `%XX` escapes (and `+` is left as is: nginx escapes spaces as `%20`).
fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % escape without two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The certificate (DER) in a proxy's header value, in any of the formats above.
pub fn certificate_from_header(value: &str) -> Result<Vec<u8>, String> {
    let value = value.trim();
    // Envoy XFCC: the Cert of the last element.
    let encoded = match value.rfind("Cert=\"") {
        Some(at) => {
            let rest = &value[at + "Cert=\"".len()..];
            &rest[..rest
                .find('"')
                .ok_or("XFCC Cert without its closing quote")?]
        }
        None => value,
    };
    let decoded = percent_decode(encoded)?;
    if decoded.windows(10).any(|w| w == b"-----BEGIN") {
        return CertificateDer::from_pem_slice(&decoded)
            .map(|c| c.to_vec())
            .map_err(|e| format!("PEM: {e}"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(decoded.trim_ascii())
        .map_err(|_| "neither a PEM nor base64 DER".to_string())
}

/// Middleware: takes the certificate from the proxy's header when the request comes
/// from a trusted proxy without a certificate of its own.
pub async fn from_trusted_proxy(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(name) = state.config.client_cert_header.as_deref() else {
        return next.run(req).await;
    };
    let Some(value) = req
        .headers()
        .get(name)
        .map(|v| v.to_str().map(str::to_string))
    else {
        return next.run(req).await;
    };
    let peer = req.extensions().get::<ClientAddr>().map(|c| c.0);
    let trusted = peer.is_some_and(|ip| {
        state
            .config
            .trusted_proxy
            .iter()
            .filter_map(|c| Cidr::parse(c).ok())
            .any(|c| c.contains(ip))
    });
    let presented = req
        .extensions()
        .get::<PeerCertificate>()
        .is_some_and(|p| p.der().is_some());
    if !trusted || presented {
        // A header from anyone but a trusted proxy (or beside a certificate of the
        // connection itself) proves nothing: ignored, and the connection is judged on
        // its own certificate.
        tracing::warn!(
            ?peer,
            header = name,
            "client certificate header ignored: not from a trusted proxy"
        );
        return next.run(req).await;
    }
    let der = match value
        .map_err(|_| "not visible ASCII".to_string())
        .and_then(|v| certificate_from_header(&v))
    {
        Ok(der) => der,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("client certificate header {name}: {e}"),
            )
        }
    };
    req.extensions_mut().insert(PeerCertificate::new(Some(der)));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_match_their_addresses_only() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let c = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(c.contains(ip("10.1.2.3")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped");
        let one = Cidr::parse("127.0.0.1").expect("host");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6 = Cidr::parse("fd00::/8").expect("v6");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("all")
            .contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn header_formats_decode_to_the_same_certificate() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        let escaped = pem.replace(' ', "%20").replace('\n', "%0A");
        assert_eq!(certificate_from_header(&escaped).expect("nginx"), der);
        let xfcc =
            format!("By=spiffe://a;Hash=ab;Cert=\"x\",By=spiffe://b;Hash=cd;Cert=\"{escaped}\"");
        assert_eq!(certificate_from_header(&xfcc).expect("envoy"), der);
        assert_eq!(certificate_from_header(&b64).expect("base64"), der);
        assert!(certificate_from_header("%zz").is_err());
        assert!(certificate_from_header("Cert=\"unclosed").is_err());
    }
}
