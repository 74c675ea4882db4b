//! openraft's storage test suite against the real pair: the shared log store
//! and this state machine on the engine.

use super::GroupStateMachine;
use crate::app::KvApplication;
use crate::keys::KeyRange;
use crate::log_store::{GroupLog, LogStoreOptions, SharedLog};
use crate::types::{NodeId, TypeConfig};
use cairn_engine::{Db, MemFs, Options};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use std::path::Path;
use std::sync::Arc;

struct Fresh;

impl StoreBuilder<TypeConfig, GroupLog, GroupStateMachine, tempfile::TempDir> for Fresh {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, GroupLog, GroupStateMachine), StorageError<NodeId>> {
        let fs = Arc::new(MemFs::new());
        let db = Db::open(
            "/db",
            Options {
                fs: fs.clone(),
                ..Options::default()
            },
        )
        .unwrap();
        let log = SharedLog::open(fs, Path::new("/raft"), LogStoreOptions::default())?;
        let dir = tempfile::tempdir().unwrap();
        let range = KeyRange::new(vec![0x00], vec![0x40]);
        let sm = GroupStateMachine::open(
            3,
            range,
            db,
            Arc::new(KvApplication),
            dir.path().join("snap"),
        )
        .unwrap();
        Ok((dir, log.group(3), sm))
    }
}

#[test]
fn openraft_suite_passes_with_the_engine_state_machine() {
    // The log store and the engine-backed state machine together meet
    // openraft's storage contract (apply, snapshots, install, log ops).
    Suite::test_all(Fresh).unwrap();
}
