//! The checker of a chaos run: the history (admin acknowledgements, device ledgers)
//! against what the server stored, read back through its admin API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ChaosReport, Run, Violation};

/// `GET /api/v1/commands/{id}`; None while the server does not answer.
async fn command(run: &Run, id: &str) -> Option<Value> {
    let token = run.target.admin_token.as_deref()?;
    let url = format!("{}/api/v1/commands/{id}", run.target.server_url);
    let resp = run.admin.get(url).bearer_auth(token).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    serde_json::from_str(&resp.text().await.ok()?).ok()
}

/// This device's delivery in a command view.
fn delivery<'a>(view: &'a Value, device_id: &str) -> Option<&'a Value> {
    view["devices"]
        .as_array()?
        .iter()
        .find(|d| d["device_id"] == device_id)
}

/// Waits until every acknowledged command is acknowledged by every device it targets,
/// or `quiet` has passed (the checker then names what is missing).
pub(super) async fn wait_for_drain(run: &Run, quiet: Duration) {
    let deadline = Instant::now() + quiet;
    let mut open: Vec<(String, Vec<String>)> = run
        .acknowledged
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    while !open.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for (id, devices) in open {
            let done = match command(run, &id).await {
                Some(v) => devices
                    .iter()
                    .all(|d| delivery(&v, d).is_some_and(|x| x["state"] == "acknowledged")),
                None => false,
            };
            if !done {
                still.push((id, devices));
            }
        }
        open = still;
        if !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    while !super::profiles::settled(run).await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn violation(
    invariant: &'static str,
    device_id: &str,
    detail: String,
    excerpt: &Value,
) -> Violation {
    Violation {
        invariant,
        device_id: device_id.to_string(),
        detail,
        excerpt: excerpt.to_string().chars().take(600).collect(),
    }
}

/// Every invariant, over the whole history.
pub(super) async fn check(run: &Run) -> ChaosReport {
    let mut report = ChaosReport::default();
    let acknowledged = run
        .acknowledged
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    let ledgers = run
        .ledgers
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    report.enrolled = run.enrolled.lock().map(|e| e.len()).unwrap_or(0);
    report.commands_acknowledged = acknowledged.len();
    let mut views: BTreeMap<String, Value> = BTreeMap::new();
    let mut passed: BTreeMap<&'static str, u64> = BTreeMap::new();

    // Every command the admin API acknowledged reaches each of its devices, and the
    // device's answer is stored once.
    for (id, devices) in &acknowledged {
        let Some(view) = command(run, id).await else {
            report.violations.push(violation(
                "command_delivered",
                devices.first().map(String::as_str).unwrap_or(""),
                format!("command {id} acknowledged by the admin API is unknown to the server"),
                &Value::Null,
            ));
            continue;
        };
        for d in devices {
            report.deliveries_checked += 1;
            *passed.entry("command_delivered").or_default() += 1;
            *passed.entry("answer_stored_once").or_default() += 1;
            let Some(x) = delivery(&view, d) else {
                report.violations.push(violation(
                    "command_delivered",
                    d,
                    format!("command {id}: no delivery for this device"),
                    &view,
                ));
                continue;
            };
            if x["state"] != "acknowledged" || x["status_code"].is_null() {
                report.violations.push(violation(
                    "command_delivered",
                    d,
                    format!("command {id} is {} after the queue drained", x["state"]),
                    x,
                ));
            }
            let results = x["results"]
                .as_array()
                .map(|r| r.iter().filter(|r| r["kind"] == "Results").count())
                .unwrap_or(0);
            if results > 1 {
                report.violations.push(violation(
                    "answer_stored_once",
                    d,
                    format!("command {id}: {results} Results stored"),
                    x,
                ));
            }
        }
        views.insert(id.clone(), view);
    }

    // Every Status the server answered with HTTP 200 is stored with the code sent.
    for l in &ledgers {
        // No half enrollment or renewal: the certificate the device holds at the end
        // (the one it was handed last) is on record and accepted on management.
        if let Some(ok) = l.final_session_ok {
            *passed.entry("certificate_accepted").or_default() += 1;
            if !ok {
                report.violations.push(violation(
                    "certificate_accepted",
                    &l.device_id,
                    "the device's session after the drain failed: its certificate is not accepted"
                        .into(),
                    &Value::Null,
                ));
            }
        }
        report.outage.messages += l.outage.messages;
        report.outage.answered_5xx += l.outage.answered_5xx;
        report.outage.answered_200_after += l.outage.answered_200_after;
        report.outage.answered_200_while_down += l.outage.answered_200_while_down;
        report.outage.other += l.outage.other;
        report.messages += l.messages;
        report.answered_messages += l.answered_messages;
        report.violations.extend(l.violations.iter().cloned());
        *passed.entry("no_command_twice").or_default() += l
            .commands
            .values()
            .map(|c| u64::from(c.received))
            .sum::<u64>();
        for (id, code) in l.acknowledged() {
            *passed.entry("answered_status_stored").or_default() += 1;
            let view = match views.get(id) {
                Some(v) => Some(v.clone()),
                None => command(run, id).await,
            };
            let stored = view
                .as_ref()
                .and_then(|v| delivery(v, &l.device_id))
                .and_then(|x| x["status_code"].as_str().map(str::to_string));
            if stored.as_deref() != Some(code) {
                report.violations.push(violation(
                    "answered_status_stored",
                    &l.device_id,
                    format!(
                        "the device's Status {code} for command {id} was answered with HTTP 200, the server stored {stored:?}"
                    ),
                    view.as_ref().unwrap_or(&Value::Null),
                ));
            }
        }
    }
    // No management message is answered 200 by a server that cannot have stored it:
    // each needs the database from its first step (the client certificate's lookup).
    if report.outage.messages > 0 {
        *passed.entry("no_200_while_database_down").or_default() += report.outage.messages;
    }
    for l in ledgers
        .iter()
        .filter(|l| l.outage.answered_200_while_down > 0)
    {
        report.violations.push(violation(
            "no_200_while_database_down",
            &l.device_id,
            format!(
                "{} management messages answered 200 in sessions that ran wholly while the database was down",
                l.outage.answered_200_while_down
            ),
            &Value::Null,
        ));
    }
    // Each device's profile states against its tree (only devices whose last session
    // succeeded: their tree is what the server last saw).
    let trees = ledgers
        .iter()
        .filter(|l| l.final_session_ok == Some(true))
        .map(|l| (l.device_id.clone(), l.tree.clone()))
        .collect();
    report.assignments_acknowledged = run.assignments.lock().map(|a| a.len()).unwrap_or(0);
    report.assignments_checked =
        super::profiles::check(run, &trees, &mut passed, &mut report.violations).await;
    report.passed = passed;
    report
}
