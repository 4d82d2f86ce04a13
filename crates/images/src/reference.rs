//! Image reference parsing and normalisation, as Docker and the kubelet spell references:
//! `busybox` means `docker.io/library/busybox:latest`, and the first path component is a
//! registry only when it looks like a host (has a `.` or `:`, or is `localhost`).

use std::net::IpAddr;

/// The registry that short names resolve to, as Docker does.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Where the Docker Hub's distribution API actually lives.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `127.0.0.1:5000`, `quay.io` …
    pub registry: String,
    /// `library/busybox`, `team/app` …
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

/// Why a reference string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference {reference:?} is empty")]
    Empty { reference: String },
    #[error("reference {reference:?} has an invalid repository name {name:?} (lowercase letters, digits and separators only)")]
    InvalidName { reference: String, name: String },
    #[error("reference {reference:?} has an invalid tag {tag:?}")]
    InvalidTag { reference: String, tag: String },
    #[error("reference {reference:?} has an invalid digest {digest:?} (only sha256:<64 hex> is supported)")]
    InvalidDigest { reference: String, digest: String },
    #[error("reference {reference:?} has an invalid registry host {host:?}")]
    InvalidHost { reference: String, host: String },
}

impl Reference {
    /// Parses and normalises a reference; a reference with neither tag nor digest gets `latest`.
    pub fn parse(reference: &str) -> Result<Self, ReferenceError> {
        let input = reference.trim();
        if input.is_empty() {
            return Err(ReferenceError::Empty {
                reference: reference.to_owned(),
            });
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (input, None),
        };
        if let Some(d) = digest {
            if !is_valid_digest(d) {
                return Err(ReferenceError::InvalidDigest {
                    reference: reference.to_owned(),
                    digest: d.to_owned(),
                });
            }
        }
        // A tag is the part after the last ':' provided no '/' follows it (else it is a port).
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(i) if !name_and_tag[i + 1..].contains('/') => {
                (&name_and_tag[..i], Some(&name_and_tag[i + 1..]))
            }
            _ => (name_and_tag, None),
        };
        if let Some(t) = tag {
            if !is_valid_tag(t) {
                return Err(ReferenceError::InvalidTag {
                    reference: reference.to_owned(),
                    tag: t.to_owned(),
                });
            }
        }
        let (mut registry, mut repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        if !is_valid_host(&registry) {
            return Err(ReferenceError::InvalidHost {
                reference: reference.to_owned(),
                host: registry,
            });
        }
        if registry == "index.docker.io" || registry == DOCKER_HUB_API_HOST {
            registry = DEFAULT_REGISTRY.to_owned();
        }
        if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if !is_valid_repository(&repository) {
            return Err(ReferenceError::InvalidName {
                reference: reference.to_owned(),
                name: repository,
            });
        }
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_owned()),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_owned),
        })
    }

    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag`, when the reference has a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `registry/repository@digest` for a given manifest digest.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    /// Host (and port) to open connections to: the Docker Hub's API host for `docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// Whether the registry may be spoken to over plain HTTP: only loopback, as Docker allows
    /// by default (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn allows_plain_http(&self) -> bool {
        is_loopback_host(&self.registry)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Strips the port from `host[:port]` / `[v6]:port` and says whether the host is loopback.
pub fn is_loopback_host(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match registry.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => registry,
        }
    };
    if host == "localhost" {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `sha256:` followed by exactly 64 lowercase hex digits. Digests become file names, so this is
/// strict on purpose.
pub fn is_valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn is_valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn is_valid_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (
                    None,
                    tail.strip_prefix(':')
                        .map(Some)
                        .unwrap_or(if tail.is_empty() { None } else { Some("") }),
                )
            }
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(host), None),
        }
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = name.is_none_or(|n| {
        n.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    });
    port_ok && name_ok
}

/// Distribution spec: path components of `[a-z0-9]+` joined by `.`, `_`, `__` or `-`s.
fn is_valid_repository(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|component| {
            let b = component.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
                && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
                && b.iter().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s)
            .map(|r| r.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("team/app:v1"), "docker.io/team/app:v1");
        assert_eq!(
            norm("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox:latest"
        );
        assert_eq!(norm("localhost/a/b:t"), "localhost/a/b:t");
        assert_eq!(norm("quay.io/x/y:1"), "quay.io/x/y:1");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "busybox@sha256:abc",
            "busybox@md5:aaaa",
            "busybox:-x",
            "a//b",
            "../x",
            "busybox@sha256:../../../../etc/passwd",
            "ex ample.com/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn loopback_detection() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.evil.com",
            "128.0.0.1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn docker_hub_api_host() {
        let r = Reference::parse("busybox").expect("valid");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert!(!r.allows_plain_http());
        let r = Reference::parse("127.0.0.1:5000/x").expect("valid");
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        assert!(r.allows_plain_http());
    }
}
