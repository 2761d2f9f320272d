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
fn plain(v: &fake_windows_client::RegValue) -> String {
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
