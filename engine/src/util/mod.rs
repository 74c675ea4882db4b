//! Small helpers shared by every layer of the engine.

pub(crate) mod coding;
