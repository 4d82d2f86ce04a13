//! How many exec, attach and port-forward sessions a node serves at once: each holds a
//! process or sockets in a pod and a task here, so a client looping on `kubectl exec` must
//! not exhaust the node. Its own module so that the server's state and the streaming
//! handlers both use it without using each other.

use std::sync::Arc;

/// The cap and the slots taken.
#[derive(Clone)]
pub struct Sessions {
    slots: Arc<tokio::sync::Semaphore>,
    limit: usize,
}

/// The default cap on concurrent streaming sessions per node.
pub const MAX_SESSIONS: usize = 128;

impl Sessions {
    pub fn new(limit: usize) -> Self {
        Sessions {
            slots: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A slot held for the session's life, or `None` when all are taken.
    pub fn try_acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(MAX_SESSIONS)
    }
}
