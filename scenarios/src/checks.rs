//! Checks on the emulated device's state after enrollment: the certificate chain and the
//! registry keys / certificate stores Windows writes (seed registry table).

use std::process::Command;

use base64::Engine;
use fake_windows_client::Device;

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The issued client certificate verifies against the root from the provisioning
/// document: with `openssl verify` when openssl is installed (the client has already
/// checked the signature itself when applying the document).
pub fn verify_certificate(device: &Device) -> Result<String, String> {
    let e = device.enrollment().ok_or("device is not enrolled")?;
    if e.root_cert_der.is_empty() {
        return Err(
            "the provisioning document installed no root certificate (CertificateStore/Root/System): the client certificate cannot be verified"
                .into(),
        );
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path().join("root.pem");
    let leaf = dir.path().join("client.pem");
    std::fs::write(&root, pem(&e.root_cert_der)).map_err(|e| e.to_string())?;
    std::fs::write(&leaf, pem(&e.client_cert_der)).map_err(|e| e.to_string())?;
    match Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&root)
        .arg(&leaf)
        .output()
    {
        Ok(out) if out.status.success() => Ok(format!(
            "openssl verify: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        )),
        Ok(out) => Err(format!(
            "openssl verify failed: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(_) => Ok("openssl not installed; chain verified by the client when applying the provisioning document".into()),
    }
}

/// A registry value as text: REG_SZ as is, REG_DWORD in decimal.
pub fn plain(v: &fake_windows_client::RegValue) -> String {
    match v {
        fake_windows_client::RegValue::Sz(s) => s.clone(),
        fake_windows_client::RegValue::Dword(d) => d.to_string(),
    }
}

/// Registry values and certificate stores as Windows writes them after enrollment.
pub fn device_state(device: &Device, discovery_url: Option<&str>) -> Result<String, String> {
    let e = device.enrollment().ok_or("device is not enrolled")?;
    let key = format!(r"HKLM\SOFTWARE\Microsoft\Enrollments\{}", e.enrollment_guid);
    let reg = device.registry();
    let value = |name: &str| {
        reg.get(&key, name)
            .map(plain)
            .ok_or_else(|| format!(r"missing registry value {key}\{name}"))
    };
    let expect = |name: &str, want: &str| -> Result<(), String> {
        let got = value(name)?;
        if got != want {
            return Err(format!(r"{key}\{name} is {got:?}, expected {want:?}"));
        }
        Ok(())
    };
    expect("EnrollmentState", "1")?;
    expect("ProviderID", &e.provider_id)?;
    expect("DMPCertThumbPrint", &e.client_thumbprint)?;
    expect("RootCertThumbPrint", &e.root_thumbprint)?;
    if let Some(url) = discovery_url {
        expect("DiscoveryServiceFullURL", url)?;
    }
    for name in [
        "EnrollmentType",
        "CurCryptoProvider",
        "CurKeyContainer",
        "RenewalPeriod",
        "RenewROBOSupport",
        "RenewStatus",
        "RenewErrorCode",
        "isFederated",
        "UPN",
        "SID",
        "EnrollmentFlags",
    ] {
        value(name)?;
    }
    let account = format!(
        r"HKLM\SOFTWARE\Microsoft\Provisioning\OMADM\Accounts\{}",
        e.enrollment_guid
    );
    let cert_ref = reg
        .get(&account, "SslClientCertReference")
        .map(plain)
        .ok_or_else(|| format!(r"missing {account}\SslClientCertReference"))?;
    if !cert_ref.ends_with(&e.client_thumbprint) {
        return Err(format!(
            "SslClientCertReference {cert_ref:?} does not name the issued certificate"
        ));
    }
    let stores = device.cert_store();
    let holds = |store: &str, thumbprint: &str| {
        stores
            .store(store)
            .is_some_and(|certs| certs.iter().any(|c| c.thumbprint == thumbprint))
    };
    if !holds("Root/System", &e.root_thumbprint) {
        return Err(r"Root\System store lacks the identity CA".into());
    }
    if !holds(&e.client_store, &e.client_thumbprint) {
        return Err(format!(
            "{} store lacks the client certificate",
            e.client_store
        ));
    }
    let key_held = stores
        .store(&e.client_store)
        .and_then(|certs| certs.iter().find(|c| c.thumbprint == e.client_thumbprint))
        .is_some_and(|c| c.private_key_pem.is_some());
    if !key_held {
        return Err("the client certificate's private key is not in the store".into());
    }
    Ok(format!(
        "{key} and OMADM account written; Root and My stores populated"
    ))
}

/// The trimmed text of the first element reached by `path` (element local names joined
/// by `/`, matched at any depth), or None when there is none.
pub fn xml_path(xml: &str, path: &str) -> Result<Option<String>, String> {
    let doc = fake_windows_client::xml::parse("check_response", xml).map_err(|e| e.to_string())?;
    let names: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let Some((last, parents)) = names.split_last() else {
        return Err("empty path".into());
    };
    let found = doc.descendants().find(|n| {
        if !n.is_element() || n.tag_name().name() != *last {
            return false;
        }
        let mut up = n.parent_element();
        for want in parents.iter().rev() {
            match up {
                Some(p) if p.tag_name().name() == *want => up = p.parent_element(),
                _ => return false,
            }
        }
        true
    });
    Ok(found.map(|n| n.text().unwrap_or("").trim().to_string()))
}

/// Compares a checked value with `equals` / `contains`.
pub fn compare(
    what: &str,
    value: &str,
    equals: Option<&str>,
    contains: Option<&str>,
) -> Result<(), String> {
    if let Some(want) = equals {
        if value != want {
            return Err(format!("{what} is {value:?}, expected {want:?}"));
        }
    }
    if let Some(part) = contains {
        if !value.contains(part) {
            return Err(format!("{what} is {value:?}, which lacks {part:?}"));
        }
    }
    Ok(())
}

/// A field of a certificate as text.
pub fn certificate_field(der: &[u8], thumbprint: &str, field: &str) -> Result<String, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("certificate: {e}"))?;
    let cn = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or("")
            .to_string()
    };
    Ok(match field {
        "subject_cn" => cn(cert.subject()),
        "issuer_cn" => cn(cert.issuer()),
        "serial" => cert.raw_serial_as_string().replace(':', ""),
        "thumbprint" => thumbprint.to_string(),
        "key_bits" => match cert.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(k)) => k.key_size().to_string(),
            _ => "0".to_string(),
        },
        "validity_days" => {
            let v = cert.validity();
            ((v.not_after.timestamp() - v.not_before.timestamp()) / 86_400).to_string()
        }
        "client_auth" => cert
            .extended_key_usage()
            .ok()
            .flatten()
            .map(|e| e.value.client_auth)
            .unwrap_or(false)
            .to_string(),
        other => return Err(format!("unknown certificate field {other:?} (subject_cn, issuer_cn, serial, thumbprint, key_bits, validity_days, client_auth)")),
    })
}
