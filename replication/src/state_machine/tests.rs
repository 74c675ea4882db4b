//! Applying request batches: every request of an entry is applied,
//! deduplicated and answered on its own, in the batch's order.

use super::GroupStateMachine;
use crate::app::{KvApplication, KvCommand, KvReply};
use crate::keys::KeyRange;
use crate::types::{Entry, LogId, Request, RequestBatch, Response};
use cairn_engine::{Db, MemFs, Options};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload};
use std::sync::Arc;

const COUNTER: &[u8] = &[0x00, b'c'];

fn open() -> (tempfile::TempDir, Db, GroupStateMachine) {
    let db = Db::open(
        "/db",
        Options {
            fs: Arc::new(MemFs::new()),
            ..Options::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sm = GroupStateMachine::open(
        3,
        KeyRange::new(vec![0x00], vec![0x40]),
        db.clone(),
        Arc::new(KvApplication),
        dir.path().join("snap"),
    )
    .unwrap();
    (dir, db, sm)
}

fn add(client_id: u64, serial: u64, by: u64) -> Request {
    Request {
        client_id,
        serial,
        command: KvCommand::Add {
            key: COUNTER.to_vec(),
            by,
        }
        .encode(),
    }
}

fn entry(index: u64, requests: Vec<Request>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(RequestBatch { requests }),
    }
}

fn value(n: u64, duplicate: bool) -> Response {
    Response {
        payload: KvReply::Value(n).encode(),
        duplicate,
    }
}

fn counter(db: &Db) -> Option<String> {
    db.get(COUNTER)
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

#[tokio::test]
async fn each_request_of_a_batch_gets_its_own_response_in_order() {
    // Five increments in one entry: each sees the ones before it, and each
    // gets the value it produced, not the batch's last one.
    let (_dir, db, mut sm) = open();
    let requests = (0..5).map(|_| add(0, 0, 1)).collect();
    let replies = sm.apply(vec![entry(1, requests)]).await.unwrap();
    assert_eq!(replies.len(), 1);
    let expected: Vec<Response> = (1..=5).map(|n| value(n, false)).collect();
    assert_eq!(replies[0].responses, expected);
    assert_eq!(counter(&db).as_deref(), Some("5"));
}

#[tokio::test]
async fn a_retry_inside_a_batch_is_answered_from_the_dedup_record() {
    // A retried (client, serial) in the same entry as its first copy is not
    // applied again; an older serial gets an empty duplicate reply; other
    // clients and newer serials apply normally. The records outlive the
    // entry: a retry in a later entry gets the same answer.
    let (_dir, db, mut sm) = open();
    let batch = vec![
        add(7, 1, 10),
        add(7, 1, 10),
        add(8, 1, 100),
        add(7, 2, 1),
        add(7, 1, 10),
        add(7, 2, 1),
    ];
    let replies = sm.apply(vec![entry(1, batch)]).await.unwrap();
    let older = Response {
        payload: Vec::new(),
        duplicate: true,
    };
    assert_eq!(
        replies[0].responses,
        vec![
            value(10, false),
            value(10, true),
            value(110, false),
            value(111, false),
            older,
            value(111, true),
        ]
    );
    assert_eq!(counter(&db).as_deref(), Some("111"));

    let replies = sm
        .apply(vec![entry(2, vec![add(8, 1, 100), add(7, 3, 1)])])
        .await
        .unwrap();
    assert_eq!(
        replies[0].responses,
        vec![value(110, true), value(112, false)]
    );
    assert_eq!(counter(&db).as_deref(), Some("112"));
}

#[tokio::test]
async fn entries_of_one_apply_call_are_answered_separately() {
    // Several batch entries applied in one call: one BatchResponse per
    // entry, each with as many responses as its batch had requests.
    let (_dir, _db, mut sm) = open();
    let entries = vec![
        entry(1, vec![add(0, 0, 1), add(0, 0, 1)]),
        entry(2, Vec::new()),
        entry(3, vec![add(0, 0, 1)]),
    ];
    let replies = sm.apply(entries).await.unwrap();
    let sizes: Vec<usize> = replies.iter().map(|r| r.responses.len()).collect();
    assert_eq!(sizes, vec![2, 0, 1]);
    assert_eq!(replies[2].responses, vec![value(3, false)]);
}

#[tokio::test]
async fn small_applies_run_in_place_and_large_ones_move_to_a_blocking_thread() {
    // Both paths apply the same way; only where they run differs.
    let (_dir, db, mut sm) = open();
    let small = vec![entry(1, vec![add(0, 0, 1)])];
    assert!(super::apply_in_place(&small, &db));
    sm.apply(small).await.unwrap();

    let big_value = vec![b'v'; 100 << 10];
    let puts: Vec<Request> = (0..4u8)
        .map(|i| Request {
            client_id: 0,
            serial: 0,
            command: KvCommand::Put {
                key: vec![0x00, b'k', i],
                value: big_value.clone(),
            }
            .encode(),
        })
        .collect();
    let big = vec![entry(2, puts), entry(3, vec![add(0, 0, 1)])];
    assert!(!super::apply_in_place(&big, &db));
    let replies = sm.apply(big).await.unwrap();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1].responses, vec![value(2, false)]);
    assert_eq!(db.get([0x00, b'k', 3]).unwrap(), Some(big_value));
}
