//! What the node agent's parts share about pods: the narrow seam to the Kubernetes API
//! (`PodApi`: status writes, the final delete, events, the config maps and secrets pods
//! use, read through per-object watches), kubelet's event recorder on top of it, the clock,
//! and the agent's pod cache.

mod apiclient;
mod clock;
mod events;
mod objectwatch;
mod podcache;

pub use apiclient::{ApiError, KubePodApi, PodApi};
pub use clock::{api_time, Clock, SystemClock};
pub use events::{EventRecorder, EventType};
pub use objectwatch::{ObjectChange, ObjectKind, WatchingPodApi};
pub use podcache::PodCache;
