//! Hostile headers cost no memory: the largest single allocation the
//! decoders make for a header announcing gigabytes stays tiny. Counted by a
//! wrapping global allocator, so this file holds one test (the harness's own
//! threads allocate little, and never megabytes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

use cairn_server::resp::{Limits, decode, decode_command};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest single allocation since the last reset.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator, which
// upholds GlobalAlloc's contract; we only record the requested size.
#[allow(unsafe_code, reason = "a test-only allocator that forwards to System")]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout the caller gave us.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout`; forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// Pins "lengths are checked before allocating, and preallocation is bounded
// by the bytes buffered": headers claiming up to the limits, or beyond them,
// followed by a little data, never make the decoders allocate more than a
// few KiB at once.
#[test]
fn hostile_headers_allocate_almost_nothing() {
    let limits = Limits::default();
    let tail = vec![b':'; 1024];
    let headers: [&[u8]; 10] = [
        b"*1048576\r\n",
        b"*1000000000\r\n",
        b"*3000000000\r\n",
        b"%1048576\r\n",
        b"|1048576\r\n",
        b"~1048576\r\n",
        b">1048576\r\n",
        b"$536870912\r\n",
        b"$99999999999999\r\n",
        b"*1\r\n$536870912\r\n",
    ];
    for header in headers {
        let mut buf = header.to_vec();
        buf.extend_from_slice(&tail);
        LARGEST.store(0, Ordering::Relaxed);
        let frame = decode(&buf, &limits);
        let command = decode_command(&buf, &limits);
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            largest <= 64 << 10,
            "{:?}: largest allocation {largest} bytes ({frame:?}, {command:?})",
            String::from_utf8_lossy(header)
        );
    }
}
