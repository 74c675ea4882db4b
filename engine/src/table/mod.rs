//! Sorted string tables: immutable files of internal keys and values.
//! `docs/format.md` ("Tables") gives every byte.

mod block;
mod block_builder;
mod filter;
mod format;
