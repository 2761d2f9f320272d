//! The figures of one load run, as text and as JSON.

use super::*;

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub devices: usize,
    pub concurrency: usize,
    pub enrolled: u64,
    /// Devices with at least one completed check-in.
    pub devices_checked_in: u64,
    pub checkins: u64,
    /// Check-ins that resumed the device's TLS session of its last check-in.
    pub checkin_resumptions: u64,
    /// Full TLS handshakes of check-ins (the first of each device, and any refused
    /// resumption).
    pub checkin_full_handshakes: u64,
    pub syncml_messages: u64,
    pub commands: u64,
    pub enroll_elapsed: Duration,
    pub elapsed: Duration,
    pub stats: Stats,
    pub rss_before: u64,
    pub rss_enrolled: u64,
    /// Bytes of compact state per idle device (heap entry, certificate, pool key).
    pub state_bytes_per_device: u64,
    pub keys_generated: usize,
    pub key_generation: Duration,
    /// The interval and per-interval figures, when the run kept a timeline.
    pub timeline: Option<(Duration, Vec<crate::timeline::Slot>)>,
}

impl LoadReport {
    pub fn enrollments_per_s(&self) -> f64 {
        per_s(self.enrolled, self.enroll_elapsed)
    }
    pub fn syncml_msgs_per_s(&self) -> f64 {
        per_s(self.syncml_messages, self.elapsed)
    }
    /// Growth of the process RSS from before enrollment to all devices enrolled and
    /// idle, per device (includes the in-process server's growth when embedded).
    pub fn rss_bytes_per_device(&self) -> u64 {
        self.rss_enrolled
            .saturating_sub(self.rss_before)
            .checked_div(self.enrolled)
            .unwrap_or(0)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let latency: serde_json::Map<String, serde_json::Value> = self
            .stats
            .latency
            .iter()
            .map(|(k, h)| {
                (
                    k.to_string(),
                    json!({
                        "count": h.count(),
                        "p50_ms": round3(h.quantile_ms(0.50)),
                        "p95_ms": round3(h.quantile_ms(0.95)),
                        "p99_ms": round3(h.quantile_ms(0.99)),
                    }),
                )
            })
            .collect();
        json!({
            "devices": self.devices,
            "concurrency": self.concurrency,
            "enrolled": self.enrolled,
            "devices_checked_in": self.devices_checked_in,
            "checkins": self.checkins,
            "checkin_resumptions": self.checkin_resumptions,
            "checkin_full_handshakes": self.checkin_full_handshakes,
            "syncml_messages": self.syncml_messages,
            "commands": self.commands,
            "enroll_seconds": round3(self.enroll_elapsed.as_secs_f64()),
            "elapsed_seconds": round3(self.elapsed.as_secs_f64()),
            "enrollments_per_s": round3(self.enrollments_per_s()),
            "syncml_msgs_per_s": round3(self.syncml_msgs_per_s()),
            "errors": self.stats.error_total(),
            "errors_by_kind": self.stats.errors,
            "latency": latency,
            "rss_bytes_before": self.rss_before,
            "rss_bytes_enrolled": self.rss_enrolled,
            "rss_bytes_per_device": self.rss_bytes_per_device(),
            "state_bytes_per_device": self.state_bytes_per_device,
            "keys_generated": self.keys_generated,
        })
    }

    /// The human-readable table.
    pub fn print(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            w,
            "devices {} (enrolled {}, checked in {}), concurrency {}",
            self.devices, self.enrolled, self.devices_checked_in, self.concurrency
        )?;
        if self.keys_generated > 0 {
            writeln!(
                w,
                "key pool: generated {} keys in {:.1} s",
                self.keys_generated,
                self.key_generation.as_secs_f64()
            )?;
        }
        writeln!(
            w,
            "enrollments    {:>10.1}/s  ({} in {:.2} s)",
            self.enrollments_per_s(),
            self.enrolled,
            self.enroll_elapsed.as_secs_f64()
        )?;
        writeln!(
            w,
            "SyncML msgs    {:>10.1}/s  ({} messages, {} check-ins, {} commands in {:.2} s)",
            self.syncml_msgs_per_s(),
            self.syncml_messages,
            self.checkins,
            self.commands,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            w,
            "TLS            {:>10} check-ins resumed, {} full handshakes",
            self.checkin_resumptions, self.checkin_full_handshakes
        )?;
        writeln!(
            w,
            "client memory  {:>10} B/device RSS growth, {} B/device compact state",
            self.rss_bytes_per_device(),
            self.state_bytes_per_device
        )?;
        writeln!(
            w,
            "\n{:<14} {:>9} {:>9} {:>9} {:>9}",
            "endpoint", "count", "p50 ms", "p95 ms", "p99 ms"
        )?;
        for name in stats::ENDPOINTS {
            if let Some(h) = self.stats.latency.get(name) {
                writeln!(
                    w,
                    "{:<14} {:>9} {:>9.2} {:>9.2} {:>9.2}",
                    name,
                    h.count(),
                    h.quantile_ms(0.50),
                    h.quantile_ms(0.95),
                    h.quantile_ms(0.99)
                )?;
            }
        }
        if self.stats.errors.is_empty() {
            writeln!(w, "\nerrors: none")?;
        } else {
            writeln!(w, "\nerrors: {}", self.stats.error_total())?;
            for (k, n) in &self.stats.errors {
                writeln!(w, "  {n:>8}  {k}")?;
            }
        }
        Ok(())
    }
}

fn per_s(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
