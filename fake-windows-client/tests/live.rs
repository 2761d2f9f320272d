//! Against a running server, when one is named: set `FWC_LIVE_URL` (e.g.
//! `https://127.0.0.1:8443`), `FWC_LIVE_SECRET` and `FWC_LIVE_CA` (PEM path; omit for
//! insecure). Skipped otherwise.

use fake_windows_client::{
    foreign_identity, ClientError, Device, DeviceProfile, IdentityOverride, TlsOptions,
};

fn live() -> Option<(String, String, TlsOptions)> {
    let url = std::env::var("FWC_LIVE_URL").ok()?;
    let secret = std::env::var("FWC_LIVE_SECRET").ok()?;
    let tls = match std::env::var("FWC_LIVE_CA") {
        Ok(p) => TlsOptions {
            ca_pem: Some(std::fs::read(p).expect("CA file")),
            insecure: false,
        },
        Err(_) => TlsOptions {
            ca_pem: None,
            insecure: true,
        },
    };
    Some((url, secret, tls))
}

#[tokio::test]
async fn enroll_sync_and_refuse_other_identities() {
    let Some((url, secret, tls)) = live() else {
        eprintln!("FWC_LIVE_URL not set; skipped");
        return;
    };
    let mut d = Device::new(DeviceProfile::random(), tls.clone()).expect("device");
    // Wrong secret first.
    let err = d
        .orbit_enroll(&url, "not-the-secret")
        .await
        .expect_err("wrong secret");
    assert_eq!(err.http_status(), Some(401), "{err}");
    let key = d.orbit_enroll(&url, &secret).await.expect("orbit enroll");
    let n = d.orbit_config().await.expect("config");
    assert!(n.needs_programmatic_windows_mdm_enrollment, "{n:?}");
    let discovery = n.windows_mdm_discovery_endpoint.expect("discovery URL");
    // A bad token is refused with a SOAP fault at the policy step.
    let mut other = Device::new(DeviceProfile::random(), tls.clone()).expect("device");
    let err = other
        .register_device_with_management("u@example.org", &discovery, "bogus-token")
        .await
        .expect_err("bad token");
    assert!(matches!(err, ClientError::SoapFault(_)), "{err:?}");

    let upn = d.profile().upn.clone();
    d.register_device_with_management(&upn, &discovery, &key)
        .await
        .expect("enrolled");
    let report = d.sync().await.expect("sync");
    assert!(report.round_trips >= 1);
    assert!(!report.transcript.is_empty());
    assert!(d
        .exchanges()
        .iter()
        .any(|e| e.step == "request_security_token"));

    d.set_identity_override(IdentityOverride::NoCertificate);
    let err = d.sync().await.expect_err("no client certificate");
    eprintln!("no certificate: {err}");
    let (cert_pem, key_pem) = foreign_identity(d.device_id()).expect("foreign");
    d.set_identity_override(IdentityOverride::Foreign { cert_pem, key_pem });
    let err = d.sync().await.expect_err("foreign certificate");
    eprintln!("foreign certificate: {err}");
    d.set_identity_override(IdentityOverride::None);
    d.sync().await.expect("sync again");
}

#[tokio::test]
async fn renew_unenroll_and_enroll_again() {
    let Some((url, secret, tls)) = live() else {
        eprintln!("FWC_LIVE_URL not set; skipped");
        return;
    };
    let mut d = Device::new(DeviceProfile::random(), tls).expect("device");
    d.orbit_enroll(&url, &secret).await.expect("orbit enroll");
    assert_eq!(
        d.handle_orbit_notifications().await.expect("config"),
        fake_windows_client::OrbitAction::Enrolled
    );
    d.sync().await.expect("sync");
    let first_guid = d.enrollment().expect("enrolled").enrollment_guid.clone();

    d.renew().await.expect("renewed");
    d.sync().await.expect("sync with the new certificate");
    let (cert_pem, key_pem) = d.previous_identity_pem().expect("previous identity");
    d.set_identity_override(IdentityOverride::Foreign { cert_pem, key_pem });
    let err = d.sync().await.expect_err("old certificate refused");
    assert_eq!(err.http_status(), Some(403), "{err}");
    d.set_identity_override(IdentityOverride::None);

    let report = d.unenroll().await.expect("unenrolled");
    assert!(report.unenrolled);
    assert!(!d.is_enrolled());
    assert_eq!(
        d.handle_orbit_notifications().await.expect("config"),
        fake_windows_client::OrbitAction::Enrolled
    );
    assert_ne!(
        d.enrollment().expect("enrolled again").enrollment_guid,
        first_guid
    );
    d.sync().await.expect("sync after re-enrollment");
}
