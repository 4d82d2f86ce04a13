//! The workload controllers (kube-controller-manager's jobs for apps, batch and storage
//! kinds): each a file with a `run(client)` function and one line in [`CONTROLLERS`]. The
//! controller manager in `controllers` runs them beside the core ones. What they share
//! about owning children is in [`ownership`], what they read from pods in [`pods`].

pub mod ownership;
pub mod pods;

use controller_base::Start;

/// Every workload controller, by name.
pub const CONTROLLERS: &[(&str, Start)] = &[];
