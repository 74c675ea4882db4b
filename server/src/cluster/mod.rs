//! The cluster: the map kept in the meta group (`map`), the CLUSTER
//! commands that show it to clients (`commands`), and the driver that moves
//! each group's Raft membership to the map (`membership`).

pub mod commands;
pub mod map;
pub mod membership;
