//! The agent's view of its pods by uid: one writer (the pod watch and the static pod
//! source), many readers (the node API, eviction).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Pod;

/// Pods of this node by uid, each shared with its worker rather than copied.
pub type PodCache = Arc<RwLock<HashMap<String, Arc<Pod>>>>;
