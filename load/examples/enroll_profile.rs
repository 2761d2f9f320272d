//! Profiling target for the server's work per enrollment (docs/performance.md, issue 15):
//! an embedded bench server on its own runtime, `N` devices (pool keys, CSRs signed
//! beforehand) taken through Orbit untimed, then discovery, policy and
//! RequestSecurityToken one device at a time on this thread.
//!
//! Between "window starts" and "window ends" it waits for a line on stdin, so that a
//! profiler can be switched on and off around the enrollments alone:
//!
//! ```sh
//! valgrind --tool=callgrind --collect-atstart=no --separate-threads=yes \
//!   target/release/examples/enroll_profile 100
//! # on "window starts": callgrind_control -i on <pid>, then Enter;
//! # on "window ends": callgrind_control -d <pid>, then Enter.
//! ```
//!
//! The devices run on the main thread (thread 1 in callgrind's per-thread files); every
//! other thread is the server's.

use std::io::BufRead;

use fake_windows_client::csr::HashAlg;
use fake_windows_client::http::TlsContext;
use fake_windows_client::{Device, DeviceProfile};
use winmdm_load::bench::{BenchServer, TlsKeyType};
use winmdm_load::keypool::{self, KeyPool};

fn wait(what: &str) {
    eprintln!("{what}");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50);
    let pool = KeyPool::open(&keypool::default_dir(), n, &|_, _| {})?;
    let server = BenchServer::start(None, TlsKeyType::Ecdsa).await?;
    let target = server.target.clone();
    let plain = TlsContext::new(&target.tls())?.client(None)?;
    let mut prepared = Vec::with_capacity(n);
    for i in 0..n {
        let mut d = Device::new(DeviceProfile::random(), target.tls())?;
        d.set_http_client(plain.clone());
        d.use_key_pkcs8(pool.der(i).ok_or("key pool too short")?)?;
        d.presign_csr(HashAlg::Sha1)?;
        d.orbit_enroll(&target.server_url, &target.enroll_secret)
            .await?;
        let notes = d.orbit_config().await?;
        let url = notes
            .windows_mdm_discovery_endpoint
            .ok_or("no discovery endpoint")?;
        prepared.push((d, url));
    }
    wait("window starts");
    for (d, url) in &mut prepared {
        let upn = d.profile().upn.clone();
        let token = d.node_key().unwrap_or_default().to_string();
        d.discovery_probe(url).await?;
        let discovery = d.discover(url, &upn).await?;
        let policy = d.get_policies(&discovery, &token).await?;
        d.generate_key_pair(&policy)?;
        let doc = d
            .request_security_token(&discovery, &policy, &token)
            .await?;
        d.apply_provisioning(url, &upn, &doc)?;
    }
    wait("window ends");
    Ok(())
}
