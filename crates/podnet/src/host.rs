//! The node's routing table, VXLAN device and NAT, the one place this crate touches the host:
//! through the `ip`, `bridge` and `nft` commands of the network namespace the agent runs in. Routes are tagged with
//! their own protocol number so the node knows which routes are its and leaves all others
//! alone; masquerading lives in one nftables table that is replaced in one transaction.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use serde_json::Value;

use crate::routes::Route;
use crate::vxlan::{self, Local, Peer};

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
    #[error("reading the output of ip")]
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
    /// Whether `ip` is reached without a gateway (a direct neighbour).
    fn direct(&self, ip: Ipv4Addr) -> Result<bool, HostError>;
    /// Makes the VXLAN device match `local` (made or remade as needed), or removes it.
    fn vxlan_device(&self, local: Option<Local>) -> Result<(), HostError>;
    /// Gives the VXLAN device exactly these peers' neighbour and forwarding entries.
    fn vxlan_peers(&self, peers: &[Peer]) -> Result<(), HostError>;
}

/// The real host, through the `ip` and `nft` binaries.
#[derive(Debug, Clone)]
pub struct Commands {
    pub ip: PathBuf,
    pub bridge: PathBuf,
    pub nft: PathBuf,
}

impl Default for Commands {
    fn default() -> Self {
        Self {
            ip: PathBuf::from("ip"),
            bridge: PathBuf::from("bridge"),
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
            let vxlan = r.get("dev").and_then(Value::as_str) == Some(vxlan::DEVICE);
            Some(Route { dst, via, vxlan })
        })
        .collect())
}

/// Whether `ip -j route get` answered with a route without a gateway.
pub fn parse_direct(json: &[u8]) -> Result<bool, HostError> {
    let value: Value = serde_json::from_slice(json).map_err(HostError::Parse)?;
    Ok(value
        .as_array()
        .and_then(|a| a.first())
        .is_some_and(|r| r.get("gateway").is_none()))
}

/// The VTEP address (`local`) and MAC of the device in `ip -j -d link show`, if any.
pub fn parse_device(json: &[u8]) -> Result<Option<(String, String)>, HostError> {
    let value: Value = serde_json::from_slice(json).map_err(HostError::Parse)?;
    Ok(value.as_array().and_then(|a| a.first()).map(|d| {
        let local = d
            .pointer("/linkinfo/info_data/local")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mac = d
            .get("address")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        (local, mac)
    }))
}

/// The `dst` (neighbour) or `mac` (forwarding) keys of a device's entries, from
/// `ip -j neigh show` or `bridge -j fdb show`.
fn parse_keys(json: &[u8], key: &str) -> Result<Vec<String>, HostError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_slice(json).map_err(HostError::Parse)?;
    Ok(value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.get(key)?.as_str().map(str::to_string))
        .collect())
}

/// `ip route replace|del` of a route of ours: through a neighbour, or through a VTEP
/// address on the VXLAN device (`onlink`: the address is not on any of the node's links).
fn route_args(verb: &str, route: &Route) -> Vec<String> {
    let (dst, via, proto) = (
        route.dst.to_string(),
        route.via.to_string(),
        ROUTE_PROTO.to_string(),
    );
    let mut args = strings(&["-4", "route", verb, &dst, "via", &via]);
    if route.vxlan {
        args.extend(strings(&["dev", vxlan::DEVICE, "onlink"]));
    }
    args.extend(strings(&["proto", &proto]));
    args
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
        run(&self.ip, &route_args("replace", route), None).map(drop)
    }

    fn delete(&self, route: &Route) -> Result<(), HostError> {
        run(&self.ip, &route_args("del", route), None).map(drop)
    }

    fn direct(&self, ip: Ipv4Addr) -> Result<bool, HostError> {
        let out = run(
            &self.ip,
            &strings(&["-j", "-4", "route", "get", &ip.to_string()]),
            None,
        )?;
        parse_direct(&out)
    }

    fn vxlan_device(&self, local: Option<Local>) -> Result<(), HostError> {
        let shown = run(
            &self.ip,
            &strings(&["-j", "-d", "link", "show", "dev", vxlan::DEVICE]),
            None,
        );
        let existing = match shown {
            Ok(out) => parse_device(&out)?,
            Err(HostError::Failed { .. }) => None,
            Err(e) => return Err(e),
        };
        let Some(local) = local else {
            if existing.is_some() {
                run(&self.ip, &strings(&["link", "del", vxlan::DEVICE]), None)?;
            }
            return Ok(());
        };
        let mac = vxlan::vtep_mac(local.vtep);
        let wanted = (local.node_ip.to_string(), mac.clone());
        if existing.as_ref() != Some(&wanted) {
            if existing.is_some() {
                run(&self.ip, &strings(&["link", "del", vxlan::DEVICE]), None)?;
            }
            let (id, port, node_ip) = (
                vxlan::VNI.to_string(),
                vxlan::PORT.to_string(),
                local.node_ip.to_string(),
            );
            run(
                &self.ip,
                &strings(&[
                    "link",
                    "add",
                    vxlan::DEVICE,
                    "address",
                    &mac,
                    "type",
                    "vxlan",
                    "id",
                    &id,
                    "local",
                    &node_ip,
                    "dstport",
                    &port,
                    "nolearning",
                ]),
                None,
            )?;
        }
        let vtep = format!("{}/32", local.vtep);
        run(
            &self.ip,
            &strings(&["addr", "replace", &vtep, "dev", vxlan::DEVICE]),
            None,
        )?;
        run(
            &self.ip,
            &strings(&["link", "set", vxlan::DEVICE, "up"]),
            None,
        )
        .map(drop)
    }

    fn vxlan_peers(&self, peers: &[Peer]) -> Result<(), HostError> {
        for p in peers {
            let (vtep, node_ip) = (p.vtep.to_string(), p.node_ip.to_string());
            run(
                &self.ip,
                &strings(&[
                    "neigh",
                    "replace",
                    &vtep,
                    "lladdr",
                    &p.mac,
                    "dev",
                    vxlan::DEVICE,
                    "nud",
                    "permanent",
                ]),
                None,
            )?;
            run(
                &self.bridge,
                &strings(&[
                    "fdb",
                    "replace",
                    &p.mac,
                    "dev",
                    vxlan::DEVICE,
                    "dst",
                    &node_ip,
                    "self",
                    "permanent",
                ]),
                None,
            )?;
        }
        let neighbours = run(
            &self.ip,
            &strings(&["-j", "-4", "neigh", "show", "dev", vxlan::DEVICE]),
            None,
        )?;
        for dst in parse_keys(&neighbours, "dst")? {
            if !peers.iter().any(|p| p.vtep.to_string() == dst) {
                run(
                    &self.ip,
                    &strings(&["neigh", "del", &dst, "dev", vxlan::DEVICE]),
                    None,
                )?;
            }
        }
        let forwarding = run(
            &self.bridge,
            &strings(&["-j", "fdb", "show", "dev", vxlan::DEVICE]),
            None,
        )?;
        for mac in parse_keys(&forwarding, "mac")? {
            let ours = mac.starts_with("0e:5a:");
            if ours && !peers.iter().any(|p| p.mac == mac) {
                run(
                    &self.bridge,
                    &strings(&["fdb", "del", &mac, "dev", vxlan::DEVICE, "self"]),
                    None,
                )?;
            }
        }
        Ok(())
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
            {"dst":"10.244.3.0/24","gateway":"10.244.3.0","dev":"peapod-vxlan","protocol":"77","flags":["onlink"]},
            {"dst":"default","gateway":"192.0.2.254","dev":"eth0"}
        ]"#;
        let routes = parse_routes(json).expect("parse");
        assert_eq!(
            routes,
            [
                Route {
                    dst: "10.244.1.0/24".parse().expect("cidr"),
                    via: "192.0.2.2".parse().expect("ip"),
                    vxlan: false,
                },
                Route {
                    dst: "10.244.3.0/24".parse().expect("cidr"),
                    via: "10.244.3.0".parse().expect("ip"),
                    vxlan: true,
                }
            ]
        );
        assert!(parse_routes(b"").is_err());
        assert_eq!(
            route_args("replace", &routes[1]).join(" "),
            "-4 route replace 10.244.3.0/24 via 10.244.3.0 dev peapod-vxlan onlink proto 77"
        );
        assert_eq!(
            route_args("del", &routes[0]).join(" "),
            "-4 route del 10.244.1.0/24 via 192.0.2.2 proto 77"
        );
    }

    #[test]
    fn neighbours_devices_and_entries_are_read_from_ip_json() {
        let direct = br#"[{"dst":"192.0.2.2","dev":"eth0","prefsrc":"192.0.2.1","uid":0}]"#;
        assert!(parse_direct(direct).expect("parse"));
        let routed = br#"[{"dst":"198.51.100.3","gateway":"192.0.2.254","dev":"eth0"}]"#;
        assert!(!parse_direct(routed).expect("parse"));
        let link = br#"[{"ifname":"peapod-vxlan","address":"0e:5a:0a:f4:01:00",
            "linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"local":"192.0.2.1","port":8472}}}]"#;
        assert_eq!(
            parse_device(link).expect("parse"),
            Some(("192.0.2.1".to_string(), "0e:5a:0a:f4:01:00".to_string()))
        );
        let fdb = br#"[{"mac":"0e:5a:0a:f4:02:00","dst":"198.51.100.3","flags":["self"],"state":"permanent"}]"#;
        assert_eq!(
            parse_keys(fdb, "mac").expect("parse"),
            ["0e:5a:0a:f4:02:00"]
        );
        assert!(parse_keys(b"\n", "dst").expect("empty").is_empty());
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
