//! Decoders bound every length read from disk before they allocate: a
//! counting global allocator proves that hostile length and count fields
//! (a WAL batch claiming 4 billion entries or a 2^62-byte key, a table
//! block claiming 1 TiB uncompressed, a block claiming a billion restarts,
//! a manifest key of 2^60 bytes, a properties block with 2^64 - 1 fields)
//! are refused without any allocation larger than the input could justify.
//! A naive decoder would try to allocate gigabytes here and abort.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

use cairn_engine::WalRecovery;
use cairn_engine::fuzzing::{
    block_target, fix_record_log_checksums, fix_table_checksums, read_table, recover_manifest,
    replay_wal,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Tracks the largest single allocation since the last reset.
struct Counting;

static LARGEST_BYTES: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code, reason = "a test-only allocator that forwards to System")]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwards the caller's layout unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_BYTES.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// No allocation in these decoders may exceed this (the inputs are a few
/// KiB; 1 MiB leaves room for the test's own buffers).
const LIMIT_BYTES: usize = 1 << 20;

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
        .join(name);
    let bytes = std::fs::read(&path).unwrap();
    // Seeds start with the targets' flag byte.
    bytes[1..].to_vec()
}

/// Runs `f` and checks that no allocation during it exceeded the limit.
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    LARGEST_BYTES.store(0, Ordering::Relaxed);
    let out = f();
    let largest = LARGEST_BYTES.load(Ordering::Relaxed);
    assert!(
        largest <= LIMIT_BYTES,
        "{what}: an allocation of {largest} bytes"
    );
    out
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// A table with the block at footer slot `slot` (0 index, 2 properties)
/// replaced by `payload` of type `block_type`, appended before the footer.
fn table_with_block(slot: usize, payload: &[u8], block_type: u8) -> Vec<u8> {
    let table = seed("sstable", "seed-plain-table");
    let footer_at = table.len() - 64;
    let mut out = table[..footer_at].to_vec();
    let offset = out.len() as u64;
    out.extend_from_slice(payload);
    out.push(block_type);
    out.extend_from_slice(&[0; 4]);
    let mut footer = table[footer_at..].to_vec();
    footer[16 * slot..16 * slot + 8].copy_from_slice(&offset.to_le_bytes());
    footer[16 * slot + 8..16 * slot + 16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&footer);
    fix_table_checksums(&mut out);
    assert_eq!(le_u64(&out, out.len() - 64 + 16 * slot), offset);
    out
}

/// The result is a corruption error whose reason contains `needle`: the
/// check meant to stop the hostile length is the one that did.
fn corrupt<T: std::fmt::Debug>(r: cairn_engine::Result<T>, needle: &str) {
    match r {
        Err(e) => assert!(
            e.is_corruption() && e.to_string().contains(needle),
            "expected corruption ({needle}), got {e}"
        ),
        Ok(v) => panic!("hostile input accepted: {v:?}"),
    }
}

#[test]
fn hostile_lengths_never_drive_an_allocation() {
    // One test, so no other test thread allocates while a case is measured.

    // WAL: the first record's batch claims u32::MAX entries. Record layout:
    // header 7 | watermark 8 | base_seq 8 | count 4 | kind 1 | key_len ...
    let mut wal = seed("wal_reader", "seed-plain-wal");
    wal[23..27].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_record_log_checksums(&mut wal);
    let r = bounded("WAL batch count", || {
        replay_wal(&wal, WalRecovery::PointInTime)
    });
    corrupt(r, "exceeds what its bytes can hold");

    // WAL: the first entry's key length is 2^62 (a 9-byte varint).
    let mut wal = seed("wal_reader", "seed-plain-wal");
    wal[28..37].copy_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    fix_record_log_checksums(&mut wal);
    let r = bounded("WAL key length", || {
        replay_wal(&wal, WalRecovery::PointInTime)
    });
    corrupt(r, "truncated key");

    // Table: an lz4 index block claiming 2^40 bytes uncompressed.
    let mut lz4 = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
    lz4.extend_from_slice(&[0x1f; 16]);
    let table = table_with_block(0, &lz4, 1);
    let r = bounded("lz4 uncompressed length", || read_table(&table, true));
    corrupt(r, "beyond lz4's maximum ratio");
    let r = bounded("lz4 uncompressed length (mapped)", || {
        read_table(&table, false)
    });
    corrupt(r, "beyond lz4's maximum ratio");

    // Table: a properties block claiming 2^64 - 1 fields.
    let mut props = vec![0xff; 9];
    props.push(0x01);
    props.extend_from_slice(&[0; 12]);
    let table = table_with_block(2, &props, 0);
    let r = bounded("properties count", || read_table(&table, true));
    corrupt(r, "truncated property");

    // Block: a restart count of 2^30 - 1 in an 8-byte block, and entries
    // whose lengths run to 2^32.
    bounded("block restart count", || {
        block_target(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0x3f]);
    });
    bounded("block entry lengths", || {
        block_target(&[
            0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0, 1, 0, 0, 0,
        ]);
    });

    // Manifest: the snapshot edit's first field is a new table whose
    // smallest key is 2^60 bytes long. Record layout: header 7 |
    // watermark 8 | edit.
    let mut manifest = seed("manifest", "seed-plain-manifest");
    let edit = [
        5, 0, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10,
    ];
    manifest[15..15 + edit.len()].copy_from_slice(&edit);
    fix_record_log_checksums(&mut manifest);
    let r = bounded("manifest key length", || {
        recover_manifest(&manifest, b"MANIFEST-000005\n")
    });
    corrupt(r, "truncated field with tag 5");
}
