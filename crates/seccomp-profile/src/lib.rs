//! Seccomp profiles and the classic-BPF filters built from them: the runtime default
//! allow-list (one table, [`default::TABLE`]), Localhost profile files in the OCI / docker
//! JSON format ([`json::parse`]), and one compiler for both ([`compile::compile`]) for
//! x86_64 and aarch64. Loading a filter into a process is the shim's job.

pub mod arch;
pub mod bpf;
pub mod compile;
pub mod default;
pub mod json;
pub mod localhost;
pub mod profile;

pub use arch::Arch;
pub use bpf::SockFilter;
pub use compile::{compile, Target};
pub use default::runtime_default;
pub use json::{parse, ProfileError};
pub use localhost::{load, LocalhostError};
pub use profile::{Action, ArgCond, Op, Profile, Rule, When};
