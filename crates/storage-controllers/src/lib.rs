//! The storage controllers: kube-controller-manager's PersistentVolume binder
//! (`persistentvolume`) and in-use protection ([`protection`]), and peapod's local-path
//! provisioner ([`localpath`]) with its resizer (`resize`), with the
//! matching rules both and the scheduler share ([`volumebinding`]). The controller manager
//! in `controllers` runs them.

pub mod localpath;
mod persistentvolume;
pub mod protection;
mod resize;
pub mod volumebinding;

use controller_base::Start;

/// Every storage controller, by name.
pub const CONTROLLERS: &[(&str, Start)] = &[
    ("persistentvolume", persistentvolume::run),
    ("local-path-provisioner", localpath::run),
    ("local-path-resizer", resize::run),
    ("pvc-protection", protection::run_pvc),
    ("pv-protection", protection::run_pv),
];
