//! Reads a profile file in the OCI runtime-spec / docker JSON format (`defaultAction`,
//! `defaultErrnoRet`, `architectures` or `archMap`, `syscalls[names|name, action, errnoRet,
//! args[index, value, valueTwo, op], includes, excludes]`), the format kubelet's Localhost
//! profiles are written in, refusing anything peapod could not enforce as written.

use serde::Deserialize;

use crate::arch::KNOWN_ARCH_NAMES;
use crate::profile::{Action, ArgCond, Op, Profile, Rule, When};

/// EPERM: what `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` return when no errno is given.
const EPERM: u16 = 1;
/// The largest errno a filter can return (`MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;
/// System calls take at most six arguments.
const MAX_ARGS: u32 = 6;

/// Why a profile file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("not a seccomp profile: {0}")]
    Json(#[source] serde_json::Error),
    #[error("unknown action {action:?}")]
    UnknownAction { action: String },
    #[error("action {action} is not supported (no seccomp agent)")]
    Unsupported { action: String },
    #[error("unknown comparison operator {op:?}")]
    UnknownOperator { op: String },
    #[error("argument index {index} is out of range (0 to 5)")]
    ArgIndex { index: u32 },
    #[error("unknown architecture {arch:?}")]
    UnknownArch { arch: String },
    #[error("invalid minKernel {value:?} (want MAJOR.MINOR)")]
    MinKernel { value: String },
    #[error("errno {errno} is out of range (at most 4095)")]
    Errno { errno: u32 },
    #[error("syscalls[{entry}] names no system call")]
    NoNames { entry: usize },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<JsonArchMap>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    syscalls: Vec<JsonSyscall>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSyscall {
    #[serde(default)]
    names: Vec<String>,
    /// The older docker format's single name.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<JsonArg>,
    #[serde(default)]
    includes: Option<JsonWhen>,
    #[serde(default)]
    excludes: Option<JsonWhen>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonWhen {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

fn errno(value: Option<u32>) -> Result<u16, ProfileError> {
    match value {
        None => Ok(EPERM),
        Some(e) if e <= MAX_ERRNO => u16::try_from(e).map_err(|_| ProfileError::Errno { errno: e }),
        Some(e) => Err(ProfileError::Errno { errno: e }),
    }
}

fn action(name: &str, errno_ret: Option<u32>) -> Result<Action, ProfileError> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(errno(errno_ret)?),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_TRACE" => Action::Trace(errno(errno_ret)?),
        "SCMP_ACT_NOTIFY" => {
            return Err(ProfileError::Unsupported {
                action: name.to_string(),
            })
        }
        other => {
            return Err(ProfileError::UnknownAction {
                action: other.to_string(),
            })
        }
    })
}

fn arg(a: &JsonArg) -> Result<ArgCond, ProfileError> {
    let index = u8::try_from(a.index)
        .ok()
        .filter(|i| u32::from(*i) < MAX_ARGS)
        .ok_or(ProfileError::ArgIndex { index: a.index })?;
    let (op, value) = match a.op.as_str() {
        "SCMP_CMP_EQ" => (Op::Eq, a.value),
        "SCMP_CMP_NE" => (Op::Ne, a.value),
        "SCMP_CMP_LT" => (Op::Lt, a.value),
        "SCMP_CMP_LE" => (Op::Le, a.value),
        "SCMP_CMP_GE" => (Op::Ge, a.value),
        "SCMP_CMP_GT" => (Op::Gt, a.value),
        // libseccomp's masked compare: `value` is the mask, `valueTwo` the datum.
        "SCMP_CMP_MASKED_EQ" => (Op::MaskedEq { mask: a.value }, a.value_two),
        other => {
            return Err(ProfileError::UnknownOperator {
                op: other.to_string(),
            })
        }
    };
    Ok(ArgCond { index, op, value })
}

fn min_kernel(value: &str) -> Result<(u32, u32), ProfileError> {
    let bad = || ProfileError::MinKernel {
        value: value.to_string(),
    };
    let (major, minor) = value.split_once('.').ok_or_else(bad)?;
    Ok((
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

fn when(w: Option<&JsonWhen>) -> Result<When, ProfileError> {
    let Some(w) = w else {
        return Ok(When::default());
    };
    Ok(When {
        caps: w.caps.clone(),
        arches: w.arches.clone(),
        min_kernel: w.min_kernel.as_deref().map(min_kernel).transpose()?,
    })
}

/// Parses a profile file's bytes.
///
/// As runc does, an entry comparing the same argument more than once becomes one rule per
/// comparison (any may match); otherwise all of an entry's comparisons must hold. Names the
/// kernel does not know are skipped when the filter is built, so profiles written for newer
/// kernels still load. `flags` are not applied.
pub fn parse(bytes: &[u8]) -> Result<Profile, ProfileError> {
    let p: JsonProfile = serde_json::from_slice(bytes).map_err(ProfileError::Json)?;
    if p.listener_path.as_deref().is_some_and(|l| !l.is_empty()) {
        return Err(ProfileError::Unsupported {
            action: "listenerPath".to_string(),
        });
    }
    let arches = p
        .architectures
        .iter()
        .chain(p.arch_map.iter().map(|m| &m.architecture))
        .chain(p.arch_map.iter().flat_map(|m| &m.sub_architectures));
    for a in arches {
        if !KNOWN_ARCH_NAMES.contains(&a.as_str()) {
            return Err(ProfileError::UnknownArch { arch: a.clone() });
        }
    }
    let default_action = action(&p.default_action, p.default_errno_ret)?;
    let mut rules = Vec::new();
    for (entry, s) in p.syscalls.iter().enumerate() {
        let names: Vec<String> = s.names.iter().chain(&s.name).cloned().collect();
        if names.is_empty() {
            return Err(ProfileError::NoNames { entry });
        }
        let act = action(&s.action, s.errno_ret)?;
        let args = s.args.iter().map(arg).collect::<Result<Vec<_>, _>>()?;
        let includes = when(s.includes.as_ref())?;
        let excludes = when(s.excludes.as_ref())?;
        let repeats_an_index = args
            .iter()
            .enumerate()
            .any(|(i, a)| args[..i].iter().any(|b| b.index == a.index));
        let groups: Vec<Vec<ArgCond>> = if repeats_an_index {
            args.into_iter().map(|a| vec![a]).collect()
        } else {
            vec![args]
        };
        for args in groups {
            rules.push(Rule {
                names: names.clone(),
                action: act,
                args,
                includes: includes.clone(),
                excludes: excludes.clone(),
            });
        }
    }
    Ok(Profile {
        default_action,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_oci_format() {
        let p = parse(
            br#"{
              "defaultAction": "SCMP_ACT_ERRNO",
              "defaultErrnoRet": 38,
              "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
              "flags": ["SECCOMP_FILTER_FLAG_LOG"],
              "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "includes": {"arches": ["amd64"], "minKernel": "4.8"}}
              ]
            }"#,
        )
        .expect("profile");
        assert_eq!(p.default_action, Action::Errno(38));
        assert_eq!(p.rules.len(), 4);
        assert_eq!(p.rules[0].names, vec!["read", "write"]);
        assert_eq!(
            p.rules[2].args,
            vec![ArgCond {
                index: 0,
                op: Op::MaskedEq { mask: 0x7E02_0000 },
                value: 0
            }]
        );
        assert_eq!(p.rules[2].excludes.caps, vec!["CAP_SYS_ADMIN"]);
        assert_eq!(p.rules[3].action, Action::Errno(13));
        assert_eq!(p.rules[3].includes.min_kernel, Some((4, 8)));
    }

    #[test]
    fn docker_archmap_and_single_name() {
        let p = parse(
            br#"{"defaultAction": "SCMP_ACT_ALLOW",
                 "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
                 "syscalls": [{"name": "mkdir", "action": "SCMP_ACT_ERRNO"}]}"#,
        )
        .expect("profile");
        assert_eq!(p.default_action, Action::Allow);
        assert_eq!(p.rules[0].names, vec!["mkdir"]);
        assert_eq!(p.rules[0].action, Action::Errno(EPERM));
    }

    #[test]
    fn repeated_argument_means_any_of() {
        let p = parse(
            br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
                  {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
                {"names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [
                  {"index": 0, "value": 1, "op": "SCMP_CMP_GE"},
                  {"index": 1, "value": 2, "op": "SCMP_CMP_LT"}]}]}"#,
        )
        .expect("profile");
        assert_eq!(p.rules.len(), 3);
        assert_eq!(p.rules[0].args.len(), 1);
        assert_eq!(p.rules[1].args.len(), 1);
        assert_eq!(p.rules[2].args.len(), 2);
    }

    #[test]
    fn refuses_what_it_cannot_enforce() {
        let bad = |json: &str| parse(json.as_bytes()).expect_err(json).to_string();
        assert!(bad("not json").contains("not a seccomp profile"));
        assert!(bad(r#"{"syscalls": []}"#).contains("not a seccomp profile"));
        assert!(bad(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#).contains("unknown action"));
        assert!(bad(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#).contains("not supported"));
        assert!(
            bad(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"}"#)
                .contains("not supported")
        );
        assert!(
            bad(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}"#)
                .contains("out of range")
        );
        assert!(
            bad(r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#)
                .contains("unknown architecture")
        );
        assert!(bad(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#
        )
        .contains("index 6"));
        assert!(bad(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_SIMILAR"}]}]}"#
        )
        .contains("operator"));
        assert!(bad(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}"#
        )
        .contains("names no system call"));
        assert!(bad(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO",
                "includes": {"minKernel": "four"}}]}"#
        )
        .contains("minKernel"));
    }
}
