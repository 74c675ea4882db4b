//! Commands over the real engine: reading state from a [`Db`] and writing a
//! command's mutations as one [`WriteBatch`].

use cairn_engine::{Db, WriteBatch, WriteOptions};

use super::error::StateError;
use super::exec::{Mutation, ReadState};
use super::value::StoredValue;

/// The engine's latest state, read through [`ReadState`].
///
/// Keys are used exactly as given. The server will prefix each with its
/// hash slot (`slot u16 BE ++ user key`, see DESIGN) before it reaches
/// here; this adapter does not add it.
pub struct EngineState<'a>(pub &'a Db);

impl ReadState for EngineState<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<StoredValue>, StateError> {
        let Some(bytes) = self.0.get(key).map_err(StateError::Engine)? else {
            return Ok(None);
        };
        StoredValue::decode(&bytes)
            .map(Some)
            .map_err(|error| StateError::Corrupt {
                key: key.to_vec(),
                error,
            })
    }
}

/// Writes `mutations` to `db` atomically, as one batch. Nothing to write
/// writes nothing.
pub fn apply_mutations(
    db: &Db,
    mutations: &[Mutation],
    opts: WriteOptions,
) -> cairn_engine::Result<()> {
    if mutations.is_empty() {
        return Ok(());
    }
    let mut batch = WriteBatch::new();
    for m in mutations {
        match m {
            Mutation::Put { key, value } => batch.put(key, value.encode()),
            Mutation::Delete { key } => batch.delete(key),
        }
    }
    db.write(batch, opts)
}
