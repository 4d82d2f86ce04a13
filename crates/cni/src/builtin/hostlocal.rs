//! Address allocation on host-local's own on-disk store (containernetworking-plugins'
//! `plugins/ipam/host-local`, disk backend), so the `host-local` binary and the in-process
//! path share one pool: `<data dir>/<network>/<ip>` holds `<container id>\r\n<ifname>`,
//! `last_reserved_ip.<range>` the round-robin cursor, and every change happens under an
//! exclusive `flock` of `<dir>/lock`.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use nix::fcntl::{Flock, FlockArg};

/// host-local's default data dir.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
/// The one range set of peapod's default network is range 0 (`last_reserved_ip.0`).
const RANGE_ID: usize = 0;
/// host-local's separator between the container id and the interface name.
const LINE_BREAK: &str = "\r\n";

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("network {subnet} has host bits set")]
    HostBits { subnet: Ipv4Net },
    #[error("network {subnet} too small to allocate from")]
    TooSmall { subnet: Ipv4Net },
    #[error("{ip} has been allocated to {container_id}, duplicate allocation is not allowed")]
    Duplicate { ip: Ipv4Addr, container_id: String },
    #[error("no IP addresses available in range set: {start}-{end}")]
    Exhausted { start: Ipv4Addr, end: Ipv4Addr },
    #[error("IPAM store {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One allocation range, canonicalised as host-local does for a bare `subnet`: the gateway
/// is the subnet's first address, the range runs from it to the last address before the
/// broadcast, and the gateway itself is never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub subnet: Ipv4Net,
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub gateway: Ipv4Addr,
}

impl Range {
    pub fn of(subnet: Ipv4Net) -> Result<Self, IpamError> {
        if subnet.addr() != subnet.network() {
            return Err(IpamError::HostBits { subnet });
        }
        if subnet.prefix_len() > 30 {
            return Err(IpamError::TooSmall { subnet });
        }
        let first = Ipv4Addr::from(u32::from(subnet.network()) + 1);
        Ok(Self {
            subnet,
            start: first,
            end: Ipv4Addr::from(u32::from(subnet.broadcast()) - 1),
            gateway: first,
        })
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(&ip) && self.start <= ip && ip <= self.end
    }

    /// The addresses to try, in host-local's round-robin order: from the one after
    /// `last` (when it is in the range) around to `last` itself, else from the start;
    /// the gateway skipped.
    pub fn candidates(&self, last: Option<Ipv4Addr>) -> impl Iterator<Item = Ipv4Addr> + '_ {
        // u64: a /0 range has 2^32 - 2 addresses.
        let (start, end) = (
            u64::from(u32::from(self.start)),
            u64::from(u32::from(self.end)),
        );
        let first = match last.filter(|ip| self.contains(*ip)) {
            Some(ip) => u64::from(u32::from(ip)) + 1,
            None => start,
        };
        let len = end - start + 1;
        (0..len)
            .filter_map(move |i| u32::try_from(start + (first - start + i) % len).ok())
            .map(Ipv4Addr::from)
            .filter(move |ip| *ip != self.gateway)
    }
}

/// One network's allocation directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The store's `flock`, held while it lives.
pub struct Locked<'a> {
    store: &'a Store,
    _lock: Flock<File>,
}

impl Store {
    /// The store of `network` under `data_dir` (the directory is made on first lock).
    pub fn new(data_dir: &Path, network: &str) -> Self {
        Self {
            dir: data_dir.join(network),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io_err(&self, path: &Path) -> impl FnOnce(std::io::Error) -> IpamError {
        let path = path.to_path_buf();
        move |source| IpamError::Io { path, source }
    }

    /// Takes the store's lock, as every host-local operation does.
    pub fn lock(&self) -> Result<Locked<'_>, IpamError> {
        std::fs::create_dir_all(&self.dir).map_err(self.io_err(&self.dir))?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o750)
            .open(&path)
            .map_err(self.io_err(&path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| self.io_err(&path)(errno.into()))?;
        Ok(Locked {
            store: self,
            _lock: lock,
        })
    }
}

/// What a file of the store says: `<id>\r\n<ifname>`, or a bare `<id>` from host-local
/// before 0.8; compared trimmed, as host-local does.
fn owned_by(content: &str, container_id: &str, if_name: &str) -> bool {
    let content = content.trim();
    content == format!("{}{LINE_BREAK}{if_name}", container_id.trim())
        || content == container_id.trim()
}

impl Locked<'_> {
    /// Files of the store that parse as an address (the allocations), with their content.
    fn allocations(&self) -> Result<Vec<(Ipv4Addr, PathBuf, String)>, IpamError> {
        let dir = &self.store.dir;
        let entries = std::fs::read_dir(dir).map_err(self.store.io_err(dir))?;
        let mut out = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            // A file that vanished or cannot be read is skipped, as host-local's walk does.
            if let Ok(content) = std::fs::read_to_string(entry.path()) {
                out.push((ip, entry.path(), content));
            }
        }
        Ok(out)
    }

    fn last_reserved_path(&self) -> PathBuf {
        self.store.dir.join(format!("last_reserved_ip.{RANGE_ID}"))
    }

    /// Reserves the next free address of `range` for the container's interface, or fails
    /// when it already holds one there (host-local refuses duplicates, as the spec says).
    pub fn allocate(
        &self,
        container_id: &str,
        if_name: &str,
        range: &Range,
    ) -> Result<Ipv4Addr, IpamError> {
        let allocations = self.allocations()?;
        if let Some((ip, _, _)) = allocations
            .iter()
            .find(|(ip, _, c)| owned_by(c, container_id, if_name) && range.contains(*ip))
        {
            return Err(IpamError::Duplicate {
                ip: *ip,
                container_id: container_id.to_string(),
            });
        }
        let last_path = self.last_reserved_path();
        let last = std::fs::read_to_string(&last_path)
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok());
        for ip in range.candidates(last) {
            if self.reserve(ip, container_id, if_name)? {
                std::fs::write(&last_path, ip.to_string())
                    .map_err(self.store.io_err(&last_path))?;
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted {
            start: range.start,
            end: range.end,
        })
    }

    /// Creates `<dir>/<ip>` unless it exists; `false` when it is taken.
    fn reserve(&self, ip: Ipv4Addr, container_id: &str, if_name: &str) -> Result<bool, IpamError> {
        let path = self.store.dir.join(ip.to_string());
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(self.store.io_err(&path)(e)),
        };
        let content = format!("{}{LINE_BREAK}{if_name}", container_id.trim());
        if let Err(e) = file.write_all(content.as_bytes()) {
            let _ = std::fs::remove_file(&path);
            return Err(self.store.io_err(&path)(e));
        }
        Ok(true)
    }

    /// Releases every address of the container's interface (host-local's `ReleaseByID`:
    /// files naming `<id>\r\n<ifname>`, else those naming the bare id); none is fine.
    pub fn release(&self, container_id: &str, if_name: &str) -> Result<(), IpamError> {
        let allocations = self.allocations()?;
        let exact = format!("{}{LINE_BREAK}{if_name}", container_id.trim());
        let mut matching: Vec<&PathBuf> = allocations
            .iter()
            .filter(|(_, _, c)| c.trim() == exact)
            .map(|(_, p, _)| p)
            .collect();
        if matching.is_empty() {
            matching = allocations
                .iter()
                .filter(|(_, _, c)| c.trim() == container_id.trim())
                .map(|(_, p, _)| p)
                .collect();
        }
        for path in matching {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(self.store.io_err(path)(e))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(cidr: &str) -> Range {
        Range::of(cidr.parse().expect("cidr")).expect("range")
    }

    #[test]
    fn a_bare_subnet_canonicalises_like_host_local() {
        let r = range("10.244.0.0/24");
        assert_eq!(r.gateway, Ipv4Addr::new(10, 244, 0, 1));
        assert_eq!(r.start, Ipv4Addr::new(10, 244, 0, 1));
        assert_eq!(r.end, Ipv4Addr::new(10, 244, 0, 254));
        assert!(matches!(
            Range::of("10.244.0.5/24".parse().expect("cidr")),
            Err(IpamError::HostBits { .. })
        ));
        assert!(matches!(
            Range::of("10.244.0.0/31".parse().expect("cidr")),
            Err(IpamError::TooSmall { .. })
        ));
        let tiny = range("10.9.0.0/30");
        assert_eq!(
            tiny.candidates(None).collect::<Vec<_>>(),
            [Ipv4Addr::new(10, 9, 0, 2)]
        );
    }

    #[test]
    fn candidates_go_round_robin_from_the_last_reserved_and_skip_the_gateway() {
        let r = range("10.9.0.0/29"); // .1 gateway, .2–.6 usable
        let ips = |last: Option<Ipv4Addr>| {
            r.candidates(last)
                .map(|ip| ip.octets()[3])
                .collect::<Vec<_>>()
        };
        assert_eq!(ips(None), [2, 3, 4, 5, 6]);
        assert_eq!(ips(Some(Ipv4Addr::new(10, 9, 0, 4))), [5, 6, 2, 3, 4]);
        assert_eq!(ips(Some(Ipv4Addr::new(10, 9, 0, 6))), [2, 3, 4, 5, 6]);
        // A cursor outside the range (the range changed) starts from the beginning.
        assert_eq!(ips(Some(Ipv4Addr::new(10, 1, 0, 4))), [2, 3, 4, 5, 6]);
        assert_eq!(ips(Some(Ipv4Addr::new(10, 9, 0, 7))), [2, 3, 4, 5, 6]);
    }

    #[test]
    fn allocation_writes_host_locals_files_and_refuses_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path(), "net");
        let r = range("10.9.0.0/24");
        let lock = store.lock().expect("lock");
        let ip = lock.allocate("abc", "eth0", &r).expect("allocate");
        assert_eq!(ip, Ipv4Addr::new(10, 9, 0, 2));
        let net = dir.path().join("net");
        assert_eq!(
            std::fs::read(net.join("10.9.0.2")).expect("ip file"),
            b"abc\r\neth0"
        );
        assert_eq!(
            std::fs::read_to_string(net.join("last_reserved_ip.0")).expect("last"),
            "10.9.0.2"
        );
        assert!(net.join("lock").exists());
        assert!(matches!(
            lock.allocate("abc", "eth0", &r),
            Err(IpamError::Duplicate { .. })
        ));
        // Another interface of the same container is another allocation.
        assert_eq!(
            lock.allocate("abc", "eth1", &r).expect("eth1"),
            Ipv4Addr::new(10, 9, 0, 3)
        );
    }

    #[test]
    fn released_addresses_come_back_only_after_the_range_wraps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path(), "net");
        let r = range("10.9.0.0/29");
        let lock = store.lock().expect("lock");
        let got: Vec<u8> = ["a", "b", "c"]
            .iter()
            .map(|id| lock.allocate(id, "eth0", &r).expect("allocate").octets()[3])
            .collect();
        assert_eq!(got, [2, 3, 4]);
        lock.release("a", "eth0").expect("release");
        assert!(!dir.path().join("net/10.9.0.2").exists());
        // Round robin: .5 and .6 before .2 is reused.
        let next: Vec<u8> = ["d", "e", "f"]
            .iter()
            .map(|id| lock.allocate(id, "eth0", &r).expect("allocate").octets()[3])
            .collect();
        assert_eq!(next, [5, 6, 2]);
        assert!(matches!(
            lock.allocate("g", "eth0", &r),
            Err(IpamError::Exhausted { .. })
        ));
        // Releasing what is not there is fine.
        lock.release("nobody", "eth0").expect("release nothing");
        lock.release("a", "eth0").expect("release twice");
    }

    #[test]
    fn files_written_by_host_local_are_read_and_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = dir.path().join("peapod");
        std::fs::create_dir_all(&net).expect("dir");
        // As host-local 1.1 leaves them (a trailing newline would be trimmed too), and
        // a pre-0.8 file holding the bare id.
        std::fs::write(net.join("10.9.0.2"), "plugin-made\r\neth0").expect("write");
        std::fs::write(net.join("10.9.0.3"), "old-style\n").expect("write");
        std::fs::write(net.join("last_reserved_ip.0"), "10.9.0.3").expect("write");
        let store = Store::new(dir.path(), "peapod");
        let r = range("10.9.0.0/24");
        let lock = store.lock().expect("lock");
        assert!(matches!(
            lock.allocate("plugin-made", "eth0", &r),
            Err(IpamError::Duplicate { .. })
        ));
        assert_eq!(
            lock.allocate("new", "eth0", &r).expect("allocate"),
            Ipv4Addr::new(10, 9, 0, 4)
        );
        lock.release("old-style", "eth0").expect("release old");
        assert!(!net.join("10.9.0.3").exists());
        lock.release("plugin-made", "eth0").expect("release");
        assert!(!net.join("10.9.0.2").exists());
        assert!(net.join("10.9.0.4").exists());
        // Another interface's file is not this interface's.
        std::fs::write(net.join("10.9.0.9"), "x\r\neth1").expect("write");
        lock.release("x", "eth0").expect("release");
        assert!(net.join("10.9.0.9").exists());
    }

    #[test]
    fn the_lock_is_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path(), "net");
        let held = store.lock().expect("lock");
        let file = File::open(dir.path().join("net/lock")).expect("open");
        assert!(Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err());
        drop(held);
        let file = File::open(dir.path().join("net/lock")).expect("open");
        assert!(Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok());
    }
}
