//! The figures of one `bench` run, as text and as JSON.

use super::*;

/// SyncML throughput on one backend.
#[derive(Debug, Clone)]
pub struct SyncmlFigure {
    pub backend: &'static str,
    pub connect: phases::Connect,
    pub messages: u64,
    pub commands: u64,
    pub sessions: u64,
    pub errors: u64,
    /// Commands the server recorded as acknowledged at the end (durable).
    pub acknowledged: u64,
    pub elapsed: Duration,
    /// CPU time of the server threads during the phase.
    pub server_cpu: Duration,
    /// CPU time of the rest of the process during the phase: the emulated devices (and
    /// the admin requests queueing their commands).
    pub device_cpu: Duration,
    /// CPU time of the database's own processes during the phase (Postgres: the
    /// backends serving the benchmark's database), when it could be read.
    pub database_cpu: Option<Duration>,
    /// New connections on which the device offered a TLS session to resume.
    pub resumptions_offered: u64,
    /// Bytes the process caused to be written to storage during the phase.
    pub disk_written: Option<u64>,
    /// Idle and I/O-wait time of the machine's cores during the phase.
    pub machine_idle: Option<Duration>,
}

impl SyncmlFigure {
    pub fn database_cpu_us_per_msg(&self) -> Option<f64> {
        self.database_cpu
            .map(|c| c.as_secs_f64() * 1e6 / (self.messages.max(1) as f64))
    }
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn commands_per_s(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn server_cpu_us_per_msg(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / (self.messages.max(1) as f64)
    }
    pub fn server_cpu_us_per_session(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / (self.sessions.max(1) as f64)
    }
    pub fn device_cpu_us_per_msg(&self) -> f64 {
        self.device_cpu.as_secs_f64() * 1e6 / (self.messages.max(1) as f64)
    }
    pub fn device_cpu_us_per_session(&self) -> f64 {
        self.device_cpu.as_secs_f64() * 1e6 / (self.sessions.max(1) as f64)
    }
    pub fn disk_bytes_per_msg(&self) -> Option<f64> {
        self.disk_written
            .map(|b| b as f64 / (self.messages.max(1) as f64))
    }
    /// The share of the machine's cores idle (or waiting for I/O) during the phase.
    pub fn idle_share(&self, cores: usize) -> Option<f64> {
        let whole = self.elapsed.as_secs_f64() * cores as f64;
        self.machine_idle
            .map(|i| (i.as_secs_f64() / whole.max(1e-9)).min(1.0))
    }
    /// Messages/s the server threads would sustain with every core (see [`capacity`]).
    pub fn capacity(&self, cores: usize) -> f64 {
        capacity(self.messages, self.server_cpu, cores)
    }
}

/// Enrollments completed in a timed window.
#[derive(Debug, Clone, Default)]
pub struct EnrollFigure {
    pub enrolled: u64,
    pub elapsed: Duration,
    pub errors: u64,
    /// CPU time of the server threads in the window.
    pub server_cpu: Duration,
}

impl EnrollFigure {
    pub fn per_s(&self) -> f64 {
        self.enrolled as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn server_cpu_ms_per_enrollment(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1000.0 / (self.enrolled.max(1) as f64)
    }
}

/// Work done per second of the server threads' CPU time, times `cores`: what the server
/// would sustain with the machine's cores to itself (0 when not measured).
pub fn capacity(count: u64, server_cpu: Duration, cores: usize) -> f64 {
    if server_cpu.is_zero() {
        return 0.0;
    }
    count as f64 / server_cpu.as_secs_f64() * cores as f64
}

/// Every figure of one run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub cores: usize,
    pub rsa2048_sign_per_s: f64,
    /// `openssl speed -multi <cores> rsa2048` on the same cores, when openssl is installed.
    pub rsa2048_sign_per_s_openssl: Option<f64>,
    /// The SQLite `synchronous` setting of the benchmark's servers.
    pub sqlite_synchronous: String,
    /// Key type of the servers' TLS certificate.
    pub tls_key_type: super::TlsKeyType,
    /// Phase (b).
    pub enroll: EnrollFigure,
    /// Phase (b) again with each device signing its CSR inside the timed window.
    pub enroll_device_signing: EnrollFigure,
    pub syncml: Vec<SyncmlFigure>,
    pub devices: LoadReport,
}

impl BenchReport {
    pub fn enroll_per_s(&self) -> f64 {
        self.enroll.per_s()
    }
    pub fn enroll_ratio(&self) -> f64 {
        if self.rsa2048_sign_per_s > 0.0 {
            self.enroll_per_s() / self.rsa2048_sign_per_s
        } else {
            0.0
        }
    }
    /// Enrollments/s the server threads would sustain with every core (see [`capacity`]).
    pub fn enroll_capacity(&self) -> f64 {
        capacity(self.enroll.enrolled, self.enroll.server_cpu, self.cores)
    }
    fn syncml_on(&self, backend: &str) -> Option<&SyncmlFigure> {
        self.syncml_with(backend, phases::Connect::KeepAlive)
    }
    fn syncml_with(&self, backend: &str, connect: phases::Connect) -> Option<&SyncmlFigure> {
        self.syncml
            .iter()
            .find(|s| s.backend == backend && s.connect == connect)
    }
    /// Server CPU of a full TLS handshake: a session on a new connection without
    /// resumption, minus a session on a kept-alive connection.
    pub fn full_handshake_server_us(&self) -> Option<f64> {
        let full = self.syncml_with("sqlite", phases::Connect::NewFullHandshake)?;
        let kept = self.syncml_on("sqlite")?;
        Some(full.server_cpu_us_per_session() - kept.server_cpu_us_per_session())
    }

    pub fn to_json(&self) -> serde_json::Value {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        let sqlite = self.syncml_on("sqlite");
        let pg = self.syncml_on("postgres");
        let new = self.syncml_with("sqlite", phases::Connect::New);
        let full = self.syncml_with("sqlite", phases::Connect::NewFullHandshake);
        let openssl = self.rsa2048_sign_per_s_openssl;
        let mut v = json!({
            "cores": self.cores,
            "rsa2048_sign_per_s": r(self.rsa2048_sign_per_s),
            "rsa2048_sign_per_s_openssl": openssl.map(r),
            "enroll_ratio_openssl": openssl.map(|o| r(self.enroll_per_s() / o.max(1e-9))),
            "enroll_server_capacity_ratio_openssl": openssl.map(|o| r(self.enroll_capacity() / o.max(1e-9))),
            "sqlite_synchronous": self.sqlite_synchronous,
            "syncml_msgs_per_s_new_connection": new.map(|s| r(s.msgs_per_s())),
            "syncml_server_cpu_us_per_session_new_connection": new.map(|s| r(s.server_cpu_us_per_session())),
            "syncml_msgs_per_s_new_connection_full_handshake": full.map(|s| r(s.msgs_per_s())),
            "syncml_server_cpu_us_per_session_full_handshake": full.map(|s| r(s.server_cpu_us_per_session())),
            "full_handshake_server_us": self.full_handshake_server_us().map(r),
            "enroll_per_s": r(self.enroll_per_s()),
            "enroll_ratio": r(self.enroll_ratio()),
            "enrolled": self.enroll.enrolled,
            "enroll_errors": self.enroll.errors,
            "enroll_server_cpu_ms_per_enrollment": r(self.enroll.server_cpu_ms_per_enrollment()),
            "enroll_server_capacity_per_s": r(self.enroll_capacity()),
            "enroll_server_capacity_ratio": r(self.enroll_capacity() / self.rsa2048_sign_per_s.max(1e-9)),
            "enroll_with_device_signing_per_s": r(self.enroll_device_signing.per_s()),
            "enroll_with_device_signing_ratio": r(self.enroll_device_signing.per_s() / self.rsa2048_sign_per_s.max(1e-9)),
            "syncml_msgs_per_s": r(sqlite.map(SyncmlFigure::msgs_per_s).unwrap_or(0.0)),
            "syncml_commands_per_s": r(sqlite.map(SyncmlFigure::commands_per_s).unwrap_or(0.0)),
            "syncml_errors": sqlite.map(|s| s.errors).unwrap_or(0),
            "syncml_server_cpu_us_per_msg": r(sqlite.map(SyncmlFigure::server_cpu_us_per_msg).unwrap_or(0.0)),
            "syncml_server_capacity_msgs_per_s": r(sqlite.map(|s| s.capacity(self.cores)).unwrap_or(0.0)),
            "syncml_commands_answered": sqlite.map(|s| s.commands).unwrap_or(0),
            "syncml_commands_acknowledged": sqlite.map(|s| s.acknowledged).unwrap_or(0),
            "syncml_msgs_per_s_postgres": pg.map(|s| r(s.msgs_per_s())),
            "syncml_commands_per_s_postgres": pg.map(|s| r(s.commands_per_s())),
            "syncml_server_capacity_msgs_per_s_postgres": pg.map(|s| r(s.capacity(self.cores))),
            "devices": self.devices.devices,
            "devices_enrolled": self.devices.enrolled,
            "devices_checked_in": self.devices.devices_checked_in,
            "devices_seconds": r(self.devices.elapsed.as_secs_f64()),
            "devices_enrollments_per_s": r(self.devices.enrollments_per_s()),
            "devices_errors": self.devices.stats.error_total(),
            "rss_bytes_per_device": self.devices.rss_bytes_per_device(),
            "state_bytes_per_device": self.devices.state_bytes_per_device,
        });
        // A second object: one json! of every key exceeds the macro's recursion limit.
        let more = json!({
            "tls_key_type": match self.tls_key_type {
                super::TlsKeyType::Ecdsa => "ecdsa",
                super::TlsKeyType::Rsa => "rsa",
            },
            "syncml_sessions_new_connection": new.map(|s| s.sessions),
            "syncml_resumptions_offered_new_connection": new.map(|s| s.resumptions_offered),
            "syncml_device_cpu_us_per_msg": sqlite.map(|s| r(s.device_cpu_us_per_msg())),
            "syncml_disk_bytes_per_msg": sqlite.and_then(SyncmlFigure::disk_bytes_per_msg).map(r),
            "syncml_machine_idle_share": sqlite.and_then(|s| s.idle_share(self.cores)).map(r),
            "syncml_device_cpu_us_per_session_new_connection": new.map(|s| r(s.device_cpu_us_per_session())),
            "syncml_server_cpu_us_per_msg_postgres": pg.map(|s| r(s.server_cpu_us_per_msg())),
            "syncml_database_cpu_us_per_msg_postgres": pg.and_then(SyncmlFigure::database_cpu_us_per_msg).map(r),
            "devices_checkin_resumptions": self.devices.checkin_resumptions,
            "devices_checkin_full_handshakes": self.devices.checkin_full_handshakes,
        });
        if let (Some(v), serde_json::Value::Object(more)) = (v.as_object_mut(), more) {
            v.extend(more);
        }
        v
    }

    pub fn print(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(w, "cores                      {}", self.cores)?;
        writeln!(
            w,
            "server TLS key             {}",
            match self.tls_key_type {
                super::TlsKeyType::Ecdsa => "ECDSA P-256",
                super::TlsKeyType::Rsa => "RSA-2048",
            }
        )?;
        writeln!(
            w,
            "(a) RSA-2048 signs (aws-lc){:>10.1}/s",
            self.rsa2048_sign_per_s
        )?;
        if let Some(o) = self.rsa2048_sign_per_s_openssl {
            writeln!(
                w,
                "    openssl speed          {o:>10.1}/s  (ratios to it: enroll {:.3}, server capacity {:.3})",
                self.enroll_per_s() / o.max(1e-9),
                self.enroll_capacity() / o.max(1e-9)
            )?;
        }
        writeln!(
            w,
            "(b) enrollments            {:>10.1}/s  ({} in {:.2} s, {} errors)  enroll_ratio {:.3} (goal >= 0.5)",
            self.enroll_per_s(),
            self.enroll.enrolled,
            self.enroll.elapsed.as_secs_f64(),
            self.enroll.errors,
            self.enroll_ratio()
        )?;
        writeln!(
            w,
            "    server CPU             {:>10.3} ms/enrollment; capacity with {} cores {:.1}/s, ratio {:.3}",
            self.enroll.server_cpu_ms_per_enrollment(),
            self.cores,
            self.enroll_capacity(),
            self.enroll_capacity() / self.rsa2048_sign_per_s.max(1e-9)
        )?;
        let b2 = &self.enroll_device_signing;
        writeln!(
            w,
            "(b') with CSR signing      {:>10.1}/s  ({} in {:.2} s, {} errors; each device signs its CSR in the timed window)",
            b2.per_s(),
            b2.enrolled,
            b2.elapsed.as_secs_f64(),
            b2.errors
        )?;
        for s in &self.syncml {
            writeln!(
                w,
                "(c) SyncML msgs {:<10} {:>10.1}/s  ({}, {:.1} commands/s; {} messages, {} sessions, {} errors in {:.2} s; {} of {} answered commands stored as acknowledged)",
                s.backend,
                s.msgs_per_s(),
                s.connect.label(),
                s.commands_per_s(),
                s.messages,
                s.sessions,
                s.errors,
                s.elapsed.as_secs_f64(),
                s.acknowledged,
                s.commands
            )?;
            writeln!(
                w,
                "    server CPU             {:>10.1} us/message, {:.1} us/session; capacity with {} cores {:.1}/s",
                s.server_cpu_us_per_msg(),
                s.server_cpu_us_per_session(),
                self.cores,
                s.capacity(self.cores)
            )?;
            if let (Some(idle), Some(disk)) = (s.idle_share(self.cores), s.disk_bytes_per_msg()) {
                writeln!(
                    w,
                    "    machine                {:>10.1} % of the cores idle or waiting for I/O; {disk:.0} B written to storage per message",
                    idle * 100.0
                )?;
            }
            if s.connect == phases::Connect::New {
                writeln!(
                    w,
                    "    TLS resumption         offered on {} of {} new connections",
                    s.resumptions_offered, s.sessions
                )?;
            }
            if let Some(db) = s.database_cpu_us_per_msg() {
                writeln!(
                    w,
                    "    database CPU           {db:>10.1} us/message ({} backends of the benchmark's database, not in the server's figure)",
                    s.backend
                )?;
            }
        }
        if let Some(h) = self.full_handshake_server_us() {
            writeln!(
                w,
                "    full TLS handshake     {h:>10.1} us of server CPU per session (SQLite synchronous = {})",
                self.sqlite_synchronous
            )?;
        }
        let d = &self.devices;
        writeln!(
            w,
            "(d) {} devices enrolled and checked in once: {} enrolled, {} checked in, {:.2} s, {} errors; RSS growth {} B/device, compact state {} B/device",
            d.devices,
            d.enrolled,
            d.devices_checked_in,
            d.elapsed.as_secs_f64(),
            d.stats.error_total(),
            d.rss_bytes_per_device(),
            d.state_bytes_per_device
        )
    }
}
