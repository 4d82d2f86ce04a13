//! Which backend to open, parsed from one flag value (`redb:PATH`) at the edge, so the rest of
//! the program passes a typed spec and a new backend is one more scheme here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The schemes [`StoreSpec`] understands, for error messages.
const KNOWN_SCHEMES: &str = "redb";

/// A backend and where it keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The embedded store: one `redb` file.
    Redb { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("store {spec:?} names no backend: expected SCHEME:LOCATION, e.g. redb:/var/lib/peapod/store.redb")]
    MissingScheme { spec: String },
    #[error("unknown store backend {scheme:?} (known: {KNOWN_SCHEMES})")]
    UnknownScheme { scheme: String },
    #[error("store backend {scheme:?} needs a location after the colon")]
    EmptyLocation { scheme: String },
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
            other => Err(SpecError::UnknownScheme {
                scheme: other.to_string(),
            }),
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Redb { path } => write!(f, "redb:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redb_and_rejects_the_rest() {
        assert_eq!(
            "redb:/var/lib/peapod/store.redb".parse(),
            Ok(StoreSpec::Redb {
                path: PathBuf::from("/var/lib/peapod/store.redb")
            })
        );
        assert_eq!(
            "etcd:http://127.0.0.1:2379".parse::<StoreSpec>(),
            Err(SpecError::UnknownScheme {
                scheme: "etcd".into()
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
