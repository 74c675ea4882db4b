//! Small helpers shared by every layer of the engine.

pub(crate) mod cache;
pub(crate) mod coding;
pub(crate) mod hash;
