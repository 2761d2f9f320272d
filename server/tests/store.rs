//! The storage suite: the same cases against every backend, through the `Store` facade
//! only. SQLite always; Postgres too when WINMDM_TEST_POSTGRES_URL names a server (each
//! case gets a scratch database).

use winmdm_server::config::SqliteSynchronous;
use winmdm_server::model::{
    AssignmentState, CommandState, Delivery, EnrollClaim, EnrollConflict, EnrollmentState,
    HostRegistration, ItemCommand, MessageWork, NewCommand, NewEnrollment, ProfileItem,
    ProfilePhase, ReadBack, RenewedCert, ResponseKind, ResponseRecord, Verb,
};
use winmdm_server::store::{Backend, Store};

/// The stores a case runs on, each with what keeps it alive.
async fn stores() -> Vec<(Store, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let sqlite = Store::open(&url, SqliteSynchronous::Normal)
        .await
        .expect("SQLite store");
    let mut out = vec![(sqlite, dir)];
    if let Ok(admin) = std::env::var("WINMDM_TEST_POSTGRES_URL") {
        let url = winmdm_server::store::create_scratch_postgres_database(&admin)
            .await
            .expect("scratch Postgres database");
        let pg = Store::open(&url, SqliteSynchronous::Full)
            .await
            .expect("Postgres store");
        assert_eq!(pg.backend(), Backend::Postgres);
        out.push((pg, tempfile::tempdir().expect("tempdir")));
    }
    out
}

/// One test per case, run on every backend.
macro_rules! on_every_backend {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn on_every_backend() {
                for (store, _keep) in super::stores().await {
                    let backend = store.backend();
                    eprintln!("{} on {backend:?}", stringify!($name));
                    super::$name(store).await;
                }
            }
        }
    )+};
}

on_every_backend!(
    hosts_keep_their_identity_and_take_the_new_node_key,
    the_one_device_rules_hold,
    a_renewed_certificate_retires_the_old_one_at_first_use,
    commands_are_claimed_once_and_acknowledged_by_their_status,
    deliveries_honour_the_reply_size,
    a_command_acknowledged_by_the_message_is_not_sent_again_with_it,
    cancelling_and_unenrolling_withdraw_pending_commands,
    an_acknowledged_unenroll_exec_is_reported,
    a_profile_assignment_moves_through_its_states,
    unknown_devices_are_named,
);

const DEVICE: &str = "0123456789ABCDEF0123456789ABCDEF";

fn host<'a>(hardware_uuid: &'a str, node_key_hash: &'a str) -> HostRegistration<'a> {
    HostRegistration {
        hardware_uuid,
        hardware_serial: "S",
        hostname: "h",
        platform: "windows",
        node_key_hash,
    }
}

fn claim(host_uuid: &str, hardware_uuid: &str, device_id: &str, key: &str) -> EnrollClaim {
    EnrollClaim {
        host_uuid: Some(host_uuid.into()),
        hardware_uuid: hardware_uuid.into(),
        device_id: device_id.into(),
        public_key_sha256: key.into(),
        multi_device: false,
    }
}

fn enrollment(c: &EnrollClaim, serial: &str) -> NewEnrollment {
    NewEnrollment {
        device_id: c.device_id.clone(),
        host_uuid: c.host_uuid.clone(),
        hardware_uuid: c.hardware_uuid.clone(),
        device_name: "d".into(),
        os_version: "10.0.22631".into(),
        enrollment_type: "Device".into(),
        upn: String::new(),
        cert_serial: serial.into(),
        cert_thumbprint: format!("T{serial}"),
        cert_not_after: "2099-01-01T00:00:00Z".into(),
        public_key_sha256: c.public_key_sha256.clone(),
    }
}

/// A host with an enrolled device; returns the claim it enrolled with.
async fn enrolled(store: &Store, device_id: &str, serial: &str) -> EnrollClaim {
    let hw = format!("hw-{device_id}");
    let host_uuid = store
        .upsert_host(host(&hw, &format!("key-{device_id}")))
        .await
        .expect("host");
    let c = claim(&host_uuid, &hw, device_id, &format!("pk-{device_id}"));
    let refused = store
        .record_enrollment(enrollment(&c, serial), c.clone())
        .await
        .expect("record");
    assert_eq!(refused, None);
    c
}

fn get(target: &str) -> String {
    format!("<Get><CmdID>{{{{winmdm:cmdid}}}}</CmdID><Item><Target><LocURI>{target}</LocURI></Target></Item></Get>")
}

async fn queue(store: &Store, devices: &[&str], target: &str) -> String {
    let ids: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    let xml = get(target);
    store
        .enqueue_command(
            &ids,
            NewCommand {
                verb: Verb::Get,
                target,
                body_xml: &xml,
            },
        )
        .await
        .expect("enqueue")
}

fn delivery(limit: usize) -> Delivery {
    Delivery {
        used: 0,
        limit,
        redeliver_after_secs: 3600,
    }
}

fn work(device_id: &str, responses: Vec<ResponseRecord>, deliver: bool) -> MessageWork {
    MessageWork {
        device_id: device_id.into(),
        session_id: "1".into(),
        first_in_session: true,
        current_cert: true,
        responses,
        delivery: deliver.then(|| delivery(usize::MAX)),
    }
}

fn status(cmd_ref: &str, code: &str) -> ResponseRecord {
    ResponseRecord {
        cmd_ref: cmd_ref.into(),
        msg_ref: "1".into(),
        kind: ResponseKind::Status,
        status_code: Some(code.into()),
        body_xml: format!("<Status><Data>{code}</Data></Status>"),
    }
}

fn results(cmd_ref: &str, data: &str) -> ResponseRecord {
    ResponseRecord {
        cmd_ref: cmd_ref.into(),
        msg_ref: "1".into(),
        kind: ResponseKind::Results,
        status_code: None,
        body_xml: format!("<Results><CmdID>9</CmdID><CmdRef>{cmd_ref}</CmdRef><Item><Data>{data}</Data></Item></Results>"),
    }
}

async fn hosts_keep_their_identity_and_take_the_new_node_key(store: Store) {
    let first = store.upsert_host(host("hw-1", "k1")).await.expect("host");
    let again = store.upsert_host(host("hw-1", "k2")).await.expect("host");
    assert_eq!(first, again, "the same hardware keeps its host");
    assert!(store
        .host_by_node_key_hash("k1")
        .await
        .expect("lookup")
        .is_none());
    let h = store
        .host_by_node_key_hash("k2")
        .await
        .expect("lookup")
        .expect("host by its new key");
    assert_eq!(h.host_uuid, first);
    assert_eq!(h.hardware_uuid, "hw-1");
    assert_eq!(
        store.host_enrollment_state(&first).await.expect("state"),
        None
    );
    store.touch_host(&first).await.expect("touch");
}

async fn the_one_device_rules_hold(store: Store) {
    let c = enrolled(&store, DEVICE, "01").await;
    let host_uuid = c.host_uuid.clone().expect("host");
    assert_eq!(
        store
            .host_enrollment_state(&host_uuid)
            .await
            .expect("state"),
        Some(EnrollmentState::Enrolled)
    );
    // The same token for another device.
    let other = claim(&host_uuid, &c.hardware_uuid, "AA", "pk-other");
    assert_eq!(
        store.enrollment_conflict(&other).await.expect("rules"),
        Some(EnrollConflict::DeviceCapReached)
    );
    // Another host for the enrolled DeviceID.
    let taker = store.upsert_host(host("hw-2", "k-2")).await.expect("host");
    let takeover = claim(&taker, "hw-2", DEVICE, "pk-2");
    assert_eq!(
        store
            .record_enrollment(enrollment(&takeover, "02"), takeover.clone())
            .await
            .expect("record"),
        Some(EnrollConflict::DeviceHeldByOtherHost)
    );
    // Another device with the enrolled key.
    let reuse = claim(&taker, "hw-2", "BB", &c.public_key_sha256);
    assert_eq!(
        store.enrollment_conflict(&reuse).await.expect("rules"),
        Some(EnrollConflict::KeyHeldByOtherDevice)
    );
    // The same host enrolling its device again is no conflict.
    assert_eq!(store.enrollment_conflict(&c).await.expect("rules"), None);
    // Released, the DeviceID may move.
    store
        .set_enrollment_state(DEVICE, EnrollmentState::Unenrolled)
        .await
        .expect("release");
    assert_eq!(
        store
            .record_enrollment(enrollment(&takeover, "02"), takeover)
            .await
            .expect("record"),
        None
    );
    let e = store
        .enrollment(DEVICE)
        .await
        .expect("read")
        .expect("enrollment");
    assert_eq!(e.hardware_uuid, "hw-2");
    assert_eq!(e.state, EnrollmentState::Enrolled);
    assert!(
        store.cert_identity("01").await.expect("identity").is_none(),
        "the old certificate is retired"
    );
}

async fn a_renewed_certificate_retires_the_old_one_at_first_use(store: Store) {
    let c = enrolled(&store, DEVICE, "01").await;
    let mut renewal = c.clone();
    renewal.host_uuid = None;
    renewal.multi_device = true;
    renewal.public_key_sha256 = "pk-new".into();
    let refused = store
        .renew_certificate(
            &renewal,
            RenewedCert {
                serial: "02",
                thumbprint: "T02",
                not_after: "2099-01-01T00:00:00Z",
                grace_secs: 3600,
            },
        )
        .await
        .expect("renew");
    assert_eq!(refused, None);
    let old = store
        .cert_identity("01")
        .await
        .expect("identity")
        .expect("in grace");
    assert!(!old.current);
    let new = store
        .cert_identity("02")
        .await
        .expect("identity")
        .expect("active");
    assert!(new.current && new.enrollment_state == EnrollmentState::Enrolled);
    let by_serial = store
        .enrollment_by_cert_serial("02")
        .await
        .expect("read")
        .expect("enrollment");
    assert!(by_serial.current);
    assert_eq!(by_serial.enrollment.cert_serial, "02");
    // The first session with the new certificate retires the old one.
    store
        .record_message(work(DEVICE, vec![], false))
        .await
        .expect("check-in");
    assert!(store.cert_identity("01").await.expect("identity").is_none());
    assert!(store
        .enrollment(DEVICE)
        .await
        .expect("read")
        .is_some_and(|e| e.last_checkin_at.is_some()));
}

async fn commands_are_claimed_once_and_acknowledged_by_their_status(store: Store) {
    enrolled(&store, DEVICE, "01").await;
    let id = queue(&store, &[DEVICE], "./DevDetail/SwV").await;
    let out = store
        .record_message(work(DEVICE, vec![], true))
        .await
        .expect("message");
    let sent = out.commands.expect("delivery ran");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].command_uuid, id);
    assert_eq!(sent[0].verb, Verb::Get);
    assert!(
        store
            .deliver(DEVICE, delivery(usize::MAX))
            .await
            .expect("deliver")
            .is_empty(),
        "claimed once"
    );
    let known = store
        .sent_command(DEVICE, &id)
        .await
        .expect("sent")
        .expect("was sent");
    assert_eq!(known.target, "./DevDetail/SwV");
    let out = store
        .record_message(work(
            DEVICE,
            vec![
                status(&id, "200"),
                results(&id, "10.0"),
                status("nope", "200"),
            ],
            true,
        ))
        .await
        .expect("answers");
    assert_eq!(out.answered.len(), 3);
    assert!(out.answered[0]
        .as_ref()
        .is_some_and(|a| a.verb == Verb::Get));
    assert!(out.answered[2].is_none(), "not from the queue");
    assert!(!out.unenroll_acknowledged);
    let view = store.command(&id).await.expect("view").expect("command");
    assert_eq!(view.verb, Verb::Get);
    assert_eq!(view.devices[0].state, CommandState::Acknowledged);
    assert_eq!(view.devices[0].status_code.as_deref(), Some("200"));
    let kinds: Vec<ResponseKind> = view.devices[0].results.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![ResponseKind::Status, ResponseKind::Results]);
}

async fn deliveries_honour_the_reply_size(store: Store) {
    enrolled(&store, DEVICE, "01").await;
    for n in 0..3 {
        queue(&store, &[DEVICE], &format!("./Vendor/MSFT/Node{n}")).await;
    }
    let first = store.deliver(DEVICE, delivery(1)).await.expect("deliver");
    assert_eq!(first.len(), 1, "the first command always goes");
    let rest = store
        .deliver(DEVICE, delivery(usize::MAX))
        .await
        .expect("deliver");
    assert_eq!(rest.len(), 2);
    assert!(rest[0].body_xml.contains("Node1"), "oldest first");
}

/// The message's acknowledgements are stored before its delivery reads the queue: a
/// sent command past its redelivery time that the message acknowledges does not take
/// the room of the next one.
async fn a_command_acknowledged_by_the_message_is_not_sent_again_with_it(store: Store) {
    enrolled(&store, DEVICE, "01").await;
    let ids = queue_three(&store).await;
    let first = store.deliver(DEVICE, delivery(1)).await.expect("deliver");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].command_uuid, ids[0]);
    let mut w = work(DEVICE, vec![status(&ids[0], "200")], true);
    // Room for one command: the acknowledged one must not take it.
    w.delivery = Some(Delivery {
        used: 0,
        limit: 1,
        redeliver_after_secs: 0,
    });
    let out = store.record_message(w).await.expect("message");
    let sent: Vec<String> = out
        .commands
        .expect("delivery ran")
        .into_iter()
        .map(|c| c.command_uuid)
        .collect();
    assert_eq!(sent, ids[1..2], "the next one, not the acknowledged one");
}

async fn queue_three(store: &Store) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(queue(store, &[DEVICE], &format!("./Vendor/MSFT/Node{n}")).await);
    }
    ids
}

async fn cancelling_and_unenrolling_withdraw_pending_commands(store: Store) {
    enrolled(&store, DEVICE, "01").await;
    let id = queue(&store, &[DEVICE], "./DevDetail/SwV").await;
    assert_eq!(store.cancel_command(&id).await.expect("cancel"), 1);
    assert_eq!(store.cancel_command(&id).await.expect("cancel"), 0);
    let view = store.command(&id).await.expect("view").expect("command");
    assert_eq!(view.devices[0].state, CommandState::Cancelled);
    let sent = queue(&store, &[DEVICE], "./DevDetail/SwV").await;
    assert_eq!(
        store
            .deliver(DEVICE, delivery(usize::MAX))
            .await
            .expect("deliver")
            .len(),
        1
    );
    store
        .set_enrollment_state(DEVICE, "unenrolled")
        .await
        .expect("by its stored name");
    let view = store.command(&sent).await.expect("view").expect("command");
    assert_eq!(
        view.devices[0].state,
        CommandState::Cancelled,
        "sent, unanswered: cancelled"
    );
    assert!(store.set_enrollment_state(DEVICE, "gone").await.is_err());
    assert!(store
        .command("no-such-command")
        .await
        .expect("view")
        .is_none());
}

async fn an_acknowledged_unenroll_exec_is_reported(store: Store) {
    enrolled(&store, DEVICE, "01").await;
    let target = "./Vendor/MSFT/DMClient/Provider/P/Unenroll";
    let xml = format!("<Exec><CmdID>{{{{winmdm:cmdid}}}}</CmdID><Item><Target><LocURI>{target}</LocURI></Target></Item></Exec>");
    let id = store
        .request_unenroll(
            DEVICE,
            NewCommand {
                verb: Verb::Exec,
                target,
                body_xml: &xml,
            },
        )
        .await
        .expect("unenroll");
    let e = store
        .enrollment(DEVICE)
        .await
        .expect("read")
        .expect("enrollment");
    assert_eq!(e.state, EnrollmentState::UnenrollPending);
    let identity = store
        .cert_identity("01")
        .await
        .expect("identity")
        .expect("still managed");
    assert!(identity.enrollment_state.is_active());
    store
        .deliver(DEVICE, delivery(usize::MAX))
        .await
        .expect("deliver");
    let out = store
        .record_message(work(DEVICE, vec![status(&id, "200")], true))
        .await
        .expect("answer");
    assert!(out.unenroll_acknowledged);
    assert!(
        out.commands.is_none(),
        "nothing more goes to a leaving device"
    );
}

async fn a_profile_assignment_moves_through_its_states(store: Store) {
    enrolled(&store, DEVICE, "01").await;
    let item = ProfileItem {
        verb: "Replace".into(),
        target: "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera".into(),
        format: Some("int".into()),
        mime_type: None,
        data: "0".into(),
    };
    store
        .save_profile("cam", std::slice::from_ref(&item))
        .await
        .expect("save");
    assert_eq!(
        store.profile_items("cam").await.expect("items"),
        Some(vec![item.clone()])
    );
    assert!(store.profile_items("none").await.expect("items").is_none());
    let apply = ItemCommand {
        verb: Verb::Replace,
        target: item.target.clone(),
        body_xml: "<Replace><CmdID>{{winmdm:cmdid}}</CmdID></Replace>".into(),
    };
    store
        .assign_profile("cam", &[DEVICE.to_string()], std::slice::from_ref(&apply))
        .await
        .expect("assign");
    let open = store.open_assignments(DEVICE).await.expect("open");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].state, AssignmentState::Pending);
    assert_eq!(open[0].tracked.len(), 1);
    assert_eq!(open[0].tracked[0].phase, ProfilePhase::Apply);
    assert_eq!(open[0].tracked[0].state, CommandState::Pending);
    // An answer with open assignments leaves delivery to the caller.
    let sent = store
        .deliver(DEVICE, delivery(usize::MAX))
        .await
        .expect("deliver");
    let out = store
        .record_message(work(
            DEVICE,
            vec![status(&sent[0].command_uuid, "200")],
            true,
        ))
        .await
        .expect("answer");
    assert!(out.profiles_open && out.commands.is_none());
    // So does the start of a session with nothing to answer: the process that stored
    // the last answer may have died before it moved the assignment on.
    let out = store
        .record_message(work(DEVICE, Vec::new(), true))
        .await
        .expect("session start");
    assert!(out.profiles_open && out.commands.is_none());
    let get = ItemCommand {
        verb: Verb::Get,
        target: "./Device/Vendor/MSFT/Policy/Result/Camera/AllowCamera".into(),
        body_xml: get("./Device/Vendor/MSFT/Policy/Result/Camera/AllowCamera"),
    };
    store
        .verify_assignment(
            "cam",
            DEVICE,
            &[ReadBack {
                item: 0,
                command: get,
            }],
        )
        .await
        .expect("verify");
    let open = store.open_assignments(DEVICE).await.expect("open");
    assert_eq!(open[0].state, AssignmentState::Verifying);
    let verify: Vec<_> = open[0]
        .tracked
        .iter()
        .filter(|t| t.phase == ProfilePhase::Verify)
        .collect();
    assert_eq!(verify.len(), 1);
    store
        .finish_assignment("cam", DEVICE, AssignmentState::Verified, "")
        .await
        .expect("finish");
    assert!(store
        .open_assignments(DEVICE)
        .await
        .expect("open")
        .is_empty());
    let view = store
        .profile_view("cam")
        .await
        .expect("view")
        .expect("profile");
    assert_eq!(view.devices[0].state, AssignmentState::Verified);
}

async fn unknown_devices_are_named(store: Store) {
    enrolled(&store, DEVICE, "01").await;
    let ids = vec![DEVICE.to_string(), "FFFF".to_string()];
    assert_eq!(
        store.first_unknown_device(&ids).await.expect("check"),
        Some("FFFF".to_string())
    );
    assert_eq!(
        store.first_unknown_device(&ids[..1]).await.expect("check"),
        None
    );
    assert_eq!(store.list_enrollments().await.expect("list").len(), 1);
}
