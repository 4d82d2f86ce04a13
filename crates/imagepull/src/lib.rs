//! The kubelet's side of image pulls (upstream's `pkg/kubelet/images` and the keyring's
//! inputs): which pull policy a container has, which credentials a pull may use (the pod's
//! pull Secrets, then the node-wide docker `config.json`), and the puller that runs one
//! download per image however many pods wait for it, serialized or bounded as the
//! KubeletConfiguration's `serializeImagePulls` / `maxParallelImagePulls` say.

mod credentials;
mod policy;
mod puller;

pub use credentials::{credentials_for, keyring_from_secrets, NodeCredentials, SecretError};
pub use images::{Credentials, CredentialsError, Keyring};
pub use policy::{pull_policy, PullPolicy};
pub use puller::{ImagePuller, PullDone, PullFailure, PullFn, PullerConfig};
