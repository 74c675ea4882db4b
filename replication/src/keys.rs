//! Where replication keeps its own state in the node's one engine.
//!
//! Data keys belong to the layer above (the server writes `slot u16 BE ++
//! user key`, so slot keys start with a byte <= 0x3F). Replication's keys
//! live under the prefix `0xFF 0xFF`, which no group's data range may
//! reach (checked when a group is created):
//!
//! ```text
//! 0xFF 0xFF 'G' group u64 BE                    -> group spec (postcard GroupSpec)
//! 0xFF 0xFF 'R' group u64 BE 'a'                -> applied state (postcard AppliedState)
//! 0xFF 0xFF 'R' group u64 BE 'i'                -> snapshot install in progress (file name)
//! 0xFF 0xFF 'R' group u64 BE 'c' client u64 BE  -> dedup: serial u64 LE ++ response
//! ```
//!
//! Do not change: on disk.

use crate::types::GroupId;
use serde::{Deserialize, Serialize};

/// First key no data range may reach.
pub(crate) const RESERVED_PREFIX: &[u8] = &[0xFF, 0xFF];

/// A group's data: keys in `[start, end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    pub fn new(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: start.into(),
            end: end.into(),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && key < self.end.as_slice()
    }

    /// True if `[start, end)` lies inside this range (an empty range always
    /// does).
    pub fn covers(&self, start: &[u8], end: &[u8]) -> bool {
        start >= end || (start >= self.start.as_slice() && end <= self.end.as_slice())
    }

    /// A usable data range: non-empty and below the reserved prefix.
    pub(crate) fn is_valid_data_range(&self) -> bool {
        self.start < self.end && self.end.as_slice() <= RESERVED_PREFIX
    }
}

fn group_key(tag: u8, group: GroupId) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + 1 + 8 + 1 + 8);
    key.extend_from_slice(RESERVED_PREFIX);
    key.push(tag);
    key.extend_from_slice(&group.to_be_bytes());
    key
}

/// Key of a group's spec.
pub(crate) fn spec_key(group: GroupId) -> Vec<u8> {
    group_key(b'G', group)
}

/// All group specs: `[start, end)`.
pub(crate) fn spec_range() -> (Vec<u8>, Vec<u8>) {
    let mut start = RESERVED_PREFIX.to_vec();
    start.push(b'G');
    let mut end = RESERVED_PREFIX.to_vec();
    end.push(b'G' + 1);
    (start, end)
}

/// The group spec's group id, from a key of [`spec_range`].
pub(crate) fn group_of_spec_key(key: &[u8]) -> Option<GroupId> {
    let bytes: [u8; 8] = key.get(3..11)?.try_into().ok()?;
    Some(GroupId::from_be_bytes(bytes))
}

/// Key of a group's applied state.
pub(crate) fn applied_key(group: GroupId) -> Vec<u8> {
    let mut key = group_key(b'R', group);
    key.push(b'a');
    key
}

/// Key of a group's "snapshot install in progress" marker.
pub(crate) fn installing_key(group: GroupId) -> Vec<u8> {
    let mut key = group_key(b'R', group);
    key.push(b'i');
    key
}

/// Key of a client's dedup record in a group.
pub(crate) fn dedup_key(group: GroupId, client: u64) -> Vec<u8> {
    let mut key = group_key(b'R', group);
    key.push(b'c');
    key.extend_from_slice(&client.to_be_bytes());
    key
}

/// Every dedup record of a group: `[start, end)`. Part of the group's
/// snapshot.
pub(crate) fn dedup_range(group: GroupId) -> KeyRange {
    let mut start = group_key(b'R', group);
    start.push(b'c');
    let mut end = group_key(b'R', group);
    end.push(b'c' + 1);
    KeyRange { start, end }
}

/// Everything replication keeps for a group (applied state, marker, dedup).
pub(crate) fn group_meta_range(group: GroupId) -> KeyRange {
    let start = group_key(b'R', group);
    let end = match group.checked_add(1) {
        Some(next) => group_key(b'R', next),
        None => {
            let mut end = RESERVED_PREFIX.to_vec();
            end.push(b'R' + 1);
            end
        }
    };
    KeyRange { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keys_sort_after_every_slot_key() {
        let slot_key = [0x3F, 0xFF, b'k'];
        assert!(applied_key(0).as_slice() > slot_key.as_slice());
        assert!(!KeyRange::new(vec![0x00], vec![0xFF, 0xFF, 0x01]).is_valid_data_range());
        assert!(KeyRange::new(vec![0x00], vec![0x40]).is_valid_data_range());
    }

    #[test]
    fn group_meta_range_holds_its_keys_and_no_neighbours() {
        let range = group_meta_range(7);
        assert!(range.contains(&applied_key(7)));
        assert!(range.contains(&dedup_key(7, u64::MAX)));
        assert!(range.contains(&installing_key(7)));
        assert!(!range.contains(&applied_key(8)));
        assert!(!range.contains(&applied_key(6)));
        assert!(group_meta_range(u64::MAX).contains(&dedup_key(u64::MAX, 3)));
        assert!(dedup_range(7).contains(&dedup_key(7, 0)));
        assert!(!dedup_range(7).contains(&applied_key(7)));
    }

    #[test]
    fn spec_keys_round_trip() {
        let (start, end) = spec_range();
        let key = spec_key(42);
        assert!(key >= start && key < end);
        assert_eq!(group_of_spec_key(&key), Some(42));
    }
}
