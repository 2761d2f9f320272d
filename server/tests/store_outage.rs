//! A Postgres outage seen by the store: while the database cannot be reached, a query
//! fails promptly (the request is answered 500 and the device sends it again) instead of
//! waiting half a minute for a connection; once the database is back, queries succeed
//! again. Postgres only (WINMDM_TEST_POSTGRES_URL); the database is "stopped" by cutting
//! a TCP relay between the store and it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use winmdm_server::config::SqliteSynchronous;
use winmdm_server::store::{Store, POSTGRES_ACQUIRE_TIMEOUT};

/// A relay on `listen` to `upstream`; aborting it (and its connections) is the outage.
fn relay(listener: TcpListener, upstream: SocketAddr) -> Arc<Mutex<JoinSet<()>>> {
    let conns = Arc::new(Mutex::new(JoinSet::new()));
    let c = conns.clone();
    let accept = async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let task = async move {
                if let Ok(mut out) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            };
            if let Ok(mut set) = c.lock() {
                set.spawn(task);
            }
        }
    };
    if let Ok(mut set) = conns.lock() {
        set.spawn(accept);
    }
    conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_fail_promptly_while_postgres_is_down_and_recover_after() {
    let Ok(admin) = std::env::var("WINMDM_TEST_POSTGRES_URL") else {
        eprintln!("skipped: WINMDM_TEST_POSTGRES_URL is not set");
        return;
    };
    let url = winmdm_server::store::create_scratch_postgres_database(&admin)
        .await
        .expect("scratch database");
    // postgres://user:pass@HOST:PORT/db: the relay takes HOST:PORT's place.
    let (head, rest) = url.split_once('@').expect("URL with credentials");
    let (hostport, db) = rest.split_once('/').expect("URL with a database");
    let upstream: SocketAddr = tokio::net::lookup_host(hostport)
        .await
        .expect("Postgres address")
        .next()
        .expect("an address");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = relay(listener, upstream);
    let store = Store::open(&format!("{head}@{addr}/{db}"), SqliteSynchronous::Full)
        .await
        .expect("store through the relay");
    assert!(store.cert_identity("01").await.is_ok());

    // The outage: every connection cut, new ones refused.
    conns.lock().expect("relay").abort_all();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The first query may meet a broken pooled connection; the next ones need a new
    // connection. Each must fail well before sqlx's default 30 s acquire timeout.
    let bound = POSTGRES_ACQUIRE_TIMEOUT * 3;
    for attempt in 0..3 {
        let r = tokio::time::timeout(bound, store.cert_identity("01")).await;
        assert!(
            matches!(r, Ok(Err(_))),
            "query {attempt} during the outage: {:?} (expected an error within {bound:?})",
            r.map(|r| r.map(|_| ()))
        );
    }

    // The database is back: the pool connects again.
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let _conns = relay(listener, upstream);
    assert!(store.cert_identity("01").await.is_ok());
}
