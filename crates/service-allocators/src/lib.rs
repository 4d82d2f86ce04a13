//! ClusterIP and NodePort allocation for Services, as kube-apiserver's service REST storage
//! does it: each range is a bitmap kept in the store (upstream's `RangeAllocation` objects
//! under `/registry/ranges/serviceips` and `servicenodeports`), changed with a
//! compare-and-swap on its resourceVersion so two creates never get the same address.
//!
//! Allocation and the Service write are two store commits. A crash between them can only
//! leak an address (allocated, no Service), never hand one out twice; [`repair`] — run at
//! start before the API serves, like upstream's repair controllers — rebuilds both bitmaps
//! from the stored Services, which reclaims any leak.
//!
//! A bitmap is stored as the list of its taken offsets, not as upstream's bit string: a
//! /12 service range is 128 KiB of bits, and every Service write would otherwise add that
//! (twice, old and new) to the watch history.

use std::net::Ipv4Addr;

use base64::Engine;
use serde_json::{json, Value};
use store::{ObjectKey, Store, StoreError};

use api::validation::{CauseReason, FieldError};

/// The service network (kube-apiserver's `--service-cluster-ip-range` default for peapod).
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 96, 0, 0), 12);
/// The `kubernetes` Service in `default` (the first address of the range, as upstream).
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// The cluster DNS Service (`kube-dns` in `kube-system`), the conventional tenth address.
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// `--service-node-port-range` default.
pub const NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

/// Allocations of one range are stored under this internal group, which discovery never
/// serves (so no client can read or write it).
const RANGE_GROUP: &str = "internal.peapod.io";
const RANGE_RESOURCE: &str = "rangeallocations";

#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    IpOutOfRange { ip: String, range: String },
    #[error("provided IP is already allocated")]
    IpTaken,
    #[error("range is full")]
    Full,
    #[error("provided port is not in the valid range. The range of valid ports is {lo}-{hi}")]
    PortOutOfRange { lo: u16, hi: u16 },
    #[error("provided port is already allocated")]
    PortTaken,
    #[error("reading or writing the allocation bitmap")]
    Store(#[from] StoreError),
}

/// A fixed-size set of offsets (bit i = offset i taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    size: u32,
    bits: Vec<u8>,
}

impl Bitmap {
    pub fn new(size: u32) -> Self {
        Bitmap {
            size,
            bits: vec![0; size.div_ceil(8) as usize],
        }
    }

    /// Restores a bitmap from its stored bytes; a size mismatch (the range changed) starts
    /// empty, and [`repair`] then refills it from the Services.
    fn from_bytes(size: u32, bytes: Vec<u8>) -> Self {
        if bytes.len() == size.div_ceil(8) as usize {
            Bitmap { size, bits: bytes }
        } else {
            Bitmap::new(size)
        }
    }

    /// Restores a bitmap from its taken offsets; offsets outside the size are dropped.
    fn from_offsets(size: u32, offsets: impl IntoIterator<Item = u32>) -> Self {
        let mut map = Bitmap::new(size);
        for i in offsets {
            map.set(i);
        }
        map
    }

    /// The taken offsets, in order.
    pub fn offsets(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .flat_map(|(byte, b)| {
                (0..8u32)
                    .filter(move |bit| b & (1 << bit) != 0)
                    .map(move |bit| byte as u32 * 8 + bit)
            })
    }

    pub fn has(&self, i: u32) -> bool {
        i < self.size && self.bits[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    pub fn set(&mut self, i: u32) {
        if i < self.size {
            self.bits[(i / 8) as usize] |= 1 << (i % 8);
        }
    }

    pub fn clear(&mut self, i: u32) {
        if i < self.size {
            self.bits[(i / 8) as usize] &= !(1 << (i % 8));
        }
    }

    /// The first free offset in `lo..hi` at or after `start`, wrapping around once.
    pub fn first_free(&self, lo: u32, hi: u32, start: u32) -> Option<u32> {
        if lo >= hi {
            return None;
        }
        let start = start.clamp(lo, hi - 1);
        (start..hi).chain(lo..start).find(|&i| !self.has(i))
    }
}

/// The ClusterIP range: offsets of a CIDR, without the network and broadcast addresses.
#[derive(Debug, Clone, Copy)]
pub struct IpRange {
    base: u32,
    prefix: u8,
}

impl IpRange {
    pub fn new(base: Ipv4Addr, prefix: u8) -> Self {
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        IpRange {
            base: u32::from(base) & mask,
            prefix,
        }
    }

    pub fn size(&self) -> u32 {
        1u32.checked_shl(32 - self.prefix as u32)
            .unwrap_or(u32::MAX)
    }

    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }

    /// The offset of `ip`, if it is a usable address of the range.
    pub fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let v = u32::from(ip);
        let off = v.checked_sub(self.base)?;
        (off >= 1 && off < self.size() - 1).then_some(off)
    }

    pub fn ip(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base.wrapping_add(offset))
    }

    /// Upstream keeps the low band (size/16, clamped to 16..=256 addresses) for addresses
    /// users ask for (KEP-3070), so dynamic allocation takes the upper band first.
    fn static_band(&self) -> u32 {
        (self.size() / 16).clamp(16, 256).min(self.size())
    }

    /// Picks a free offset: the upper band from a random point, then the low band.
    pub fn pick(&self, used: &Bitmap, random: u32) -> Option<u32> {
        let last = self.size() - 1;
        let band = self.static_band().max(1);
        let upper = if band < last {
            used.first_free(band, last, band + random % (last - band))
        } else {
            None
        };
        upper.or_else(|| used.first_free(1, band.min(last), 1))
    }
}

fn range_key(name: &str) -> ObjectKey {
    ObjectKey::new(RANGE_GROUP, RANGE_RESOURCE, "", name)
}

const IPS: &str = "serviceips";
const PORTS: &str = "servicenodeports";

async fn load(
    store: &dyn Store,
    name: &str,
    size: u32,
) -> Result<(Bitmap, Option<u64>), StoreError> {
    match store.get(&range_key(name)).await {
        Ok(obj) => {
            let map = match obj.get("offsets").and_then(Value::as_array) {
                Some(offsets) => Bitmap::from_offsets(
                    size,
                    offsets
                        .iter()
                        .filter_map(Value::as_u64)
                        .filter_map(|o| u32::try_from(o).ok()),
                ),
                // Written by an older peapod as the whole bit string.
                None => Bitmap::from_bytes(
                    size,
                    obj.get("data")
                        .and_then(Value::as_str)
                        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                        .unwrap_or_default(),
                ),
            };
            Ok((map, store::resource_version_of(&obj)))
        }
        Err(StoreError::NotFound { .. }) => Ok((Bitmap::new(size), None)),
        Err(e) => Err(e),
    }
}

async fn save(
    store: &dyn Store,
    name: &str,
    range: &str,
    map: &Bitmap,
    rv: Option<u64>,
) -> Result<(), StoreError> {
    let obj = json!({
        "apiVersion": "v1",
        "kind": "RangeAllocation",
        "metadata": {"name": name},
        "range": range,
        "offsets": map.offsets().collect::<Vec<_>>(),
    });
    match rv {
        Some(rv) => store
            .update(&range_key(name), obj, Some(rv))
            .await
            .map(|_| ()),
        None => store.create(&range_key(name), obj).await.map(|_| ()),
    }
}

/// Read-modify-write of one bitmap, retried when another writer got in between.
async fn modify<T>(
    store: &dyn Store,
    name: &str,
    range: &str,
    size: u32,
    mut f: impl FnMut(&mut Bitmap) -> Result<T, AllocError>,
) -> Result<T, AllocError> {
    for _ in 0..16 {
        let (mut map, rv) = load(store, name, size).await?;
        let out = f(&mut map)?;
        match save(store, name, range, &map, rv).await {
            Ok(()) => return Ok(out),
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AllocError::Store(StoreError::TooManyRetries {
        key: range_key(name),
        attempts: 16,
    }))
}

/// The ranges a control plane allocates from.
#[derive(Debug, Clone, Copy)]
pub struct Ranges {
    pub ips: IpRange,
    pub node_ports: (u16, u16),
}

impl Default for Ranges {
    fn default() -> Self {
        Ranges {
            ips: IpRange::new(SERVICE_CIDR.0, SERVICE_CIDR.1),
            node_ports: NODE_PORT_RANGE,
        }
    }
}

impl Ranges {
    fn port_size(&self) -> u32 {
        u32::from(self.node_ports.1.saturating_sub(self.node_ports.0)) + 1
    }

    /// Allocates `want` (a user-requested address) or any free address.
    pub async fn allocate_ip(
        &self,
        store: &dyn Store,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, AllocError> {
        let r = self.ips;
        let off = match want {
            Some(ip) => Some(r.offset(ip).ok_or_else(|| AllocError::IpOutOfRange {
                ip: ip.to_string(),
                range: r.cidr(),
            })?),
            None => None,
        };
        let random: u32 = rand::random();
        let got = modify(store, IPS, &r.cidr(), r.size(), |map| {
            let o = match off {
                Some(o) if map.has(o) => return Err(AllocError::IpTaken),
                Some(o) => o,
                None => r.pick(map, random).ok_or(AllocError::Full)?,
            };
            map.set(o);
            Ok(o)
        })
        .await?;
        Ok(r.ip(got))
    }

    pub async fn release_ip(&self, store: &dyn Store, ip: Ipv4Addr) -> Result<(), AllocError> {
        let r = self.ips;
        let Some(off) = r.offset(ip) else {
            return Ok(());
        };
        modify(store, IPS, &r.cidr(), r.size(), |map| {
            map.clear(off);
            Ok(())
        })
        .await
    }

    pub async fn allocate_port(
        &self,
        store: &dyn Store,
        want: Option<u16>,
    ) -> Result<u16, AllocError> {
        let (lo, hi) = self.node_ports;
        let off = match want {
            Some(p) if (lo..=hi).contains(&p) => Some(u32::from(p - lo)),
            Some(_) => return Err(AllocError::PortOutOfRange { lo, hi }),
            None => None,
        };
        let size = self.port_size();
        let random: u32 = rand::random();
        let got = modify(store, PORTS, &format!("{lo}-{hi}"), size, |map| {
            let o = match off {
                Some(o) if map.has(o) => return Err(AllocError::PortTaken),
                Some(o) => o,
                None => map
                    .first_free(0, size, random % size)
                    .ok_or(AllocError::Full)?,
            };
            map.set(o);
            Ok(o)
        })
        .await?;
        // got < size <= 65536 - lo, so the sum fits.
        Ok(lo.saturating_add(got as u16))
    }

    pub async fn release_port(&self, store: &dyn Store, port: u16) -> Result<(), AllocError> {
        let (lo, hi) = self.node_ports;
        if !(lo..=hi).contains(&port) {
            return Ok(());
        }
        let size = self.port_size();
        modify(store, PORTS, &format!("{lo}-{hi}"), size, |map| {
            map.clear(u32::from(port - lo));
            Ok(())
        })
        .await
    }

    /// Rebuilds both bitmaps from `services` (every stored Service). Run before serving.
    /// With [`Repair::KeepTaken`] (a store other API servers write to) it only adds what the
    /// Services hold: another server may have allocated an address whose Service it has not
    /// written yet, and freeing that would hand the address out twice.
    pub async fn repair(
        &self,
        store: &dyn Store,
        services: &[Value],
        mode: Repair,
    ) -> Result<(), AllocError> {
        let r = self.ips;
        let mut ips = Bitmap::new(r.size());
        let (lo, hi) = self.node_ports;
        let mut ports = Bitmap::new(self.port_size());
        for svc in services {
            for ip in cluster_ips(svc) {
                if let Some(o) = r.offset(ip) {
                    ips.set(o);
                }
            }
            for p in node_ports(svc) {
                if (lo..=hi).contains(&p) {
                    ports.set(u32::from(p - lo));
                }
            }
        }
        let apply = |m: &mut Bitmap, held: &Bitmap| match mode {
            Repair::Rebuild => *m = held.clone(),
            Repair::KeepTaken => {
                for o in held.offsets() {
                    m.set(o);
                }
            }
        };
        modify(store, IPS, &r.cidr(), r.size(), |m| {
            apply(m, &ips);
            Ok(())
        })
        .await?;
        modify(store, PORTS, &format!("{lo}-{hi}"), self.port_size(), |m| {
            apply(m, &ports);
            Ok(())
        })
        .await
    }
}

/// What a start-up repair may do to the stored bitmaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// This server is the store's only writer (the embedded store): rebuild, which also
    /// reclaims addresses leaked by a crash between allocation and the Service write.
    Rebuild,
    /// Other API servers share the store: only add what Services hold, never free.
    KeepTaken,
}

/// The IPv4 ClusterIPs a Service holds (none for headless and ExternalName).
pub fn cluster_ips(svc: &Value) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = svc
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|s| s.parse().ok())
        .collect();
    if let Some(ip) = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
    {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// The node ports a Service holds.
pub fn node_ports(svc: &Value) -> Vec<u16> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter_map(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .collect()
}

fn svc_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
}

fn field_error(field: &str, value: &str, why: &str) -> FieldError {
    FieldError {
        field: field.to_string(),
        reason: CauseReason::FieldValueInvalid,
        message: format!("{field}: Invalid value: {value}: {why}"),
    }
}

/// What one Service write took from the ranges, so a failed write can give it back.
#[derive(Debug, Default)]
pub struct Taken {
    pub ips: Vec<Ipv4Addr>,
    pub ports: Vec<u16>,
}

/// Allocation failures become the 422 kube-apiserver answers (`spec.clusterIPs` or
/// `spec.ports[i].nodePort`), store failures a 500.
#[derive(Debug)]
pub enum AllocFailure {
    Invalid(Vec<FieldError>),
    Store(StoreError),
}

impl Ranges {
    /// Fills `spec.clusterIP(s)`, `ipFamilies`, `ipFamilyPolicy` and node ports of a new
    /// Service (or of an updated one, given `old`), allocating what it newly needs.
    /// On error nothing stays allocated.
    pub async fn allocate_for(
        &self,
        store: &dyn Store,
        old: Option<&Value>,
        svc: &mut Value,
    ) -> Result<Taken, AllocFailure> {
        let mut taken = Taken::default();
        let res = self.allocate_inner(store, old, svc, &mut taken).await;
        if let Err(e) = res {
            self.release(store, &taken).await;
            return Err(e);
        }
        Ok(taken)
    }

    async fn allocate_inner(
        &self,
        store: &dyn Store,
        old: Option<&Value>,
        svc: &mut Value,
        taken: &mut Taken,
    ) -> Result<(), AllocFailure> {
        let fail = |field: &str, value: String, e: AllocError| match e {
            AllocError::Store(s) => AllocFailure::Store(s),
            e => AllocFailure::Invalid(vec![field_error(field, &value, &e.to_string())]),
        };
        // Upstream words a refused ClusterIP "failed to allocate IP <ip>: <why>".
        let fail_ip = |ip: Ipv4Addr, e: AllocError| match e {
            AllocError::Store(s) => AllocFailure::Store(s),
            e => AllocFailure::Invalid(vec![field_error(
                "spec.clusterIPs",
                &format!("[]string{{\"{ip}\"}}"),
                &format!("failed to allocate IP {ip}: {e}"),
            )]),
        };
        if svc_type(svc) == "ExternalName" {
            return Ok(());
        }
        let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        // Updates that omit the address keep it (upstream's PrepareForUpdate carries
        // clusterIP, clusterIPs and ipFamilies over).
        if let Some(old_spec) = old.and_then(|o| o.get("spec")) {
            for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                let empty = match spec.get(k) {
                    None | Some(Value::Null) => true,
                    Some(Value::String(s)) => s.is_empty(),
                    Some(Value::Array(a)) => a.is_empty(),
                    Some(_) => false,
                };
                if empty {
                    if let Some(v) = old_spec.get(k) {
                        spec.insert(k.to_string(), v.clone());
                    }
                }
            }
        }
        let requested = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .or_else(|| spec.get("clusterIP").and_then(Value::as_str))
            .unwrap_or("")
            .to_string();
        let old_ips: Vec<Ipv4Addr> = old.map(cluster_ips).unwrap_or_default();
        if requested == "None" {
            spec.insert("clusterIP".into(), json!("None"));
            spec.insert("clusterIPs".into(), json!(["None"]));
        } else {
            let ip = if requested.is_empty() {
                let ip = self
                    .allocate_ip(store, None)
                    .await
                    .map_err(|e| fail("spec.clusterIPs", "[]".into(), e))?;
                taken.ips.push(ip);
                ip
            } else {
                let ip: Ipv4Addr = requested.parse().map_err(|_| {
                    AllocFailure::Invalid(vec![FieldError {
                        field: "spec.clusterIPs[0]".into(),
                        reason: CauseReason::FieldValueInvalid,
                        message: format!(
                            "spec.clusterIPs[0]: Invalid value: \"{requested}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
                        ),
                    }])
                })?;
                if !old_ips.contains(&ip) {
                    self.allocate_ip(store, Some(ip))
                        .await
                        .map_err(|e| fail_ip(ip, e))?;
                    taken.ips.push(ip);
                }
                ip
            };
            spec.insert("clusterIP".into(), json!(ip.to_string()));
            spec.insert("clusterIPs".into(), json!([ip.to_string()]));
        }
        if spec.get("ipFamilies").is_none_or(Value::is_null) {
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
        }
        if spec.get("ipFamilyPolicy").is_none_or(Value::is_null) {
            spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
        }
        let wants = wants_node_ports(svc);
        let old_ports: Vec<u16> = old.map(node_ports).unwrap_or_default();
        let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        for (i, p) in ports.iter_mut().enumerate() {
            let Some(p) = p.as_object_mut() else { continue };
            if !wants {
                // A ClusterIP Service has no node ports (upstream clears them on a type
                // change).
                p.remove("nodePort");
                continue;
            }
            let field = format!("spec.ports[{i}].nodePort");
            let want = p
                .get("nodePort")
                .and_then(Value::as_u64)
                .filter(|n| *n != 0);
            let port = match want {
                Some(n) => {
                    let n = u16::try_from(n).map_err(|_| {
                        fail(
                            &field,
                            n.to_string(),
                            AllocError::PortOutOfRange {
                                lo: self.node_ports.0,
                                hi: self.node_ports.1,
                            },
                        )
                    })?;
                    if !old_ports.contains(&n) && !taken.ports.contains(&n) {
                        self.allocate_port(store, Some(n))
                            .await
                            .map_err(|e| fail(&field, n.to_string(), e))?;
                        taken.ports.push(n);
                    }
                    n
                }
                None => {
                    let n = self
                        .allocate_port(store, None)
                        .await
                        .map_err(|e| fail(&field, "0".into(), e))?;
                    taken.ports.push(n);
                    n
                }
            };
            p.insert("nodePort".into(), json!(port));
        }
        Ok(())
    }

    /// Gives back what `taken` holds (a write that failed after allocating).
    pub async fn release(&self, store: &dyn Store, taken: &Taken) {
        for ip in &taken.ips {
            if let Err(e) = self.release_ip(store, *ip).await {
                tracing::warn!(%ip, error = %e, "releasing a ClusterIP failed; repair at next start reclaims it");
            }
        }
        for p in &taken.ports {
            if let Err(e) = self.release_port(store, *p).await {
                tracing::warn!(port = p, error = %e, "releasing a node port failed; repair at next start reclaims it");
            }
        }
    }

    /// After `old` became `new` (or was deleted: `new` is None), releases what only `old`
    /// held.
    pub async fn release_dropped(&self, store: &dyn Store, old: &Value, new: Option<&Value>) {
        let keep_ips = new.map(cluster_ips).unwrap_or_default();
        let keep_ports = new.map(node_ports).unwrap_or_default();
        let dropped = Taken {
            ips: cluster_ips(old)
                .into_iter()
                .filter(|ip| !keep_ips.contains(ip))
                .collect(),
            ports: node_ports(old)
                .into_iter()
                .filter(|p| !keep_ports.contains(p))
                .collect(),
        };
        self.release(store, &dropped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store::RedbStore::open(&dir.path().join("s.redb"))
            .await
            .expect("open");
        (dir, Arc::new(s))
    }

    #[test]
    fn bitmap_finds_free_and_wraps() {
        let mut b = Bitmap::new(10);
        for i in 0..10 {
            if i != 3 {
                b.set(i);
            }
        }
        assert_eq!(b.first_free(0, 10, 7), Some(3));
        b.set(3);
        assert_eq!(b.first_free(0, 10, 0), None);
        b.clear(5);
        assert!(!b.has(5));
        assert!(!b.has(99));
        let taken: Vec<u32> = b.offsets().collect();
        assert_eq!(taken, [0, 1, 2, 3, 4, 6, 7, 8, 9]);
        assert_eq!(
            Bitmap::from_offsets(10, taken.iter().copied().chain([10, 99])),
            b
        );
    }

    #[test]
    fn ip_range_offsets_skip_network_and_broadcast() {
        let r = IpRange::new(Ipv4Addr::new(10, 96, 3, 4), 12);
        assert_eq!(r.cidr(), "10.96.0.0/12");
        assert_eq!(r.size(), 1 << 20);
        assert_eq!(r.offset(Ipv4Addr::new(10, 96, 0, 0)), None);
        assert_eq!(r.offset(Ipv4Addr::new(10, 111, 255, 255)), None);
        assert_eq!(r.offset(Ipv4Addr::new(10, 96, 0, 10)), Some(10));
        assert_eq!(r.offset(Ipv4Addr::new(10, 112, 0, 1)), None);
        assert_eq!(r.ip(10), Ipv4Addr::new(10, 96, 0, 10));
    }

    #[test]
    fn dynamic_picks_avoid_the_static_band_until_full() {
        let r = IpRange::new(Ipv4Addr::new(10, 0, 0, 0), 24); // band = 16
        let mut used = Bitmap::new(r.size());
        for _ in 0..(254 - 15) {
            let o = r.pick(&used, 7).expect("free");
            assert!(o >= 16, "{o}");
            used.set(o);
        }
        let o = r.pick(&used, 7).expect("low band");
        assert!((1..16).contains(&o));
    }

    #[tokio::test]
    async fn allocates_requested_and_rejects_taken_or_foreign() {
        let (_d, s) = store().await;
        let r = Ranges::default();
        assert_eq!(
            r.allocate_ip(s.as_ref(), Some(DNS_SERVICE_IP))
                .await
                .expect("dns"),
            DNS_SERVICE_IP
        );
        assert!(matches!(
            r.allocate_ip(s.as_ref(), Some(DNS_SERVICE_IP)).await,
            Err(AllocError::IpTaken)
        ));
        let e = r
            .allocate_ip(s.as_ref(), Some(Ipv4Addr::new(192, 168, 0, 1)))
            .await
            .expect_err("outside");
        assert_eq!(e.to_string(), "provided IP (192.168.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12");
        let a = r.allocate_ip(s.as_ref(), None).await.expect("any");
        assert_ne!(a, DNS_SERVICE_IP);
        r.release_ip(s.as_ref(), DNS_SERVICE_IP)
            .await
            .expect("release");
        r.allocate_ip(s.as_ref(), Some(DNS_SERVICE_IP))
            .await
            .expect("again");
        // Two addresses taken: the stored allocation is a few bytes, not the range's bits.
        let stored = s.get(&range_key(IPS)).await.expect("stored");
        assert_eq!(stored["offsets"].as_array().map(Vec::len), Some(2));
        assert!(stored.to_string().len() < 300, "{stored}");
    }

    #[tokio::test]
    async fn node_ports_allocate_in_range() {
        let (_d, s) = store().await;
        let r = Ranges::default();
        assert_eq!(
            r.allocate_port(s.as_ref(), Some(30080)).await.expect("p"),
            30080
        );
        assert!(matches!(
            r.allocate_port(s.as_ref(), Some(30080)).await,
            Err(AllocError::PortTaken)
        ));
        assert!(matches!(
            r.allocate_port(s.as_ref(), Some(80)).await,
            Err(AllocError::PortOutOfRange { .. })
        ));
        let p = r.allocate_port(s.as_ref(), None).await.expect("any");
        assert!((30000..=32767).contains(&p) && p != 30080);
    }

    #[tokio::test]
    async fn service_allocation_headless_nodeport_and_update() {
        let (_d, s) = store().await;
        let r = Ranges::default();
        let mut headless = json!({"spec": {"clusterIP": "None", "ports": [{"port": 80}]}});
        let t = r
            .allocate_for(s.as_ref(), None, &mut headless)
            .await
            .expect("headless");
        assert!(t.ips.is_empty());
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));

        let mut np = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81, "nodePort": 31000}]}});
        let t = r.allocate_for(s.as_ref(), None, &mut np).await.expect("np");
        assert_eq!(t.ips.len(), 1);
        assert_eq!(np["spec"]["ports"][1]["nodePort"], 31000);
        assert!(np["spec"]["ports"][0]["nodePort"].as_u64().is_some());
        assert_eq!(np["spec"]["ipFamilies"], json!(["IPv4"]));

        // An update that omits the address keeps it and allocates nothing new.
        let mut upd =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 81, "nodePort": 31000}]}});
        let t2 = r
            .allocate_for(s.as_ref(), Some(&np), &mut upd)
            .await
            .expect("update");
        assert!(t2.ips.is_empty() && t2.ports.is_empty());
        assert_eq!(upd["spec"]["clusterIP"], np["spec"]["clusterIP"]);
        r.release_dropped(s.as_ref(), &np, Some(&upd)).await;
        let dropped = np["spec"]["ports"][0]["nodePort"].as_u64().expect("port") as u16;
        assert_eq!(
            r.allocate_port(s.as_ref(), Some(dropped))
                .await
                .expect("freed"),
            dropped
        );

        // A second Service asking for a held port fails with the field named and keeps
        // nothing.
        let mut clash =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 1, "nodePort": 31000}]}});
        match r.allocate_for(s.as_ref(), None, &mut clash).await {
            Err(AllocFailure::Invalid(c)) => assert_eq!(
                c[0].message,
                "spec.ports[0].nodePort: Invalid value: 31000: provided port is already allocated"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_shared_store_repair_never_frees_what_another_server_allocated() {
        let (_d, s) = store().await;
        let r = Ranges::default();
        // Allocated by another server whose Service is not written yet.
        let pending = r.allocate_ip(s.as_ref(), None).await.expect("allocate");
        let svc = json!({"spec": {"clusterIP": "10.96.0.10"}});
        r.repair(s.as_ref(), &[svc], Repair::KeepTaken)
            .await
            .expect("repair");
        for taken in [pending, DNS_SERVICE_IP] {
            assert!(matches!(
                r.allocate_ip(s.as_ref(), Some(taken)).await,
                Err(AllocError::IpTaken)
            ));
        }
    }

    #[tokio::test]
    async fn repair_rebuilds_from_services() {
        let (_d, s) = store().await;
        let r = Ranges::default();
        let leaked = r.allocate_ip(s.as_ref(), None).await.expect("leak");
        let svc = json!({"spec": {"clusterIP": "10.96.0.10", "ports": [{"nodePort": 30001}]}});
        r.repair(s.as_ref(), &[svc], Repair::Rebuild)
            .await
            .expect("repair");
        assert_eq!(
            r.allocate_ip(s.as_ref(), Some(leaked))
                .await
                .expect("reclaimed"),
            leaked
        );
        assert!(matches!(
            r.allocate_ip(s.as_ref(), Some(DNS_SERVICE_IP)).await,
            Err(AllocError::IpTaken)
        ));
        assert!(matches!(
            r.allocate_port(s.as_ref(), Some(30001)).await,
            Err(AllocError::PortTaken)
        ));
    }
}
