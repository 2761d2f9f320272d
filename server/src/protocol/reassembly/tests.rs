//! The reassembly decisions, on the in-memory ledger.

use super::*;

fn key(device: &str, cmd: &str) -> ChunkKey {
    ChunkKey::new(device, cmd, "./Vendor/MSFT/Big")
}

fn small() -> Reassembly {
    Reassembly::with_limits(Limits {
        object: 10_000,
        device: 3_000,
        total: 5_000,
        ttl: Duration::from_secs(600),
    })
}

fn append(r: &Reassembly, k: &ChunkKey, len: usize) {
    r.apply(vec![ChunkOp::Append(k.clone(), "x".repeat(len))]);
}

#[test]
fn a_device_cannot_hold_more_than_its_share() {
    let r = small();
    append(&r, &key("a", "1"), 1_000);
    append(&r, &key("a", "2"), 1_000);
    assert!(!r.fits(&key("a", "3"), 1_000));
    append(&r, &key("a", "3"), 1_000);
    // The object that would exceed the device's share is refused, with its later
    // chunks; the others are intact.
    assert_eq!(r.pending(&key("a", "3")), Pending::Refused);
    assert!(r.held("a").1 <= 3_000);
    assert!(matches!(
        r.pending(&key("a", "1")),
        Pending::Buffered(1_000)
    ));
    // The refusal lasts until the object's last chunk.
    r.apply(vec![ChunkOp::Finish(key("a", "3"))]);
    assert_eq!(r.pending(&key("a", "3")), Pending::None);
}

#[test]
fn the_global_bound_evicts_the_oldest_objects() {
    let r = small();
    for d in ["a", "b", "c", "d", "e"] {
        append(&r, &key(d, "1"), 1_000);
        assert!(r.held(d).0 <= 5_000);
    }
    // The oldest went first, and its later chunks are refused, not restarted.
    assert_eq!(r.pending(&key("a", "1")), Pending::Refused);
    append(&r, &key("a", "1"), 10);
    assert_eq!(r.pending(&key("a", "1")), Pending::Refused);
    assert!(matches!(r.pending(&key("e", "1")), Pending::Buffered(_)));
    assert!(r.held("e").0 <= 5_000);
}

#[test]
fn stale_objects_expire() {
    let r = small();
    let k = key("a", "1");
    let then = micros_now();
    let ttl = Limits::default().ttl_us();
    r.apply_at(vec![ChunkOp::Append(k.clone(), "x".repeat(100))], then);
    r.apply_at(Vec::new(), then + ttl);
    // Only the tombstone is left, charged for its key.
    assert_eq!(r.held("a"), (key_cost(&k), key_cost(&k)));
    // Long after, even the tombstone is gone.
    r.apply_at(Vec::new(), then + 3 * ttl);
    assert_eq!(r.pending(&k), Pending::None);
    assert_eq!(r.held("a"), (0, 0));
}

#[test]
fn an_object_over_the_object_bound_is_refused() {
    let r = Reassembly::with_limits(Limits {
        object: 100,
        ..Limits::default()
    });
    let k = key("a", "1");
    append(&r, &k, 60);
    assert!(!r.fits(&k, 60));
    append(&r, &k, 60);
    assert_eq!(r.pending(&k), Pending::Refused);
    assert_eq!(r.held("a"), (key_cost(&k), key_cost(&k)));
    r.apply(vec![ChunkOp::Finish(k)]);
    assert_eq!(r.held("a"), (0, 0));
}

#[test]
fn an_empty_first_chunk_leaves_nothing_charged_once_finished() {
    let r = small();
    let k = key("a", "1");
    append(&r, &k, 0);
    assert_eq!(r.pending(&k), Pending::Buffered(0));
    assert!(r.fits(&k, 100));
    append(&r, &k, 100);
    append(&r, &k, 0);
    append(&r, &k, 50);
    assert_eq!(r.held("a"), (key_cost(&k) + 150, key_cost(&k) + 150));
    assert_eq!(r.whole(&k, "yy").map(|w| w.len()), Some(152));
    r.apply(vec![ChunkOp::Finish(k)]);
    assert_eq!(r.held("a"), (0, 0));
}

#[test]
fn buffers_are_charged_for_their_keys() {
    let r = Reassembly::with_limits(Limits {
        device: 10_000,
        ..Limits::default()
    });
    let long = |n: u32| -> ChunkKey {
        ChunkKey::new(
            "a",
            n.to_string(),
            format!("./Vendor/MSFT/Big/{n}/{}", "p".repeat(900)),
        )
    };
    // Empty data: only the keys count, and they fill the device's share.
    let mut opened = 0;
    for n in 0..20 {
        if !r.fits(&long(n), 0) {
            break;
        }
        append(&r, &long(n), 0);
        opened += 1;
    }
    assert!(opened < 10, "{opened} buffers of long keys within 10 kB");
    assert!(r.held("a").1 > 9_000 - key_cost(&long(0)));
    assert!(r.held("a").1 <= 10_000);
}

#[test]
fn an_over_long_cmd_ref_or_loc_uri_opens_no_buffer() {
    let r = Reassembly::default();
    let loc = ChunkKey::new("a", "1", "L".repeat(MAX_KEY_PART + 1));
    let cmd = ChunkKey::new("a", "C".repeat(MAX_KEY_PART + 1), "./Big");
    for k in [loc, cmd] {
        assert!(!key_acceptable(&k));
        assert!(!r.fits(&k, 1));
        append(&r, &k, 1);
        r.apply(vec![ChunkOp::Refuse(k.clone())]);
        assert_eq!(r.pending(&k), Pending::None);
        assert_eq!(r.held("a"), (0, 0));
    }
    assert!(key_acceptable(&ChunkKey::new(
        "a",
        "C".repeat(MAX_KEY_PART),
        "L".repeat(MAX_KEY_PART)
    )));
}

#[test]
fn tombstones_are_charged() {
    let r = small();
    let k = key("a", "1");
    r.apply(vec![ChunkOp::Refuse(k.clone())]);
    assert_eq!(r.pending(&k), Pending::Refused);
    assert_eq!(r.held("a"), (key_cost(&k), key_cost(&k)));
    // They count against the device's share: 3_000 bytes hold ten tombstones.
    for n in 2..20 {
        r.apply(vec![ChunkOp::Refuse(key("a", &n.to_string()))]);
    }
    assert!(r.held("a").1 <= 3_000);
    assert!(!r.fits(&key("a", "x"), 1_000));
}

#[test]
fn many_chunks_reassemble_in_order() {
    let r = Reassembly::default();
    let k = key("a", "1");
    let mut expected = String::new();
    for n in 0..500 {
        let chunk = format!("{n:04}");
        assert!(r.fits(&k, chunk.len()));
        r.apply(vec![ChunkOp::Append(k.clone(), chunk.clone())]);
        expected.push_str(&chunk);
        assert_eq!(r.pending(&k), Pending::Buffered(expected.len()));
    }
    assert_eq!(r.whole(&k, "end"), Some(format!("{expected}end")));
    // Reading the whole object leaves the buffer until its message is stored.
    assert_eq!(r.pending(&k), Pending::Buffered(expected.len()));
    r.apply(vec![ChunkOp::Finish(k.clone())]);
    assert_eq!(r.whole(&k, "end"), None);
    assert_eq!(r.held("a"), (0, 0));
}

/// The store keeps the objects as rows and rebuilds the ledger from them for each
/// message: the rows the writes leave must give the ledger that made them.
#[test]
fn ledger_writes_rebuild_the_same_ledger() {
    let l = Limits {
        object: 10_000,
        device: 3_000,
        total: 5_000,
        ttl: Duration::from_secs(600),
    };
    let mut ledger = Ledger::default();
    let mut rows: HashMap<ChunkKey, (Option<usize>, i64)> = HashMap::new();
    let devices = ["a", "b", "c", "d"];
    let mut now = 1_000_000;
    for step in 0..400usize {
        let k = key(devices[step % 4], &(step % 7).to_string());
        let op = match step % 5 {
            0..=2 => ChunkOp::Append(k, "x".repeat(step * 37 % 900)),
            3 => ChunkOp::Finish(k),
            _ => ChunkOp::Refuse(k),
        };
        now += 1_000_000 * (step as i64 % 3);
        for w in ledger.apply(vec![op], now, &l) {
            match w {
                Write::Append { key, data, updated } => {
                    let row = rows.entry(key).or_insert((Some(0), 0));
                    row.0 = Some(row.0.unwrap_or(0) + data.len());
                    row.1 = updated;
                }
                Write::Tombstone { key, at } => {
                    rows.insert(key, (None, at));
                }
                Write::Delete(key) => {
                    rows.remove(&key);
                }
            }
        }
        let rebuilt = Ledger::load(rows.iter().map(|(k, (bytes, updated))| Entry {
            key: k.clone(),
            bytes: *bytes,
            updated: *updated,
        }));
        for d in devices {
            assert_eq!(rebuilt.held(d), ledger.held(d), "step {step}");
        }
        assert!(ledger.held("a").0 <= l.total);
        for n in 0..7 {
            let k = key(devices[step % 4], &n.to_string());
            assert_eq!(rebuilt.pending(&k, now, &l), ledger.pending(&k, now, &l));
        }
    }
}
