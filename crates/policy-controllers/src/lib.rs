//! The policy controllers: kube-controller-manager's disruption controller, which keeps the
//! status of PodDisruptionBudgets current for the pod `eviction` subresource. The controller
//! manager in `controllers` runs it.

mod disruption;

use controller_base::Start;

/// Every policy controller, by name.
pub const CONTROLLERS: &[(&str, Start)] = &[("disruption", disruption::run)];
