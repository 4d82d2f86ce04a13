//! How a new node comes to be trusted, kubeadm's way, as pure functions the API server, the
//! controllers and `peapod join` share: the detached JWS that signs the `cluster-info`
//! kubeconfig with a bootstrap token ([`jws`]), the hash that pins the cluster CA
//! ([`cahash`]), and the node client certificate requests: what they must look like, when
//! they are approved and how they are signed ([`csr`]).

pub mod cahash;
pub mod clientcert;
pub mod csr;
pub mod jws;
