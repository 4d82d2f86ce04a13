//! Which backend to open, parsed from one flag value (`redb:PATH`, `etcd:URL,URL`) at the
//! edge, so the rest of the program passes a typed spec and a new backend is one more scheme
//! here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The schemes [`StoreSpec`] understands, for error messages.
const KNOWN_SCHEMES: &str = "redb, etcd";

/// A backend and where it keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The embedded store: one `redb` file.
    Redb { path: PathBuf },
    /// An etcd cluster, by its members' client URLs (`https://H:2379`; `http://` for a
    /// member on loopback). Client TLS files come from their own flags.
    Etcd { endpoints: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("store {spec:?} names no backend: expected SCHEME:LOCATION, e.g. redb:/var/lib/peapod/store.redb")]
    MissingScheme { spec: String },
    #[error("unknown store backend {scheme:?} (known: {KNOWN_SCHEMES})")]
    UnknownScheme { scheme: String },
    #[error("store backend {scheme:?} needs a location after the colon")]
    EmptyLocation { scheme: String },
    #[error("etcd endpoint {endpoint:?} is not an http:// or https:// URL")]
    BadEndpoint { endpoint: String },
}

impl StoreSpec {
    /// The default: the embedded store as `store.redb` in `state_dir`.
    pub fn default_in(state_dir: &Path) -> Self {
        StoreSpec::Redb {
            path: state_dir.join("store.redb"),
        }
    }
}

impl FromStr for StoreSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((scheme, location)) = s.split_once(':') else {
            return Err(SpecError::MissingScheme {
                spec: s.to_string(),
            });
        };
        if location.is_empty() {
            return Err(SpecError::EmptyLocation {
                scheme: scheme.to_string(),
            });
        }
        match scheme {
            "redb" => Ok(StoreSpec::Redb {
                path: PathBuf::from(location),
            }),
            "etcd" => {
                let endpoints: Vec<String> = location.split(',').map(str::to_string).collect();
                if let Some(bad) = endpoints.iter().find(|e| !is_http_url(e)) {
                    return Err(SpecError::BadEndpoint {
                        endpoint: bad.clone(),
                    });
                }
                Ok(StoreSpec::Etcd { endpoints })
            }
            other => Err(SpecError::UnknownScheme {
                scheme: other.to_string(),
            }),
        }
    }
}

/// `http://HOST[:PORT]` or `https://HOST[:PORT]` with a host.
fn is_http_url(s: &str) -> bool {
    ["http://", "https://"]
        .iter()
        .filter_map(|scheme| s.strip_prefix(scheme))
        .any(|rest| !rest.is_empty() && !rest.starts_with(':') && !rest.contains(['/', ' ']))
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Redb { path } => write!(f, "redb:{}", path.display()),
            StoreSpec::Etcd { endpoints } => write!(f, "etcd:{}", endpoints.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_endpoints() {
        let spec: StoreSpec = "etcd:https://10.0.0.1:2379,https://10.0.0.2:2379"
            .parse()
            .expect("spec");
        assert_eq!(
            spec,
            StoreSpec::Etcd {
                endpoints: vec![
                    "https://10.0.0.1:2379".into(),
                    "https://10.0.0.2:2379".into()
                ]
            }
        );
        assert_eq!(spec.to_string().parse(), Ok(spec));
        assert_eq!(
            "etcd:http://127.0.0.1:2379".parse(),
            Ok(StoreSpec::Etcd {
                endpoints: vec!["http://127.0.0.1:2379".into()]
            })
        );
        for bad in [
            "etcd:10.0.0.1:2379",
            "etcd:https://",
            "etcd:http://a:1,",
            "etcd:https://a/x",
        ] {
            assert!(
                matches!(bad.parse::<StoreSpec>(), Err(SpecError::BadEndpoint { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_redb_and_rejects_the_rest() {
        assert_eq!(
            "redb:/var/lib/peapod/store.redb".parse(),
            Ok(StoreSpec::Redb {
                path: PathBuf::from("/var/lib/peapod/store.redb")
            })
        );
        assert_eq!(
            "consul:http://127.0.0.1:8500".parse::<StoreSpec>(),
            Err(SpecError::UnknownScheme {
                scheme: "consul".into()
            })
        );
        assert!(matches!(
            "/var/lib/peapod/store.redb".parse::<StoreSpec>(),
            Err(SpecError::MissingScheme { .. })
        ));
        assert!(matches!(
            "redb:".parse::<StoreSpec>(),
            Err(SpecError::EmptyLocation { .. })
        ));
        let spec = StoreSpec::Redb {
            path: PathBuf::from("/x/s.redb"),
        };
        assert_eq!(spec.to_string().parse(), Ok(spec));
    }
}
