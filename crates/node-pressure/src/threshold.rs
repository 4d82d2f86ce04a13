//! Eviction signals and thresholds: the KubeletConfiguration's `evictionHard` map
//! (`memory.available: "<100Mi"`, `nodefs.available: "<10%"`) and its defaults,
//! `evictionSoft` with `evictionSoftGracePeriod`, `evictionMinimumReclaim`, and whether an
//! observation meets a threshold.

use std::collections::BTreeMap;
use std::time::Duration;

use apimachinery::quantity::Quantity;

/// A signal the eviction manager watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodefsAvailable,
    NodefsInodesFree,
    ImagefsAvailable,
    ImagefsInodesFree,
}

/// The resource a signal's pressure is relieved of, as the eviction message names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Memory,
    EphemeralStorage,
    /// A filesystem's free inodes (the kubelet's `inodes`, not a pod resource).
    Inodes,
}

impl Resource {
    /// The resource name (`memory`, `ephemeral-storage`, `inodes`).
    pub fn name(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::EphemeralStorage => "ephemeral-storage",
            Resource::Inodes => "inodes",
        }
    }

    /// An amount of the resource as the kubelet prints it: bytes in binary units, inode
    /// counts in decimal ones.
    pub fn format(self, amount: u64) -> String {
        match self {
            Resource::Memory | Resource::EphemeralStorage => format_binary(amount),
            Resource::Inodes => format_decimal(amount),
        }
    }
}

impl Signal {
    /// The signal's name in `evictionHard`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
            Signal::ImagefsInodesFree => "imagefs.inodesFree",
        }
    }

    fn parse(name: &str) -> Option<Signal> {
        [
            Signal::MemoryAvailable,
            Signal::NodefsAvailable,
            Signal::NodefsInodesFree,
            Signal::ImagefsAvailable,
            Signal::ImagefsInodesFree,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// What evicting a pod reclaims for this signal.
    pub fn resource(self) -> Resource {
        match self {
            Signal::MemoryAvailable => Resource::Memory,
            Signal::NodefsAvailable | Signal::ImagefsAvailable => Resource::EphemeralStorage,
            Signal::NodefsInodesFree | Signal::ImagefsInodesFree => Resource::Inodes,
        }
    }

    /// Whether the node can reclaim for this signal itself before it evicts a pod, by
    /// deleting unused images (kubelet's `buildSignalToNodeReclaimFuncs`). Memory has no
    /// such reclaim. With a dedicated image filesystem only the `imagefs` signals have it
    /// (deleting images frees nothing on the node filesystem); otherwise the two
    /// filesystems are one and every disk signal has it.
    pub fn reclaims_images(self, dedicated_image_fs: bool) -> bool {
        match self {
            Signal::MemoryAvailable => false,
            Signal::NodefsAvailable | Signal::NodefsInodesFree => !dedicated_image_fs,
            Signal::ImagefsAvailable | Signal::ImagefsInodesFree => true,
        }
    }
}

/// A threshold's amount (or a minimum reclaim's): a quantity as written, or a fraction of
/// capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Quantity {
        amount: u64,
        text: String,
    },
    /// A threshold's is in `0.0..=1.0`; a minimum reclaim's is positive.
    Percent(f64),
}

impl Value {
    /// The amount in units of the signal for a node of `capacity` (kubelet's
    /// `GetThresholdQuantity`).
    pub fn amount(&self, capacity: u64) -> u64 {
        match self {
            Value::Quantity { amount, .. } => *amount,
            Value::Percent(p) => (capacity as f64 * p) as u64,
        }
    }
}

/// An eviction threshold: the signal is met while `available < value` (kubelet supports
/// only the `<` operator). A soft threshold acts only once it has been met for its grace
/// period; a hard one has none (kubelet tells them apart by a zero grace period).
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
    pub grace_period: Duration,
}

/// One observation of a signal: what is available out of what capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub available: u64,
    pub capacity: u64,
}

impl Threshold {
    /// The threshold in units of the signal for a node of `capacity`.
    pub fn amount(&self, capacity: u64) -> u64 {
        self.value.amount(capacity)
    }

    /// The threshold as the eviction message prints it: as written, or the percentage's
    /// amount as a binary quantity.
    pub fn text(&self, capacity: u64) -> String {
        match &self.value {
            Value::Quantity { text, .. } => text.clone(),
            Value::Percent(_) => format_binary(self.amount(capacity)),
        }
    }

    /// Whether `observed` meets the threshold.
    pub fn met(&self, observed: Observation) -> bool {
        self.met_reclaiming(observed, None)
    }

    /// Whether `observed` meets the threshold raised by `min_reclaim` (kubelet's
    /// `thresholdsMet` enforcing the minimum reclaim): a threshold that acted stays in force
    /// until the signal is back above it by the minimum reclaim.
    pub fn met_reclaiming(&self, observed: Observation, min_reclaim: Option<&Value>) -> bool {
        let extra = min_reclaim.map_or(0, |m| m.amount(observed.capacity));
        observed.available < self.amount(observed.capacity).saturating_add(extra)
    }

    /// kubelet's `isHardEvictionThreshold`: no grace period.
    pub fn is_hard(&self) -> bool {
        self.grace_period.is_zero()
    }
}

/// Why an `evictionHard`, `evictionSoft`, `evictionSoftGracePeriod` or
/// `evictionMinimumReclaim` entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThresholdError {
    #[error("unsupported eviction signal {0:?}")]
    UnknownSignal(String),
    #[error("{signal}: {value:?}: only the \"<\" operator is supported")]
    Operator { signal: String, value: String },
    #[error("{signal}: {value:?}: not a quantity or percentage")]
    Value { signal: String, value: String },
    #[error("{signal}: {value:?}: must be positive")]
    NotPositive { signal: String, value: String },
    #[error("{signal}: {value:?}: must be between 0% and 100%")]
    Percent { signal: String, value: String },
    #[error("{signal}: a soft threshold needs a grace period in evictionSoftGracePeriod")]
    NoGracePeriod { signal: String },
    #[error("evictionSoftGracePeriod: {signal}: {value:?}: not a non-negative duration")]
    GracePeriod { signal: String, value: String },
    #[error("evictionMinimumReclaim: {signal}: {value:?}: not a quantity or percentage")]
    MinimumReclaim { signal: String, value: String },
    #[error("evictionMinimumReclaim: {signal}: {value:?}: must not be negative")]
    NegativeMinimumReclaim { signal: String, value: String },
    #[error("evictionMinimumReclaim: {signal}: {value:?}: a percentage must be positive")]
    MinimumReclaimPercent { signal: String, value: String },
}

/// The defaults used when `evictionHard` is absent: the kubelet's Linux defaults, except
/// that the disk thresholds are 5 % (as k3s sets them) rather than the kubelet's 10 % of
/// `nodefs` and 15 % of `imagefs` (its inode thresholds are 5 % already). A small node on a large shared disk that is 90 % full
/// still runs pods; the full kubelet defaults are one `evictionHard` map away.
pub fn default_hard() -> Vec<Threshold> {
    let quantity = |amount, text: &str| Value::Quantity {
        amount,
        text: text.to_string(),
    };
    vec![
        (Signal::MemoryAvailable, quantity(100 << 20, "100Mi")),
        (Signal::NodefsAvailable, Value::Percent(0.05)),
        (Signal::NodefsInodesFree, Value::Percent(0.05)),
        (Signal::ImagefsAvailable, Value::Percent(0.05)),
        (Signal::ImagefsInodesFree, Value::Percent(0.05)),
    ]
    .into_iter()
    .map(|(signal, value)| Threshold {
        signal,
        value,
        grace_period: Duration::ZERO,
    })
    .collect()
}

fn signal(name: &str) -> Result<Signal, ThresholdError> {
    Signal::parse(name).ok_or_else(|| ThresholdError::UnknownSignal(name.to_string()))
}

/// Parses `evictionHard` as the kubelet does: every entry `<quantity` or `<N%`; a `0%`
/// threshold is disabled (left out); a zero or negative quantity is refused.
pub fn parse_hard(map: &BTreeMap<String, String>) -> Result<Vec<Threshold>, ThresholdError> {
    parse_thresholds(map)
}

/// Parses `evictionSoft` with `evictionSoftGracePeriod` as the kubelet does: the thresholds
/// as in `evictionHard`, each with its signal's grace period, which it must have; grace
/// periods are Go durations, not negative, and name known signals. A soft threshold with a
/// zero grace period acts at once, as a hard one (kubelet's rule).
pub fn parse_soft(
    thresholds: &BTreeMap<String, String>,
    grace_periods: &BTreeMap<String, String>,
) -> Result<Vec<Threshold>, ThresholdError> {
    let mut periods = BTreeMap::new();
    for (name, raw) in grace_periods {
        let period = apimachinery::duration::parse_go_duration(raw).ok_or_else(|| {
            ThresholdError::GracePeriod {
                signal: name.clone(),
                value: raw.clone(),
            }
        })?;
        periods.insert(signal(name)?, period);
    }
    let mut out = parse_thresholds(thresholds)?;
    for t in &mut out {
        t.grace_period = *periods
            .get(&t.signal)
            .ok_or_else(|| ThresholdError::NoGracePeriod {
                signal: t.signal.name().to_string(),
            })?;
    }
    Ok(out)
}

/// Parses `evictionMinimumReclaim` as the kubelet does (`parseMinimumReclaims`): known
/// signals only, each a quantity (zero allowed, not negative) or a positive percentage of
/// the signal's capacity. Written without the `<` of a threshold.
pub fn parse_minimum_reclaim(
    map: &BTreeMap<String, String>,
) -> Result<BTreeMap<Signal, Value>, ThresholdError> {
    let mut out = BTreeMap::new();
    for (name, raw) in map {
        let signal = signal(name)?;
        let err = |make: fn(String, String) -> ThresholdError| make(name.clone(), raw.clone());
        let value = raw.trim();
        let parsed = if let Some(pct) = value.strip_suffix('%') {
            let p: f64 = pct.trim().parse().map_err(|_| {
                err(|signal, value| ThresholdError::MinimumReclaim { signal, value })
            })?;
            // Nor NaN or infinity, which no signal could get above.
            if !p.is_finite() || p <= 0.0 {
                return Err(err(|signal, value| ThresholdError::MinimumReclaimPercent {
                    signal,
                    value,
                }));
            }
            Value::Percent(p / 100.0)
        } else {
            let q = Quantity::parse(value).ok_or_else(|| {
                err(|signal, value| ThresholdError::MinimumReclaim { signal, value })
            })?;
            if q.is_negative() {
                return Err(err(|signal, value| {
                    ThresholdError::NegativeMinimumReclaim { signal, value }
                }));
            }
            Value::Quantity {
                amount: u64::try_from(q.value()).unwrap_or(u64::MAX),
                text: value.to_string(),
            }
        };
        out.insert(signal, parsed);
    }
    Ok(out)
}

fn parse_thresholds(map: &BTreeMap<String, String>) -> Result<Vec<Threshold>, ThresholdError> {
    let mut out = Vec::new();
    for (name, raw) in map {
        let signal = signal(name)?;
        let err = |make: fn(String, String) -> ThresholdError| make(name.clone(), raw.clone());
        let value = raw
            .trim()
            .strip_prefix('<')
            .ok_or_else(|| err(|signal, value| ThresholdError::Operator { signal, value }))?
            .trim();
        if let Some(pct) = value.strip_suffix('%') {
            let p: f64 = pct
                .trim()
                .parse()
                .map_err(|_| err(|signal, value| ThresholdError::Value { signal, value }))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(err(|signal, value| ThresholdError::Percent {
                    signal,
                    value,
                }));
            }
            if p > 0.0 {
                out.push(Threshold {
                    signal,
                    value: Value::Percent(p / 100.0),
                    grace_period: Duration::ZERO,
                });
            }
            continue;
        }
        let q = Quantity::parse(value)
            .ok_or_else(|| err(|signal, value| ThresholdError::Value { signal, value }))?;
        if !q.is_positive() {
            return Err(err(|signal, value| ThresholdError::NotPositive {
                signal,
                value,
            }));
        }
        out.push(Threshold {
            signal,
            value: Value::Quantity {
                amount: u64::try_from(q.value()).unwrap_or(u64::MAX),
                text: value.to_string(),
            },
            grace_period: Duration::ZERO,
        });
    }
    Ok(out)
}

/// A byte count as `resource.Quantity` prints a binary-SI amount: the largest binary suffix
/// that divides it (`10Mi`, `1536Ki`), else the plain number.
pub fn format_binary(bytes: u64) -> String {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut value = bytes;
    let mut suffix = "";
    for s in SUFFIXES {
        if value == 0 || !value.is_multiple_of(1024) {
            break;
        }
        value /= 1024;
        suffix = s;
    }
    format!("{value}{suffix}")
}

/// A count as a decimal quantity prints it (`120k`, `3M`, `12345`).
pub fn format_decimal(count: u64) -> String {
    const SUFFIXES: [&str; 6] = ["k", "M", "G", "T", "P", "E"];
    let mut value = count;
    let mut suffix = "";
    for s in SUFFIXES {
        if value == 0 || !value.is_multiple_of(1000) {
            break;
        }
        value /= 1000;
        suffix = s;
    }
    format!("{value}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_quantities_and_percentages() {
        let t = parse_hard(&map(&[
            ("memory.available", "<1000Ti"),
            ("nodefs.available", "<10%"),
            ("imagefs.available", "<0%"),
        ]))
        .expect("parsed");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].signal, Signal::MemoryAvailable);
        assert_eq!(t[0].text(0), "1000Ti");
        assert_eq!(t[0].amount(0), 1000u64 << 40);
        assert_eq!(t[1].amount(1000), 100);
        assert_eq!(t[1].text(10 << 20), "1Mi");
    }

    #[test]
    fn refuses_bad_entries() {
        let one = |k: &str, v: &str| parse_hard(&map(&[(k, v)])).expect_err("refused");
        assert!(matches!(
            one("memory.free", "<1Gi"),
            ThresholdError::UnknownSignal(_)
        ));
        assert!(matches!(
            one("memory.available", ">1Gi"),
            ThresholdError::Operator { .. }
        ));
        assert!(matches!(
            one("memory.available", "<lots"),
            ThresholdError::Value { .. }
        ));
        assert!(matches!(
            one("memory.available", "<0"),
            ThresholdError::NotPositive { .. }
        ));
        assert!(matches!(
            one("nodefs.available", "<120%"),
            ThresholdError::Percent { .. }
        ));
    }

    #[test]
    fn soft_thresholds_need_their_grace_period() {
        let soft = parse_soft(
            &map(&[("memory.available", "<1Gi"), ("nodefs.available", "<0%")]),
            &map(&[("memory.available", "1m30s"), ("nodefs.inodesFree", "10s")]),
        )
        .expect("parsed");
        assert_eq!(soft.len(), 1);
        assert_eq!(soft[0].grace_period, Duration::from_secs(90));
        assert!(!soft[0].is_hard());
        assert!(parse_hard(&map(&[("memory.available", "<1Gi")])).expect("hard")[0].is_hard());
        let refused = |t: &[(&str, &str)], g: &[(&str, &str)]| {
            parse_soft(&map(t), &map(g)).expect_err("refused")
        };
        assert_eq!(
            refused(
                &[("memory.available", "<1Gi")],
                &[("nodefs.available", "1m")]
            ),
            ThresholdError::NoGracePeriod {
                signal: "memory.available".into()
            }
        );
        assert_eq!(
            refused(
                &[("memory.available", "<1Gi")],
                &[("memory.available", "-1s")]
            ),
            ThresholdError::GracePeriod {
                signal: "memory.available".into(),
                value: "-1s".into()
            }
        );
        assert!(matches!(
            refused(&[], &[("memory.free", "1m")]),
            ThresholdError::UnknownSignal(_)
        ));
        assert!(matches!(
            refused(
                &[("memory.available", ">1Gi")],
                &[("memory.available", "1m")]
            ),
            ThresholdError::Operator { .. }
        ));
        assert_eq!(
            ThresholdError::NoGracePeriod {
                signal: "memory.available".into()
            }
            .to_string(),
            "memory.available: a soft threshold needs a grace period in evictionSoftGracePeriod"
        );
    }

    #[test]
    fn minimum_reclaim_is_parsed_and_validated_as_the_kubelets() {
        let parsed = parse_minimum_reclaim(&map(&[
            ("imagefs.available", "2Gi"),
            ("nodefs.available", "5%"),
            ("imagefs.inodesFree", "0"),
            ("memory.available", "0Mi"),
        ]))
        .expect("parsed");
        assert_eq!(parsed.len(), 4);
        assert_eq!(parsed[&Signal::ImagefsAvailable].amount(0), 2 << 30);
        assert_eq!(parsed[&Signal::NodefsAvailable].amount(1000), 50);
        assert_eq!(parsed[&Signal::ImagefsInodesFree].amount(1000), 0);
        let refused = |k: &str, v: &str| parse_minimum_reclaim(&map(&[(k, v)])).expect_err(v);
        let unknown = refused("memory.free", "1Gi");
        assert_eq!(unknown, ThresholdError::UnknownSignal("memory.free".into()));
        assert_eq!(
            unknown.to_string(),
            "unsupported eviction signal \"memory.free\""
        );
        assert!(matches!(
            refused("nodefs.available", "-1Gi"),
            ThresholdError::NegativeMinimumReclaim { .. }
        ));
        assert!(matches!(
            refused("nodefs.available", "0%"),
            ThresholdError::MinimumReclaimPercent { .. }
        ));
        assert!(matches!(
            refused("nodefs.available", "-3%"),
            ThresholdError::MinimumReclaimPercent { .. }
        ));
        assert!(matches!(
            refused("nodefs.available", "NaN%"),
            ThresholdError::MinimumReclaimPercent { .. }
        ));
        assert!(matches!(
            refused("nodefs.available", "lots"),
            ThresholdError::MinimumReclaim { .. }
        ));
        // No operator: "<1Gi" is a threshold, not a reclaim.
        assert!(matches!(
            refused("nodefs.available", "<1Gi"),
            ThresholdError::MinimumReclaim { .. }
        ));
        assert_eq!(
            refused("nodefs.available", "-1Gi").to_string(),
            "evictionMinimumReclaim: nodefs.available: \"-1Gi\": must not be negative"
        );
    }

    #[test]
    fn a_minimum_reclaim_raises_the_threshold_it_must_get_back_above() {
        let t = &parse_hard(&map(&[("imagefs.available", "<10%")])).expect("hard")[0];
        let obs = |available| Observation {
            available,
            capacity: 1000,
        };
        let min = Value::Percent(0.05);
        assert!(t.met_reclaiming(obs(99), Some(&min)));
        assert!(t.met_reclaiming(obs(149), Some(&min)));
        assert!(!t.met_reclaiming(obs(150), Some(&min)));
        assert!(!t.met_reclaiming(obs(100), None));
        assert!(!t.met(obs(149)));
    }

    #[test]
    fn images_are_reclaimed_for_the_disk_signals_of_their_filesystem() {
        use Signal::*;
        for shared in [
            NodefsAvailable,
            NodefsInodesFree,
            ImagefsAvailable,
            ImagefsInodesFree,
        ] {
            assert!(shared.reclaims_images(false), "{shared:?}");
        }
        assert!(!MemoryAvailable.reclaims_images(false));
        assert!(!MemoryAvailable.reclaims_images(true));
        assert!(!NodefsAvailable.reclaims_images(true));
        assert!(!NodefsInodesFree.reclaims_images(true));
        assert!(ImagefsAvailable.reclaims_images(true));
        assert!(ImagefsInodesFree.reclaims_images(true));
        assert_eq!(
            parse_hard(&map(&[("imagefs.inodesFree", "<5%")])).expect("parsed")[0].signal,
            ImagefsInodesFree
        );
        assert_eq!(ImagefsInodesFree.resource(), Resource::Inodes);
        assert_eq!(NodefsInodesFree.resource(), Resource::Inodes);
        assert_eq!(NodefsAvailable.resource(), Resource::EphemeralStorage);
        assert!(default_hard()
            .iter()
            .any(|t| t.signal == ImagefsInodesFree && t.value == Value::Percent(0.05)));
    }

    #[test]
    fn met_only_below_the_threshold() {
        let t = &default_hard()[0];
        let obs = |available| Observation {
            available,
            capacity: 1 << 30,
        };
        assert!(t.met(obs((100 << 20) - 1)));
        assert!(!t.met(obs(100 << 20)));
        let disk = &default_hard()[1];
        assert!(disk.met(Observation {
            available: 4,
            capacity: 100
        }));
        assert!(!disk.met(Observation {
            available: 5,
            capacity: 100
        }));
    }

    #[test]
    fn formats_binary_quantities() {
        assert_eq!(format_binary(10 << 20), "10Mi");
        assert_eq!(format_binary(1536 * 1024), "1536Ki");
        assert_eq!(format_binary(1000), "1000");
        assert_eq!(format_binary(0), "0");
        assert_eq!(format_decimal(120_000), "120k");
        assert_eq!(format_decimal(3_000_000), "3M");
        assert_eq!(format_decimal(12_345), "12345");
        assert_eq!(format_decimal(0), "0");
    }
}
