//! The batch controllers (kube-controller-manager's Job and CronJob controllers): each a
//! module with a `run(shared)` function and one line in [`CONTROLLERS`], their decisions
//! pure in each module's `plan`. The controller manager in `controllers` runs them.

pub mod cronjob;
pub mod job;

use controller_base::Start;

/// Every batch controller, by name.
pub const CONTROLLERS: &[(&str, Start)] = &[("job", job::run), ("cronjob", cronjob::run)];
