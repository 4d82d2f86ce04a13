//! Links the `peapod` executable at a fixed address (`-no-pie`). Every pod's shim is this
//! binary re-executed; in a position-independent executable the dynamic loader writes the
//! binary's ~2 MiB of relocated pointer tables (`.data.rel.ro`) into private pages of every
//! process, while at a fixed address they stay pages of the file, shared by all shims.
//! Go builds linux/amd64 executables (kubelet, containerd and its shims) the same way.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
