//! The node's routing table and NAT, the one place this crate touches the host: through the
//! `ip` and `nft` commands of the network namespace the agent runs in. Routes are tagged with
//! their own protocol number so the node knows which routes are its and leaves all others
//! alone; masquerading lives in one nftables table that is replaced in one transaction.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use serde_json::Value;

use crate::routes::Route;

/// The `proto` of the routes this node programs (an unassigned number in
/// `/etc/iproute2/rt_protos`); routes of any other protocol are never touched.
pub const ROUTE_PROTO: u8 = 77;
/// The nftables table (`ip` family) holding the pod network's masquerade rule.
pub const NAT_TABLE: &str = "peapod-podnet";

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("running {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} {args}: {stderr}")]
    Failed {
        program: PathBuf,
        args: String,
        stderr: String,
    },
    #[error("reading the output of ip route")]
    Parse(#[source] serde_json::Error),
}

/// What the sync needs of the host.
pub trait HostNet: Send + Sync {
    /// The routes of [`ROUTE_PROTO`].
    fn routes(&self) -> Result<Vec<Route>, HostError>;
    fn replace(&self, route: &Route) -> Result<(), HostError>;
    fn delete(&self, route: &Route) -> Result<(), HostError>;
    /// Masquerade what `pod_cidr` sends outside `cluster`; `None` removes the rule.
    fn masquerade(&self, rule: Option<(Ipv4Net, Ipv4Net)>) -> Result<(), HostError>;
}

/// The real host, through the `ip` and `nft` binaries.
#[derive(Debug, Clone)]
pub struct Commands {
    pub ip: PathBuf,
    pub nft: PathBuf,
}

impl Default for Commands {
    fn default() -> Self {
        Self {
            ip: PathBuf::from("ip"),
            nft: PathBuf::from("nft"),
        }
    }
}

fn run(program: &PathBuf, args: &[String], stdin: Option<&str>) -> Result<Vec<u8>, HostError> {
    let spawn = |source| HostError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(HostError::Failed {
            program: program.clone(),
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Routes out of `ip -j route show` (entries without a gateway or not IPv4 are skipped).
pub fn parse_routes(json: &[u8]) -> Result<Vec<Route>, HostError> {
    let value: Value = serde_json::from_slice(json).map_err(HostError::Parse)?;
    Ok(value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let dst = r.get("dst")?.as_str()?.parse::<Ipv4Net>().ok()?;
            let via = r.get("gateway")?.as_str()?.parse().ok()?;
            Some(Route { dst, via })
        })
        .collect())
}

/// The masquerade table's whole text: created empty, deleted, created again (so one `nft
/// -f` replaces it), with the rule when one is given.
pub fn nat_ruleset(rule: Option<(Ipv4Net, Ipv4Net)>) -> String {
    let mut out = format!("table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\n");
    if let Some((pods, cluster)) = rule {
        out.push_str(&format!(
            "table ip {NAT_TABLE} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {pods} ip daddr != {cluster} masquerade\n  }}\n}}\n"
        ));
    }
    out
}

impl HostNet for Commands {
    fn routes(&self) -> Result<Vec<Route>, HostError> {
        let proto = ROUTE_PROTO.to_string();
        let out = run(
            &self.ip,
            &strings(&["-j", "-4", "route", "show", "proto", &proto]),
            None,
        )?;
        parse_routes(&out)
    }

    fn replace(&self, route: &Route) -> Result<(), HostError> {
        let (dst, via, proto) = (
            route.dst.to_string(),
            route.via.to_string(),
            ROUTE_PROTO.to_string(),
        );
        run(
            &self.ip,
            &strings(&["-4", "route", "replace", &dst, "via", &via, "proto", &proto]),
            None,
        )
        .map(drop)
    }

    fn delete(&self, route: &Route) -> Result<(), HostError> {
        let (dst, via, proto) = (
            route.dst.to_string(),
            route.via.to_string(),
            ROUTE_PROTO.to_string(),
        );
        run(
            &self.ip,
            &strings(&["-4", "route", "del", &dst, "via", &via, "proto", &proto]),
            None,
        )
        .map(drop)
    }

    fn masquerade(&self, rule: Option<(Ipv4Net, Ipv4Net)>) -> Result<(), HostError> {
        run(&self.nft, &strings(&["-f", "-"]), Some(&nat_ruleset(rule))).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_read_from_ip_json() {
        let json = br#"[
            {"dst":"10.244.1.0/24","gateway":"192.0.2.2","dev":"eth0","protocol":"77","flags":["onlink"]},
            {"dst":"10.244.2.0/24","dev":"eth0","protocol":"77","flags":[]},
            {"dst":"default","gateway":"192.0.2.254","dev":"eth0"}
        ]"#;
        let routes = parse_routes(json).expect("parse");
        assert_eq!(
            routes,
            [Route {
                dst: "10.244.1.0/24".parse().expect("cidr"),
                via: "192.0.2.2".parse().expect("ip"),
            }]
        );
        assert!(parse_routes(b"").is_err());
    }

    #[test]
    fn the_nat_table_masquerades_only_what_leaves_the_pod_network() {
        let text = nat_ruleset(Some((
            "10.244.1.0/24".parse().expect("cidr"),
            "10.244.0.0/16".parse().expect("cidr"),
        )));
        assert_eq!(
            text,
            "table ip peapod-podnet\ndelete table ip peapod-podnet\ntable ip peapod-podnet {\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 masquerade\n  }\n}\n"
        );
        assert_eq!(
            nat_ruleset(None),
            "table ip peapod-podnet\ndelete table ip peapod-podnet\n"
        );
    }
}
