//! nginx in front of two `winmdm serve` replicas on one Postgres database, in the three
//! set-ups `docs/deploy.md` shows (the configurations written here are its templates):
//!
//! - passthrough: the `stream` module forwards TLS bytes round robin per connection;
//!   mTLS ends at the replicas;
//! - terminated: nginx ends TLS, asks for a client certificate (`optional_no_ca`) and
//!   forwards it in a header (`$ssl_client_escaped_cert`) to replicas started with
//!   `--client-cert-header` and `--trusted-proxy 127.0.0.1/32`, round robin per request;
//! - digest: nginx ends TLS without asking for a certificate, the replicas run
//!   `--management-auth digest`, round robin per request.
//!
//! Through each, the harness runs the whole suite against nginx's address (the chunked
//! large result among them), then one replica is killed with SIGKILL and the other
//! serves the enrollment and management scenarios again. Needs `WINMDM_TEST_POSTGRES_URL`
//! and nginx with its stream module (Debian: `nginx`, `libnginx-mod-stream`): under
//! `CI=true` the test fails without them, otherwise it says why and returns.

mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECRET: &str = "nginx-secret";
const ADMIN: &str = "nginx-admin";
/// The header the terminating set-up forwards the client certificate in.
const CERT_HEADER: &str = "X-SSL-Client-Cert";

/// The nginx binary and the `load_module` line its stream module needs ("" when built in).
struct Nginx {
    exe: PathBuf,
    load_stream: String,
}

/// What the test needs, or why it cannot run (a failure under CI).
fn requirements() -> Option<(String, Nginx)> {
    let postgres = std::env::var("WINMDM_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let nginx = find_nginx();
    let why = match (&postgres, &nginx) {
        (Some(_), Ok(_)) => None,
        (None, _) => Some("WINMDM_TEST_POSTGRES_URL is not set".to_string()),
        (_, Err(e)) => Some(e.clone()),
    };
    if let Some(why) = why {
        // `.ci/run` sets WINMDM_TEST_POSTGRES_LATER in its SQLite pass: this test runs in
        // the Postgres pass that follows.
        let later = postgres.is_none() && std::env::var_os("WINMDM_TEST_POSTGRES_LATER").is_some();
        if std::env::var_os("CI").is_some() && !later {
            panic!("CI: the nginx test cannot run: {why}");
        }
        eprintln!("skipped: {why}");
        return None;
    }
    Some((postgres?, nginx.ok()?))
}

fn find_nginx() -> Result<Nginx, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let exe = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join("nginx"))
        .find(|p| p.is_file())
        .ok_or("nginx is not installed (Debian: apt-get install nginx libnginx-mod-stream)")?;
    let v = Command::new(&exe)
        .arg("-V")
        .output()
        .map_err(|e| format!("{} -V: {e}", exe.display()))?;
    let build = String::from_utf8_lossy(&v.stderr).into_owned();
    let load_stream = if build.contains("--with-stream=dynamic") {
        let module = ["/usr/lib/nginx/modules", "/usr/share/nginx/modules"]
            .iter()
            .map(|d| Path::new(d).join("ngx_stream_module.so"))
            .find(|p| p.is_file())
            .ok_or("nginx's stream module is not installed (Debian: libnginx-mod-stream)")?;
        format!("load_module {};", module.display())
    } else if build.contains("--with-stream ") || build.ends_with("--with-stream") {
        String::new()
    } else {
        return Err("nginx is built without the stream module".into());
    };
    Ok(Nginx { exe, load_stream })
}

/// A child process killed when dropped, with its stdout kept open while it runs.
struct Killed {
    child: Child,
    _stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
    /// SIGTERM first: nginx's workers outlive a master killed with SIGKILL, while
    /// SIGTERM (fast shutdown) stops them with it.
    graceful: bool,
}

impl Drop for Killed {
    fn drop(&mut self) {
        if self.graceful {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            for _ in 0..200 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One replica on the shared database and data directory; its listening address.
fn replica(
    data: &Path,
    db: &str,
    public_url: &str,
    extra: &[&str],
    log: &Path,
) -> (Killed, String) {
    let started = serve::spawn(
        Command::new(env!("CARGO_BIN_EXE_winmdm"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(["--database-url", db, "--public-url", public_url])
            .args(["--enroll-secret", SECRET, "--admin-token", ADMIN])
            .args(["--enroll-rate-per-client", "0"])
            // Half-sent requests closed after 2 s (the slow-request attack scenario).
            .args([
                "--header-read-timeout-secs",
                "2",
                "--body-read-timeout-secs",
                "2",
            ])
            .args(extra)
            .stderr(std::fs::File::create(log).expect("replica log")),
    );
    (
        Killed {
            child: started.child,
            _stdout: Some(started.stdout),
            graceful: false,
        },
        started.addr,
    )
}

/// How nginx stands in front of the replicas.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    Passthrough,
    Terminated,
    Digest,
}

impl Setup {
    /// The replicas' flags for this set-up.
    fn replica_flags(self) -> Vec<&'static str> {
        match self {
            Setup::Passthrough => vec![],
            Setup::Terminated => vec![
                "--client-cert-header",
                CERT_HEADER,
                "--trusted-proxy",
                "127.0.0.1/32",
            ],
            Setup::Digest => vec!["--management-auth", "digest"],
        }
    }
}

/// The nginx configuration of a set-up (`docs/deploy.md` shows these as templates).
fn nginx_conf(
    setup: Setup,
    load_stream: &str,
    dir: &Path,
    data: &Path,
    listen: &str,
    upstreams: &[String],
) -> String {
    let d = dir.display();
    let servers: String = upstreams
        .iter()
        .map(|u| format!("        server {u};\n"))
        .collect();
    let head = format!(
        "{load_stream}\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{\n    worker_connections 1024;\n}}\n"
    );
    if setup == Setup::Passthrough {
        return format!(
            r#"{head}
stream {{
    log_format upstreams '$remote_addr $upstream_addr $status';
    access_log {d}/access.log upstreams;
    upstream winmdm {{
{servers}    }}
    server {{
        listen {listen};
        proxy_pass winmdm;
    }}
}}
"#
        );
    }
    let data = data.display();
    // Terminated: ask for a client certificate without judging it (the replicas
    // judge it) and forward it; the header replaces any of that name the client sent.
    let (verify, forward) = if setup == Setup::Terminated {
        (
            "        ssl_verify_client optional_no_ca;\n".to_string(),
            format!("            proxy_set_header {CERT_HEADER} $ssl_client_escaped_cert;\n"),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        r#"{head}
http {{
    log_format upstreams '$remote_addr "$request" $status $upstream_addr';
    access_log {d}/access.log upstreams;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    upstream winmdm {{
{servers}    }}
    server {{
        listen {listen} ssl;
        ssl_certificate {data}/tls-cert.pem;
        ssl_certificate_key {data}/tls-key.pem;
        client_max_body_size 16m;
        client_body_buffer_size 1m;
        client_header_timeout 5s;
        client_body_timeout 5s;
{verify}        location / {{
            proxy_pass https://winmdm;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {data}/tls-cert.pem;
            proxy_ssl_name localhost;
            proxy_set_header Host $http_host;
{forward}            proxy_request_buffering off;
        }}
    }}
}}
"#
    )
}

/// nginx in the foreground with its own prefix, configuration and error log.
fn start_nginx(nginx: &Nginx, dir: &Path, conf: &str, port: u16) -> Killed {
    use std::os::unix::fs::PermissionsExt;
    // Workers may run as another user (nginx started as root): they write body
    // buffers under tmp/.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::create_dir_all(dir.join("tmp")).expect("tmp dir");
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let mut child = Command::new(&nginx.exe)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("nginx exited ({status}): {log}\n{conf}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Killed {
                child,
                _stdout: None,
                graceful: true,
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nginx did not listen on {port}");
}

fn suite(files: &[&str]) -> Vec<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"));
    files
        .iter()
        .map(|f| dir.join(format!("{f}.toml")))
        .collect()
}

/// Runs the harness against nginx; the failures (scenario lines and their failed steps).
fn harness(url: &str, ca: &Path, files: &[PathBuf], extra: &[&str]) -> (String, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("run")
        .args(files)
        .args([
            "--server",
            url,
            "--enroll-secret",
            SECRET,
            "--admin-token",
            ADMIN,
        ])
        .arg("--ca-file")
        .arg(ca)
        .args(extra)
        .output()
        .expect("run the harness");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut failed: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("FAIL ") || l.trim_start().starts_with("FAIL "))
        .map(str::to_string)
        .collect();
    if out.status.code() != Some(0) && failed.is_empty() {
        failed.push(format!(
            "exit status {:?}: {}{}",
            out.status.code(),
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    (text, failed)
}

/// Runs one set-up; the failures, each prefixed with the set-up and phase.
fn run_setup(setup: Setup, postgres: &str, nginx: &Nginx) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).expect("nginx dir");
    let db = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(winmdm_server::db::create_scratch_postgres_database(
            postgres,
        ))
        .expect("a Postgres database");
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let flags = setup.replica_flags();
    // The first creates the identity CA and TLS material, the second loads them.
    let (mut first, a) = replica(&data, &db, &url, &flags, &dir.path().join("replica-a.log"));
    let (_second, b) = replica(&data, &db, &url, &flags, &dir.path().join("replica-b.log"));
    let conf = nginx_conf(
        setup,
        &nginx.load_stream,
        &nginx_dir,
        &data,
        &format!("127.0.0.1:{port}"),
        &[a.clone(), b.clone()],
    );
    let nginx_process = start_nginx(nginx, &nginx_dir, &conf, port);
    let ca = data.join("tls-cert.pem");
    let declared: &[&str] = if setup == Setup::Digest {
        &["--management-auth", "digest"]
    } else {
        &[]
    };
    let mut failures = Vec::new();
    // The whole suite: what the set-up cannot do is skipped (restarts, kills and
    // replicas of an external server; the certificate scenarios under digest and the
    // digest ones under mTLS).
    let whole = vec![PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"))];
    let (out, failed) = harness(&url, &ca, &whole, declared);
    failures.extend(
        failed
            .into_iter()
            .map(|f| format!("{setup:?}, both replicas: {f}")),
    );
    let about = if setup == Setup::Digest {
        "digest-wrong-secret"
    } else {
        "mtls-matrix"
    };
    for name in ["happy-path", "large-result-across-messages", about] {
        if !out.contains(&format!("PASS {name}")) && !failures.iter().any(|f| f.contains(name)) {
            failures.push(format!("{setup:?}: {name} did not pass: {out}"));
        }
    }
    let log = std::fs::read_to_string(nginx_dir.join("access.log")).unwrap_or_default();
    for r in [&a, &b] {
        if !log.contains(r.as_str()) {
            failures.push(format!(
                "{setup:?}: nginx never routed to replica {r}: {log}"
            ));
        }
    }
    // SIGKILL one replica: nginx passes what it would have served to the other.
    let _ = first.child.kill();
    let _ = first.child.wait();
    let again = suite(&["01-happy-path", "07-commands-every-verb", "13-large-result"]);
    let (_, failed) = harness(&url, &ca, &again, declared);
    failures.extend(
        failed
            .into_iter()
            .map(|f| format!("{setup:?}, one replica killed: {f}")),
    );
    // Stopped with its workers: nothing listens on its port any more.
    drop(nginx_process);
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        failures.push(format!(
            "{setup:?}: nginx still listens on {port} after its stop"
        ));
    }
    if !failures.is_empty() {
        let errors = std::fs::read_to_string(nginx_dir.join("error.log")).unwrap_or_default();
        let tail: Vec<&str> = errors.lines().rev().take(20).collect();
        failures.push(format!(
            "{setup:?} nginx error.log (last lines, newest first): {tail:?}"
        ));
        for r in ["replica-a.log", "replica-b.log"] {
            let log = std::fs::read_to_string(dir.path().join(r)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            failures.push(format!(
                "{setup:?} {r} (last lines, newest first): {tail:?}"
            ));
        }
    }
    failures
}

#[test]
fn two_replicas_behind_nginx_pass_through_terminated_and_digest() {
    let Some((postgres, nginx)) = requirements() else {
        return;
    };
    let mut failures = Vec::new();
    for setup in [Setup::Passthrough, Setup::Terminated, Setup::Digest] {
        failures.extend(run_setup(setup, &postgres, &nginx));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `docs/deploy.md` shows the configurations this test runs, as templates: the same
/// text with a production's paths, port and replica addresses.
#[test]
fn the_deploy_guide_shows_the_tested_configurations() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy.md"))
        .expect("docs/deploy.md");
    let replicas = ["10.0.0.11:8443".to_string(), "10.0.0.12:8443".to_string()];
    for setup in [Setup::Passthrough, Setup::Terminated, Setup::Digest] {
        let conf = nginx_conf(
            setup,
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;",
            Path::new("/var/lib/winmdm-nginx"),
            Path::new("/var/lib/winmdm"),
            "443",
            &replicas,
        );
        assert!(
            doc.contains(&conf),
            "docs/deploy.md lacks the {setup:?} configuration:\n{conf}"
        );
    }
}
