//! The checksummed record log shared by the WAL and the manifest.
//!
//! Physical layout (LevelDB's): the file is a sequence of 32 KiB blocks; a
//! block holds whole fragments and, when fewer than 7 bytes are left, zero
//! padding. A fragment is
//!
//! ```text
//! crc32 u32 LE | length u16 LE | type u8 | payload (length bytes)
//! ```
//!
//! with the crc32 (crc32fast, unmasked) taken over the type byte and the
//! payload. A logical record is `durable_watermark u64 LE | payload`, cut into
//! one FULL fragment or FIRST, MIDDLE*, LAST.
//!
//! The watermark is the file offset up to which the writer knew the file was
//! fsynced when it wrote the record. Recovery uses it to tell a torn tail
//! (bytes never synced: cut them) from corruption of acknowledged data (a
//! later valid record carries a watermark past the damage: fail). The full
//! rule is in `docs/format.md`, "Record log (WAL and manifest)".

mod read_at;
mod reader;
mod writer;

pub use read_at::read_record_at;
pub use reader::{ReplayReport, replay};
pub use writer::LogWriter;

/// Size of a block. Do not change: on disk.
pub(crate) const BLOCK_BYTES: usize = 32 * 1024;

/// `crc32 (4) | length (2) | type (1)`. Do not change: on disk.
pub(crate) const HEADER_BYTES: usize = 7;

/// Bytes of the durable watermark at the front of every logical record.
/// Do not change: on disk.
pub(crate) const WATERMARK_BYTES: usize = 8;

/// Largest fragment payload: a block minus one header.
const _: () = assert!(BLOCK_BYTES - HEADER_BYTES <= u16::MAX as usize);

/// Where a fragment sits in its logical record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FragmentType {
    /// The whole record. Do not change: on disk.
    Full = 1,
    /// The first piece of a record that spans blocks. Do not change: on disk.
    First = 2,
    /// An inner piece. Do not change: on disk.
    Middle = 3,
    /// The final piece. Do not change: on disk.
    Last = 4,
}

impl FragmentType {
    /// Decodes a type byte read from disk; `None` for unknown values.
    pub(crate) fn from_u8(byte: u8) -> Option<FragmentType> {
        match byte {
            1 => Some(FragmentType::Full),
            2 => Some(FragmentType::First),
            3 => Some(FragmentType::Middle),
            4 => Some(FragmentType::Last),
            _ => None,
        }
    }
}

/// The fragment checksum: crc32 over the type byte, then the payload pieces
/// (the writer passes the watermark and the caller's bytes separately to
/// avoid a copy).
pub(crate) fn fragment_crc(kind: u8, pieces: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    for piece in pieces {
        hasher.update(piece);
    }
    hasher.finalize()
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::fs::WritableFile;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// What a [`VecFile`] holds: everything appended, and how much of it was
    /// synced. Shared so a test can inspect the bytes while the writer owns
    /// the file.
    #[derive(Default)]
    pub(crate) struct VecFileState {
        pub(crate) data: Vec<u8>,
        pub(crate) synced_bytes: usize,
        pub(crate) fail_syncs: bool,
    }

    /// A tiny in-memory `WritableFile` for the log tests.
    pub(crate) struct VecFile(pub(crate) Arc<Mutex<VecFileState>>);

    impl VecFile {
        pub(crate) fn create() -> (Box<dyn WritableFile>, Arc<Mutex<VecFileState>>) {
            let state = Arc::new(Mutex::new(VecFileState::default()));
            (Box::new(VecFile(Arc::clone(&state))), state)
        }
    }

    impl WritableFile for VecFile {
        fn append(&mut self, data: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().data.extend_from_slice(data);
            Ok(())
        }

        fn sync(&mut self) -> io::Result<()> {
            let mut state = self.0.lock().unwrap();
            if state.fail_syncs {
                return Err(io::Error::other("injected fsync failure"));
            }
            state.synced_bytes = state.data.len();
            Ok(())
        }

        fn len(&self) -> u64 {
            self.0.lock().unwrap().data.len() as u64
        }
    }

    #[test]
    fn fragment_types_decode_exactly_the_on_disk_values() {
        // Pins the on-disk type bytes 1..=4 and rejects everything else.
        for (byte, kind) in [
            (1, super::FragmentType::Full),
            (2, super::FragmentType::First),
            (3, super::FragmentType::Middle),
            (4, super::FragmentType::Last),
        ] {
            assert_eq!(super::FragmentType::from_u8(byte), Some(kind));
            assert_eq!(kind as u8, byte);
        }
        for byte in [0u8, 5, 0x80, 0xff] {
            assert_eq!(super::FragmentType::from_u8(byte), None);
        }
    }
}
