//! `GET /metrics`: behind the admin token, in the Prometheus text format, with the
//! counters moved by enrollment, management and admin traffic, routes labelled by their
//! pattern, and the state gauges read from the store. One test: the recorder is global
//! to the process, and tests of one binary run in parallel.

mod common;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use common::*;

const DEVICE: &str = "00112233445566778899AABBCCDDEEFF";
const SYNCML: &str = "application/vnd.syncml.dm+xml";
const PATH: &str = "/api/mdm/microsoft/management";

/// Samples of a scrape: (name, sorted labels) to value.
type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

fn parse(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut labels: Vec<(String, String)> = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once("=\"").expect("label");
                (k.to_string(), v.trim_end_matches('"').to_string())
            })
            .collect();
        labels.sort();
        out.insert((name.to_string(), labels), value.parse().expect("value"));
    }
    out
}

fn value(s: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    s.get(&(name.to_string(), want)).copied().unwrap_or(0.0)
}

async fn scrape(s: &TestServer) -> Samples {
    let r = s.send_admin("GET", "/metrics", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    parse(&r.body)
}

fn message(msg_id: u32, body: &str) -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>7</SessionID><MsgID>{msg_id}</MsgID><Target><LocURI>https://mdm.example.test{PATH}</LocURI></Target><Source><LocURI>{DEVICE}</LocURI></Source></SyncHdr><SyncBody>{body}<Final/></SyncBody></SyncML>"#
    )
}

#[tokio::test]
async fn metrics_count_the_traffic_and_read_states_from_the_store() {
    let s = server().await;

    // Behind the admin token, with the admin API's error shape.
    let r = s
        .send("GET", "/metrics", "text/plain", String::new(), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("\"unauthorized\""), "{}", r.body);

    let before = scrape(&s).await;
    let (cert, _) = s.enroll_device(DEVICE).await;
    // A refused enrollment: a CSR for another DeviceID's token.
    let key = s.node_key().await;
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let bad = rst_request(&format!("{key}x"), &hand_csr(&rsa, b"d", false), "OTHER");
    let r = s.soap("/api/mdm/microsoft/enroll", bad).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    s.queue_get(DEVICE).await;
    let queued = scrape(&s).await;
    let pkg1 = "<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>";
    let r = s
        .send("POST", PATH, SYNCML, message(1, pkg1), Some(cert))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let after = scrape(&s).await;

    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let issued = [("request_type", "issue"), ("outcome", "issued")];
    let refused = [("request_type", "issue"), ("outcome", "refused")];
    assert_eq!(delta("winmdm_enrollments_total", &issued), 1.0);
    assert_eq!(delta("winmdm_enrollments_total", &refused), 1.0);
    let faults: f64 = after
        .iter()
        .filter(|((n, _), _)| n == "winmdm_soap_faults_total")
        .map(|(_, v)| v)
        .sum::<f64>()
        - before
            .iter()
            .filter(|((n, _), _)| n == "winmdm_soap_faults_total")
            .map(|(_, v)| v)
            .sum::<f64>();
    assert_eq!(faults, 1.0, "one SOAP fault");
    assert_eq!(delta("winmdm_omadm_sessions_total", &[]), 1.0);
    assert_eq!(
        delta("winmdm_omadm_messages_total", &[("outcome", "answered")]),
        1.0
    );
    // Routes by pattern: no DeviceID in a label.
    let route = [
        ("method", "POST"),
        ("route", "/api/v1/devices/{device_id}/commands"),
        ("status", "201"),
    ];
    assert_eq!(delta("winmdm_http_requests_total", &route), 1.0);
    assert!(after
        .keys()
        .all(|(_, l)| l.iter().all(|(_, v)| !v.contains(DEVICE))));
    let latency = [
        ("method", "POST"),
        ("route", "/api/mdm/microsoft/management"),
    ];
    assert!(
        value(
            &after,
            "winmdm_http_request_duration_seconds_count",
            &latency
        ) >= 1.0
    );

    // Gauges from this server's store: pending before the session, sent after it.
    let deliveries = "winmdm_command_deliveries";
    assert_eq!(value(&queued, deliveries, &[("state", "pending")]), 1.0);
    assert_eq!(value(&after, deliveries, &[("state", "pending")]), 0.0);
    assert_eq!(value(&after, deliveries, &[("state", "sent")]), 1.0);
    assert_eq!(
        value(
            &after,
            "winmdm_enrollments_by_state",
            &[("state", "enrolled")]
        ),
        1.0
    );
    assert!(value(&after, "winmdm_db_pool_connections", &[("state", "max")]) >= 1.0);
    if s.state.store.backend() == winmdm_server::db::Backend::Sqlite {
        assert!(value(&after, "winmdm_sqlite_writer_batch_size_count", &[]) >= 1.0);
    }
}

#[test]
fn the_parser_reads_labels() {
    let s = parse("# HELP x y\nx_total{a=\"1\",b=\"c,d\"} 3\ny 2.5\n");
    assert_eq!(value(&s, "x_total", &[("b", "c,d"), ("a", "1")]), 3.0);
    assert_eq!(value(&s, "y", &[]), 2.5);
}

/// `--metrics-token` opens `/metrics` and nothing else; the admin token opens it too.
#[tokio::test]
async fn the_metrics_token_opens_metrics_only() {
    for admin in [true, false] {
        let s = server_with(|c| {
            c.metrics_token = Some("scraper".into());
            if !admin {
                c.admin_token = None;
            }
        })
        .await;
        let get = |path: &'static str, token: &'static str| {
            let s = &s;
            async move {
                let req = axum::http::Request::get(path)
                    .header("authorization", format!("Bearer {token}"))
                    .body(axum::body::Body::empty())
                    .expect("request");
                use tower::ServiceExt;
                let mut req = req;
                req.extensions_mut()
                    .insert(winmdm_server::app::PeerCertificate::new(None));
                winmdm_server::app::router(s.state.clone())
                    .oneshot(req)
                    .await
                    .expect("infallible")
                    .status()
            }
        };
        assert_eq!(get("/metrics", "scraper").await, StatusCode::OK);
        assert_eq!(get("/metrics", "wrong").await, StatusCode::UNAUTHORIZED);
        let other = get("/api/v1/devices", "scraper").await;
        let expected = if admin {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(other, expected, "admin API with the metrics token");
        let admin_on_metrics = get("/metrics", "admin").await;
        let expected = if admin {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(admin_on_metrics, expected);
    }
}

/// Each 429 of the enrollment rate limits is counted (no other test of this binary is
/// rate-limited, so the counter moves by exactly this test's refusals).
#[tokio::test]
async fn rate_limit_refusals_are_counted() {
    let s = server_with(|c| c.enroll_rate_global = 1).await;
    let before = scrape(&s).await;
    let mut refused = 0;
    for _ in 0..5 {
        let r = s
            .soap(
                "/api/mdm/microsoft/discovery",
                vector("mde2-discover-request.xml"),
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused >= 1, "a 429 within 5 requests at 1 request/s");
    let after = scrape(&s).await;
    let name = "winmdm_rate_limit_refusals_total";
    assert_eq!(
        value(&after, name, &[]) - value(&before, name, &[]),
        f64::from(refused)
    );
}
