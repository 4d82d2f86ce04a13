//! Hostile end-to-end tests: containers and requests that try one escape from their
//! confinement, or one way to exhaust the node, and must be refused while the node keeps
//! serving other pods. One module per area under `hostile/`.

mod common;

mod hostile {
    mod devices;
    mod fds;
    mod mounts;
    mod requests;
    mod seccomp;
    mod userns;
}
