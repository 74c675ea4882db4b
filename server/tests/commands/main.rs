//! The string commands against documented Redis behaviour: one module per
//! command family, each running commands through `parse` and `execute`
//! against an in-memory state that applies the mutations in between.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

mod counters;
mod engine;
mod expiry;
mod keys;
mod parse;
mod props;
mod stamp;
mod strings;

use std::collections::BTreeMap;

use cairn_server::command::{
    Command, Mutation, ReadState, StateError, StoredValue, Value, execute,
};
use cairn_server::resp::Frame;

/// A fixed "now" for tests that do not move the clock (Unix ms, 2023).
pub const T0: u64 = 1_700_000_000_000;

/// The state as a map, with mutations applied between commands.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub map: BTreeMap<Vec<u8>, StoredValue>,
}

impl ReadState for Model {
    fn get(&self, key: &[u8]) -> Result<Option<StoredValue>, StateError> {
        Ok(self.map.get(key).cloned())
    }
}

pub fn args(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one command at `now`: its reply, or its error reply's text.
    pub fn run_at(&mut self, now: u64, words: &[&str]) -> Result<Frame, String> {
        let cmd = Command::parse(args(words)).map_err(|e| text(e.to_redis_error()))?;
        let out = execute(&cmd, self, now).map_err(|e| text(e.to_redis_error()))?;
        assert!(
            cmd.is_write() || out.mutations.is_empty(),
            "read {words:?} mutated"
        );
        self.apply(&out.mutations);
        Ok(out.reply)
    }

    /// Runs one command at [`T0`].
    pub fn run(&mut self, words: &[&str]) -> Result<Frame, String> {
        self.run_at(T0, words)
    }

    pub fn apply(&mut self, mutations: &[Mutation]) {
        for m in mutations {
            match m {
                Mutation::Put { key, value } => {
                    self.map.insert(key.clone(), value.clone());
                }
                Mutation::Delete { key } => {
                    self.map.remove(key);
                }
            }
        }
    }

    /// What is stored under `key` (expired or not): payload and expiry.
    pub fn raw(&self, key: &str) -> Option<(Vec<u8>, Option<u64>)> {
        self.map.get(key.as_bytes()).map(|v| {
            let Value::String(bytes) = &v.value else {
                unreachable!()
            };
            (bytes.clone(), v.expire_at_ms.map(|t| t.get()))
        })
    }
}

pub fn ok() -> Frame {
    Frame::Simple(b"OK".to_vec())
}

pub fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec())
}

pub fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

pub fn nil() -> Frame {
    Frame::NullBulk
}
