//! The volume manager, kubelet's `volumemanager` + volume plugins for what a single node
//! can provide: `emptyDir` (disk, or tmpfs for `medium: Memory`), `hostPath` with its type
//! checks, `persistentVolumeClaim` (the bound volume's `hostPath` or `local` directory, see
//! `claims`), and the API-data volumes `configMap`, `secret`, `downwardAPI` and `projected`
//! written atomically (see `atomic`) and refreshed every sync period so running pods see
//! updates. Volumes live under `<root>/<pod uid>/<plugin>/<name>` (kubelet's
//! `pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`), are set up before the pod's
//! containers start, and are released (tmpfs and subPath bind mounts unmounted, files
//! removed) when the pod is done, and at startup for pods that no longer exist.

mod atomic;
mod claims;
mod fsgroup;
mod hostpath;
pub mod localpath;
mod mounter;
pub mod rro;
mod sources;
mod subpath;
mod tokens;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use api::quantity::parse_quantity;
use containerspec::PodContext;
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use podapi::PodApi;
use runtime::{IdMapping, Mount};

pub use atomic::AtomicWriteError;
use atomic::Payload;
pub use claims::{ClaimError, ClaimVolume};
pub use hostpath::HostPathError;
pub use mounter::{HostMounter, Mounter};
pub use sources::{referenced as referenced_objects, Objects, Skipped, SourceError};
pub use subpath::SubPathError;
pub use tokens::{Token, TokenCache, TokenKey};

/// Directory name below the state dir that holds every pod's volumes.
pub const VOLUMES_DIR: &str = "volumes";

/// A failed volume operation; the text is what the pod's events show.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    Source {
        volume: String,
        #[source]
        source: SourceError,
    },
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    HostPath {
        volume: String,
        #[source]
        source: hostpath::HostPathError,
    },
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    Write {
        volume: String,
        #[source]
        source: AtomicWriteError,
    },
    #[error("MountVolume.SetUp failed for volume {volume:?} : {kind} volumes are not supported by this node")]
    Unsupported { volume: String, kind: String },
    #[error("invalid name {name:?} for a volume directory")]
    InvalidName { name: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("fetching {kind} {name:?} for the pod's volumes: {source}")]
    Fetch {
        kind: &'static str,
        name: String,
        #[source]
        source: Box<podapi::ApiError>,
    },
    #[error("failed to fetch token: {source}")]
    Token {
        service_account: String,
        #[source]
        source: Box<podapi::ApiError>,
    },
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    Missing { volume: String, container: String },
    /// A `subPathExpr` that does not expand, or a subPath that is absolute or climbs out.
    #[error(transparent)]
    SubPathRefused(subpath::SubPathError),
    /// A subPath that could not be opened or created inside its volume. As kubelet, the
    /// message leaves the cause out (it could tell about the host's files); it is logged.
    #[error("failed to prepare subPath for volumeMount {volume:?} of container {container:?}")]
    SubPath {
        volume: String,
        container: String,
        #[source]
        source: subpath::SubPathError,
    },
    #[error("Unable to attach or mount volumes: unmounted volumes=[{volume}], failed to process volumes=[{volume}]: error processing PVC {namespace}/{claim}: {source}")]
    Claim {
        volume: String,
        namespace: String,
        claim: String,
        #[source]
        source: Box<ClaimError>,
    },
    #[error("{path} is still mounted; not removing it")]
    StillMounted { path: PathBuf },
    #[error("failed to resolve recursive read-only mode: {0}")]
    RecursiveReadOnly(#[source] rro::RecursiveReadOnlyError),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io { what, path, source }
}

/// What kind of volume a pod's `volumes[]` entry is, for this node.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    EmptyDir {
        memory: bool,
        size: Option<u64>,
    },
    HostPath {
        path: PathBuf,
        kind: String,
    },
    /// A PersistentVolumeClaim: the bound volume's directory on this host.
    Claim {
        claim: String,
    },
    /// configMap, secret, downwardAPI, projected: plugin directory, tmpfs-backed or not.
    ApiData {
        plugin: &'static str,
        tmpfs: bool,
    },
    Unsupported(String),
}

fn kind_of(v: &Volume) -> Kind {
    if let Some(e) = &v.empty_dir {
        return Kind::EmptyDir {
            memory: e.medium.as_deref() == Some("Memory"),
            size: e
                .size_limit
                .as_ref()
                .and_then(|q| parse_quantity(&q.0))
                .filter(|s| *s > 0.0)
                .map(|s| s.ceil() as u64),
        };
    }
    if let Some(h) = &v.host_path {
        return Kind::HostPath {
            path: PathBuf::from(&h.path),
            kind: h.type_.clone().unwrap_or_default(),
        };
    }
    if let Some(c) = &v.persistent_volume_claim {
        return Kind::Claim {
            claim: c.claim_name.clone(),
        };
    }
    // kubelet backs secrets and projected volumes with tmpfs so they never touch the disk.
    let api = if v.config_map.is_some() {
        Some(("kubernetes.io~configmap", false))
    } else if v.secret.is_some() {
        Some(("kubernetes.io~secret", true))
    } else if v.downward_api.is_some() {
        Some(("kubernetes.io~downward-api", false))
    } else if v.projected.is_some() {
        Some(("kubernetes.io~projected", true))
    } else {
        None
    };
    if let Some((plugin, tmpfs)) = api {
        return Kind::ApiData { plugin, tmpfs };
    }
    let kind = serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        })
        .unwrap_or_else(|| "unknown".to_string());
    Kind::Unsupported(kind)
}

/// Whether kubelet mounts this volume read-only whatever the volumeMount says: API data,
/// and a claim the pod asks for read-only.
fn forced_read_only(v: &Volume) -> bool {
    let read_only_claim = v
        .persistent_volume_claim
        .as_ref()
        .is_some_and(|c| c.read_only == Some(true));
    read_only_claim || matches!(kind_of(v), Kind::ApiData { .. })
}

/// A path element we create from API data (uid, volume or container name).
fn safe_name(name: &str) -> Result<&str, VolumeError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(VolumeError::InvalidName {
            name: name.to_string(),
        });
    }
    Ok(name)
}

/// The mode of the volume root and of each pod's directory under it.
pub const POD_DIR_MODE: u32 = 0o750;

/// Sets up, refreshes and releases pods' volumes under one root directory.
pub struct VolumeManager {
    root: PathBuf,
    mounter: Arc<dyn Mounter>,
    sync_period: Duration,
    tokens: TokenCache,
}

impl VolumeManager {
    pub fn new(root: PathBuf, mounter: Arc<dyn Mounter>, sync_period: Duration) -> Self {
        Self {
            root,
            mounter,
            sync_period,
            tokens: TokenCache::default(),
        }
    }

    /// Volumes under `<state_dir>/volumes`, real mounts, refreshed every `sync_period`
    /// (the kubelet's `syncFrequency`).
    pub fn for_state_dir(state_dir: &Path, sync_period: Duration) -> Self {
        Self::new(
            state_dir.join(VOLUMES_DIR),
            Arc::new(HostMounter),
            sync_period,
        )
    }

    pub fn sync_period(&self) -> Duration {
        self.sync_period
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one pod's volumes.
    pub fn pod_dir(&self, uid: &str) -> Result<PathBuf, VolumeError> {
        Ok(self.root.join(safe_name(uid)?))
    }

    /// Sets up every volume of the pod, or brings them up to date: idempotent. Returns each
    /// volume's host path. API-data volumes get `objects`' current content. A pod with a
    /// user namespace (`ids`, `hostUsers: false`) gets its emptyDirs and API-data files
    /// owned by the namespace's root (and the fsGroup as mapped there), so its root can use
    /// them and what it writes keeps its mapped host IDs.
    pub fn setup(
        &self,
        pod: &Pod,
        ctx: &PodContext,
        objects: &Objects,
        skipped: &mut Vec<Skipped>,
        ids: Option<IdMapping>,
    ) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
        let pod_dir = self.pod_dir(pod.metadata.uid.as_deref().unwrap_or_default())?;
        // Secret and token files are only for the pod's containers (which reach them through
        // bind mounts): on the host, their directories are closed to other users, as the
        // kubelet's pods/<uid>/volumes (0750); also when an older version left them open.
        for dir in [&self.root, &pod_dir] {
            fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(POD_DIR_MODE))
                .map_err(io_err("chmod", dir))?;
        }
        let fs_group = match (fsgroup::fs_group(pod), ids) {
            (Some(gid), Some(m)) => m.to_host(gid),
            (gid, _) => gid,
        };
        // The namespace root's host IDs: owner, and group unless an fsGroup sets it.
        let owner = ids.map(|m| (m.host_id, fs_group.unwrap_or(m.host_id)));
        let mut paths = BTreeMap::new();
        for v in sources::volumes(pod) {
            let name = safe_name(&v.name)?;
            let path = match kind_of(v) {
                Kind::EmptyDir { memory, size } => {
                    let dir = pod_dir.join("kubernetes.io~empty-dir").join(name);
                    fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
                    if memory {
                        let mut opts = "mode=1777".to_string();
                        if let Some(size) = size {
                            opts.push_str(&format!(",size={size}"));
                        }
                        self.ensure_tmpfs(&dir, &opts)?;
                    }
                    // kubelet makes emptyDirs world-writable: any container user may use them
                    // (the setgid bit an fsGroup put there stays).
                    let setgid = fs::symlink_metadata(&dir)
                        .map_err(io_err("inspecting", &dir))?
                        .mode()
                        & 0o2000;
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777 | setgid))
                        .map_err(io_err("chmod", &dir))?;
                    // kubelet sets an emptyDir up once (its ready marker) and passes it no
                    // fsGroupChangePolicy; a root already in the group with the setgid bit is
                    // our marker, so neither a refresh nor an agent restart walks the files
                    // the pod wrote.
                    if let Some(gid) = fs_group {
                        if !fsgroup::volume_ownership_matches(&dir, gid, false) {
                            fsgroup::set_volume_ownership(&dir, gid, false)
                                .map_err(io_err("setting fsGroup ownership of", &dir))?;
                        }
                    }
                    // Only the root: what the pod wrote there is already its own.
                    if let Some((uid, gid)) = owner {
                        std::os::unix::fs::lchown(&dir, Some(uid), Some(gid))
                            .map_err(io_err("setting the user namespace owner of", &dir))?;
                    }
                    dir
                }
                Kind::HostPath { path, kind } => {
                    hostpath::check_type(&path, &kind).map_err(|source| VolumeError::HostPath {
                        volume: v.name.clone(),
                        source,
                    })?;
                    path
                }
                Kind::Claim { claim } => {
                    let volume = objects
                        .claims
                        .get(&claim)
                        .cloned()
                        .unwrap_or_else(|| {
                            Err(ClaimError::ClaimNotFound {
                                name: claim.clone(),
                            })
                        })
                        .map_err(|source| VolumeError::Claim {
                            volume: v.name.clone(),
                            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                            claim,
                            source: Box::new(source),
                        })?;
                    hostpath::check_type(&volume.path, &volume.check).map_err(|source| {
                        VolumeError::HostPath {
                            volume: v.name.clone(),
                            source,
                        }
                    })?;
                    volume.path
                }
                Kind::ApiData { plugin, tmpfs } => {
                    let mut payload = sources::payload(pod, v, ctx, objects, skipped)
                        .unwrap_or_else(|| Ok(Payload::new()))
                        .map_err(|source| VolumeError::Source {
                            volume: v.name.clone(),
                            source,
                        })?;
                    // With an fsGroup the files end up with the group read bits (kubelet's
                    // read-only mask); writing them so keeps an unchanged payload unchanged.
                    if fs_group.is_some() {
                        for file in payload.values_mut() {
                            file.mode = fsgroup::fs_group_file_mode(file.mode, true);
                        }
                    }
                    let dir = pod_dir.join(plugin).join(name);
                    fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
                    if tmpfs {
                        self.ensure_tmpfs(&dir, "mode=0755")?;
                    }
                    // kubelet re-applies the ownership to the whole volume on every new
                    // version (no change policy for these plugins), before the swap.
                    let set_perms = || {
                        if let Some(gid) = fs_group {
                            fsgroup::set_volume_ownership(&dir, gid, true)?;
                        }
                        match owner {
                            Some((uid, gid)) => fsgroup::set_owner(&dir, uid, gid),
                            None => Ok(()),
                        }
                    };
                    atomic::write_with(&dir, &payload, set_perms).map_err(|source| {
                        VolumeError::Write {
                            volume: v.name.clone(),
                            source,
                        }
                    })?;
                    dir
                }
                Kind::Unsupported(kind) => {
                    return Err(VolumeError::Unsupported {
                        volume: v.name.clone(),
                        kind,
                    })
                }
            };
            paths.insert(v.name.clone(), path);
        }
        Ok(paths)
    }

    fn ensure_tmpfs(&self, dir: &Path, options: &str) -> Result<(), VolumeError> {
        let mounted = self
            .mounter
            .is_mount_point(dir)
            .map_err(io_err("checking for a mount on", dir))?;
        if !mounted {
            self.mounter
                .mount_tmpfs(dir, options)
                .map_err(io_err("mounting tmpfs on", dir))?;
        }
        Ok(())
    }

    /// The container's bind mounts for its `volumeMounts`, parents before children, with
    /// subPaths resolved safely and bind-mounted under the pod's `volume-subpaths`, and
    /// recursively read-only where they ask and the pod's runtime handler can
    /// (`recursive_read_only`).
    pub fn container_mounts(
        &self,
        pod: &Pod,
        container: &Container,
        paths: &BTreeMap<String, PathBuf>,
        env: &[(String, String)],
        recursive_read_only: bool,
    ) -> Result<Vec<Mount>, VolumeError> {
        let pod_dir = self.pod_dir(pod.metadata.uid.as_deref().unwrap_or_default())?;
        let volumes = sources::volumes(pod);
        let mut mounts = Vec::new();
        for (index, vm) in container.volume_mounts.iter().flatten().enumerate() {
            let missing = || VolumeError::Missing {
                volume: vm.name.clone(),
                container: container.name.clone(),
            };
            let host = paths.get(&vm.name).ok_or_else(missing)?;
            let volume = volumes
                .iter()
                .find(|v| v.name == vm.name)
                .ok_or_else(missing)?;
            // Before any subPath is bound: a refused mode leaves nothing behind.
            let rro =
                rro::resolve(vm, recursive_read_only).map_err(VolumeError::RecursiveReadOnly)?;
            let sub = match (vm.sub_path.as_deref(), vm.sub_path_expr.as_deref()) {
                (Some(s), _) if !s.is_empty() => Some(s.to_string()),
                (_, Some(e)) if !e.is_empty() => {
                    Some(subpath::expand_expr(e, env).map_err(VolumeError::SubPathRefused)?)
                }
                _ => None,
            };
            let host_path = match sub {
                None => host.clone(),
                Some(sub) => {
                    subpath::validate(&sub).map_err(VolumeError::SubPathRefused)?;
                    let sub_err = |source: subpath::SubPathError| {
                        tracing::warn!(
                            container = %container.name,
                            volume = %vm.name,
                            error = %source,
                            "failed to prepare subPath for volumeMount of the container"
                        );
                        VolumeError::SubPath {
                            volume: vm.name.clone(),
                            container: container.name.clone(),
                            source,
                        }
                    };
                    let fd = subpath::open_beneath(host, &sub).map_err(sub_err)?;
                    let target = subpath::bind_target(
                        &pod_dir,
                        safe_name(&vm.name)?,
                        safe_name(&container.name)?,
                        index,
                    );
                    self.bind_subpath(&fd, &target)?;
                    target
                }
            };
            mounts.push(Mount {
                host_path,
                container_path: vm.mount_path.clone(),
                readonly: vm.read_only == Some(true) || forced_read_only(volume),
                recursive_read_only: rro,
            });
        }
        // containerd's order: fewer path elements first, so a mount never hides a later one.
        mounts.sort_by_key(|m| Path::new(&m.container_path).components().count());
        Ok(mounts)
    }

    /// (Re)binds the object behind `fd` on `target`, replacing an earlier attempt's mount.
    fn bind_subpath(&self, fd: &std::os::fd::OwnedFd, target: &Path) -> Result<(), VolumeError> {
        for _ in 0..8 {
            let mounted = self
                .mounter
                .mounts_under(target)
                .map_err(io_err("reading mounts under", target))?;
            if !mounted.iter().any(|m| m == target) {
                break;
            }
            self.mounter
                .unmount(target)
                .map_err(io_err("unmounting", target))?;
        }
        let proc_path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(fd)
        ));
        let is_dir = fs::metadata(&proc_path)
            .map_err(io_err("inspecting", &proc_path))?
            .is_dir();
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        if is_dir {
            fs::create_dir_all(target).map_err(io_err("creating", target))?;
        } else if fs::symlink_metadata(target).is_err() {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(target)
                .map_err(io_err("creating", target))?;
        }
        self.mounter
            .bind_fd(fd.as_fd(), target)
            .map_err(io_err("bind-mounting onto", target))
    }

    /// Releases everything of one pod: unmounts (deepest first) every mount below its
    /// directory, then removes the directory. Keeps going after a failure and reports all;
    /// an already removed pod is success. Never removes files across a mount that is left.
    pub fn teardown(&self, uid: &str) -> Result<(), Vec<VolumeError>> {
        self.tokens.forget_pod(uid);
        let dir = self.pod_dir(uid).map_err(|e| vec![e])?;
        teardown_dir(self.mounter.as_ref(), &dir)
    }

    /// Tears down the volumes of every pod directory whose uid is not in `keep` (pods that
    /// were deleted while the agent was down).
    pub fn cleanup_orphans(&self, keep: &HashSet<String>) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for e in entries.flatten() {
            let uid = e.file_name().to_string_lossy().into_owned();
            if keep.contains(&uid) {
                continue;
            }
            tracing::info!(pod_uid = %uid, "removing volumes of a pod that no longer exists");
            if let Err(errs) = self.teardown(&uid) {
                for err in errs {
                    tracing::warn!(pod_uid = %uid, error = %err, "removing orphaned volumes failed");
                }
            }
        }
    }
}

fn teardown_dir(mounter: &dyn Mounter, dir: &Path) -> Result<(), Vec<VolumeError>> {
    let mut errors = Vec::new();
    match mounter.mounts_under(dir) {
        Ok(points) => {
            for p in points {
                if let Err(e) = mounter.unmount(&p) {
                    errors.push(io_err("unmounting", &p)(e));
                }
            }
        }
        Err(e) => errors.push(io_err("reading mounts under", dir)(e)),
    }
    match mounter.mounts_under(dir) {
        Ok(left) if left.is_empty() => {}
        Ok(left) => {
            for path in left {
                errors.push(VolumeError::StillMounted { path });
            }
        }
        Err(e) => errors.push(io_err("reading mounts under", dir)(e)),
    }
    if errors.is_empty() {
        if let Err(e) = remove_tree_one_fs(dir) {
            if e.kind() != io::ErrorKind::NotFound {
                errors.push(io_err("removing", dir)(e));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// `remove_dir_all` that refuses to descend into another filesystem: should a mount be
/// left below `dir` after all, its content (a hostPath's, say) is never deleted.
fn remove_tree_one_fs(dir: &Path) -> io::Result<()> {
    let dev = fs::symlink_metadata(dir)?.dev();
    fn walk(path: &Path, dev: u64) -> io::Result<()> {
        for e in fs::read_dir(path)? {
            let e = e?;
            let meta = fs::symlink_metadata(e.path())?;
            if meta.is_dir() {
                if meta.dev() != dev {
                    return Err(io::Error::new(
                        io::ErrorKind::ResourceBusy,
                        format!("{} is another filesystem", e.path().display()),
                    ));
                }
                walk(&e.path(), dev)?;
                fs::remove_dir(e.path())?;
            } else {
                fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }
    walk(dir, dev)?;
    fs::remove_dir(dir)
}

impl VolumeManager {
    /// Reads the config maps and secrets the pod's volumes refer to, and gets the service
    /// account tokens they project (kept ones while fresh) at `now`.
    pub async fn fetch_objects(
        &self,
        api: &dyn PodApi,
        pod: &Pod,
        now: jiff::Timestamp,
    ) -> Result<Objects, VolumeError> {
        let mut out = fetch_objects(api, pod).await?;
        for (audience, expiration) in sources::token_projections(pod) {
            let key = TokenKey::for_pod(pod, &audience, expiration);
            let token =
                self.tokens
                    .get(api, &key, now)
                    .await
                    .map_err(|source| VolumeError::Token {
                        service_account: key.service_account.clone(),
                        source: Box::new(source),
                    })?;
            out.tokens.insert((audience, expiration), token);
        }
        Ok(out)
    }

    /// The tokens kept for pods.
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }
}

/// Reads the config maps, secrets and claims (with their volumes) the pod's volumes refer
/// to.
async fn fetch_objects(api: &dyn PodApi, pod: &Pod) -> Result<Objects, VolumeError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let (maps, secrets) = sources::referenced(pod);
    let mut out = Objects::default();
    for name in claims::referenced(pod) {
        let fetch = |kind: &'static str, name: &str| {
            let name = name.to_string();
            move |source| VolumeError::Fetch {
                kind,
                name,
                source: Box::new(source),
            }
        };
        let claim = api
            .get_persistent_volume_claim(&ns, &name)
            .await
            .map_err(fetch("persistentvolumeclaim", &name))?;
        let resolved = match claims::bound_volume(&ns, &name, claim.as_ref()) {
            Ok(volume) => {
                let pv = api
                    .get_persistent_volume(&volume)
                    .await
                    .map_err(fetch("persistentvolume", &volume))?;
                match &claim {
                    Some(c) => claims::mountable(c, &volume, pv.as_ref()),
                    None => Err(ClaimError::ClaimNotFound { name: name.clone() }),
                }
            }
            Err(e) => Err(e),
        };
        out.claims.insert(name, resolved);
    }
    for name in maps {
        let v = api
            .get_config_map(&ns, &name)
            .await
            .map_err(|source| VolumeError::Fetch {
                kind: "configmap",
                name: name.clone(),
                source: Box::new(source),
            })?;
        out.config_maps.insert(name, v);
    }
    for name in secrets {
        let v = api
            .get_secret(&ns, &name)
            .await
            .map_err(|source| VolumeError::Fetch {
                kind: "secret",
                name: name.clone(),
                source: Box::new(source),
            })?;
        out.secrets.insert(name, v);
    }
    Ok(out)
}

/// Unmounts every volume mount below `<state_dir>/volumes` (for `peapod reset`, after the
/// pods' processes are gone), so the state directory can be removed.
pub fn unmount_all(state_dir: &Path) -> Result<(), Vec<VolumeError>> {
    let root = state_dir.join(VOLUMES_DIR);
    if !root.exists() {
        return Ok(());
    }
    teardown_dir(&HostMounter, &root)
}

#[cfg(test)]
mod tests;
