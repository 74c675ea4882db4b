//! The cluster: the map kept in the meta group (`map`) and the CLUSTER
//! commands that show it to clients (`commands`).

pub mod commands;
pub mod map;
