//! Hostile end to end: each test is a pod, image or request that tries one escape from its
//! container or one exhaustion of the node, is refused or confined, and leaves the node
//! serving other pods. One module per area under `hostile/`.

mod common;

#[path = "hostile/mounts.rs"]
mod mounts;
