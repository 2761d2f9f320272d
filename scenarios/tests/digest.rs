//! OMA-DM MD5 digest authentication end to end: the reference server with
//! `--management-auth digest` and the emulated device managing without a client
//! certificate (package 1 challenged, answered with credentials, a queued command run
//! and its result stored, and a later session with the nonce the last reply gave).

use fake_windows_client::{Device, DeviceProfile, ManagementAuth, TlsOptions};
use winmdm_server::model::ManagementAuth as ServerAuth;

const SECRET: &str = "digest-secret";
const ADMIN: &str = "digest-admin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulated_device_manages_by_digest_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = winmdm_server::Config::for_data_dir(dir.path().to_path_buf(), SECRET);
    config.admin_token = Some(ADMIN.into());
    config.enroll_rate_per_client = 0;
    config.management_auth = ServerAuth::Digest;
    if let Ok(admin) = std::env::var("WINMDM_TEST_POSTGRES_URL") {
        config.database_url = Some(
            winmdm_server::db::create_scratch_postgres_database(&admin)
                .await
                .unwrap(),
        );
    }
    let server = winmdm_server::start(config).await.unwrap();
    let url = server.public_url.clone();
    let tls = TlsOptions {
        ca_pem: Some(std::fs::read(&server.tls_cert_path).unwrap()),
        insecure: false,
    };
    let mut device = Device::new(DeviceProfile::random(), tls.clone()).unwrap();
    let node_key = device.orbit_enroll(&url, SECRET).await.unwrap();
    let upn = device.profile().upn.clone();
    device
        .register_device_with_management(
            &upn,
            &format!("{url}/EnrollmentServer/Discovery.svc"),
            &node_key,
        )
        .await
        .unwrap();
    device.set_management_auth(ManagementAuth::Digest);
    let device_id = device.device_id().to_string();

    let admin = reqwest::Client::builder()
        .use_preconfigured_tls(fake_windows_client::http::rustls_config(&tls, None).unwrap())
        .build()
        .unwrap();
    let queued = admin
        .post(format!("{url}/api/v1/devices/{device_id}/commands"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(r#"{"verb":"Get","target":"./DevDetail/SwV"}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let queued: serde_json::Value = serde_json::from_str(&queued).unwrap();
    let id = queued["command_id"].as_str().unwrap().to_string();

    let report = device.sync().await.unwrap();
    assert!(
        report
            .server_commands
            .iter()
            .any(|c| c.verb == "Get" && c.status == 200),
        "{report:?}"
    );
    let sent = &report.transcript[0].0;
    assert!(
        !sent.contains("<Cred>"),
        "package 1 goes without credentials"
    );
    assert!(report.transcript[0].1.contains("<Data>407</Data>"));
    assert!(report.transcript[1].0.contains("<Cred>"));

    let view = admin
        .get(format!("{url}/api/v1/commands/{id}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    assert_eq!(view["devices"][0]["state"], "acknowledged", "{view}");
    assert!(!view["devices"][0]["results"].as_array().unwrap().is_empty());

    // The next session starts again without credentials and is challenged once more.
    device.sync().await.unwrap();
}
