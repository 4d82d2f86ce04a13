//! Registry credentials from docker-style configurations, matched to images the way the
//! kubelet's credential keyring matches them: every `auths` key becomes a `host[:port][/path]`
//! pattern whose host labels may be globs (`*.example.com`); an image takes the credentials
//! of every key that matches it, most specific key first (keys in reverse lexical order, so
//! `reg.io/team` comes before `reg.io`), and Docker Hub images fall back to an
//! `index.docker.io` entry.

use std::collections::BTreeMap;

use base64::Engine as _;

/// A user name and password for a registry (CRI's `AuthConfig`).
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The two shapes a docker configuration comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `config.json` (and Secrets of type `kubernetes.io/dockerconfigjson`):
    /// `{"auths": {"<registry>": {...}}}`.
    ConfigJson,
    /// The legacy `.dockercfg` (Secrets of type `kubernetes.io/dockercfg`):
    /// `{"<registry>": {...}}`.
    Dockercfg,
}

/// Errors reading a docker-style configuration.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("reading the file")]
    Read(#[source] std::io::Error),
    #[error("parsing JSON")]
    Parse(#[source] serde_json::Error),
    #[error("auths entry for {registry} is not base64 of user:password")]
    BadAuth { registry: String },
}

#[derive(serde::Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The registry Docker Hub's credentials are filed under.
const HUB_HOST: &str = "index.docker.io";

/// Credentials by registry pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    /// Pattern (`host[:port][/path]`, no scheme) → credentials, in the order added.
    entries: BTreeMap<String, Vec<Credentials>>,
}

impl Keyring {
    /// Parses one docker configuration.
    pub fn parse(data: &[u8], format: ConfigFormat) -> Result<Self, CredentialsError> {
        let auths = match format {
            ConfigFormat::ConfigJson => {
                serde_json::from_slice::<ConfigJson>(data)
                    .map_err(CredentialsError::Parse)?
                    .auths
            }
            ConfigFormat::Dockercfg => serde_json::from_slice::<BTreeMap<String, Entry>>(data)
                .map_err(CredentialsError::Parse)?,
        };
        let mut keyring = Self::default();
        for (key, entry) in auths {
            let creds = entry.credentials(&key)?;
            keyring
                .entries
                .entry(pattern_of(&key))
                .or_default()
                .push(creds);
        }
        Ok(keyring)
    }

    /// Adds every entry of `other` after this keyring's own (kubelet adds one pull Secret
    /// after another into one keyring).
    pub fn extend(&mut self, other: Keyring) {
        for (k, v) in other.entries {
            self.entries.entry(k).or_default().extend(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The credentials to try for `repository` (`registry/path`, normalised: Hub images as
    /// `docker.io/library/busybox`), most specific pattern first.
    pub fn lookup(&self, repository: &str) -> Vec<Credentials> {
        let found: Vec<Credentials> = self
            .entries
            .iter()
            .rev()
            .filter(|(pattern, _)| pattern_matches(pattern, repository))
            .flat_map(|(_, creds)| creds.iter().cloned())
            .collect();
        if !found.is_empty() {
            return found;
        }
        if is_hub(repository) {
            if let Some(creds) = self.entries.get(HUB_HOST) {
                return creds.clone();
            }
        }
        Vec::new()
    }
}

impl Entry {
    /// `auth` (base64 of `user:password`) wins over `username`/`password`, as the kubelet
    /// decodes it.
    fn credentials(self, key: &str) -> Result<Credentials, CredentialsError> {
        let Some(auth) = self.auth.filter(|a| !a.trim().is_empty()) else {
            return Ok(Credentials {
                username: self.username.unwrap_or_default(),
                password: self.password.unwrap_or_default(),
            });
        };
        let bad = || CredentialsError::BadAuth {
            registry: key.to_owned(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
        Ok(Credentials {
            username: user.to_owned(),
            password: pass.to_owned(),
        })
    }
}

/// A key of `auths` as a pattern: scheme dropped, a `/v1/` or `/v2/` path counts as none
/// (Docker's `https://index.docker.io/v1/`), a trailing `/` dropped.
fn pattern_of(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let path = path
        .strip_prefix("/v1")
        .or_else(|| path.strip_prefix("/v2"))
        .filter(|p| p.is_empty() || p.starts_with('/'))
        .unwrap_or(path);
    let path = path.trim_end_matches('/');
    format!("{}{path}", host.to_ascii_lowercase())
}

/// Splits `host[:port][/path]` into its host, port and path (path with its leading `/`).
fn split(s: &str) -> (&str, &str, &str) {
    let (hostport, path) = match s.find('/') {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, ""));
    (host, port, path)
}

/// kubelet's URL match: the same number of host labels, each matching its glob; the same
/// port; the pattern's path a prefix of the image's.
fn pattern_matches(pattern: &str, repository: &str) -> bool {
    let (p_host, p_port, p_path) = split(pattern);
    let (r_host, r_port, r_path) = split(repository);
    let p_labels: Vec<&str> = p_host.split('.').collect();
    let r_labels: Vec<&str> = r_host.split('.').collect();
    p_labels.len() == r_labels.len()
        && p_labels
            .iter()
            .zip(&r_labels)
            .all(|(p, r)| glob_match(p.as_bytes(), r.to_ascii_lowercase().as_bytes()))
        && p_port == r_port
        && r_path.starts_with(p_path)
}

/// Shell-style glob over one host label: `*` any run of characters, `?` one character.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

/// Whether `repository` is on Docker Hub.
fn is_hub(repository: &str) -> bool {
    let first = repository.split('/').next().unwrap_or_default();
    matches!(first, "docker.io" | "index.docker.io")
        || !repository.contains('/')
        || !first.contains(['.', ':'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    fn users(k: &Keyring, repo: &str) -> Vec<String> {
        k.lookup(repo).into_iter().map(|c| c.username).collect()
    }

    #[test]
    fn parses_both_formats_and_auth_wins() -> Result<(), CredentialsError> {
        let json = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw==","username":"x","password":"y"},
            "127.0.0.1:5000":{"username":"a","password":"b"}
        }}"#;
        let k = Keyring::parse(json, ConfigFormat::ConfigJson)?;
        assert_eq!(
            k.lookup("docker.io/library/busybox"),
            vec![creds("user", "pa:ss")]
        );
        assert_eq!(k.lookup("127.0.0.1:5000/busybox"), vec![creds("a", "b")]);
        let legacy = br#"{"quay.io":{"auth":"cTpw"}}"#;
        let k = Keyring::parse(legacy, ConfigFormat::Dockercfg)?;
        assert_eq!(k.lookup("quay.io/org/app"), vec![creds("q", "p")]);
        assert!(matches!(
            Keyring::parse(
                br#"{"auths":{"q.io":{"auth":"!!!"}}}"#,
                ConfigFormat::ConfigJson
            ),
            Err(CredentialsError::BadAuth { .. })
        ));
        assert!(matches!(
            Keyring::parse(b"[", ConfigFormat::ConfigJson),
            Err(CredentialsError::Parse(_))
        ));
        assert!(Keyring::parse(b"{}", ConfigFormat::ConfigJson)?.is_empty());
        Ok(())
    }

    #[test]
    fn most_specific_pattern_first_and_wildcard_hosts() -> Result<(), CredentialsError> {
        let json = br#"{"auths":{
            "reg.example.com":{"username":"host","password":"p"},
            "reg.example.com/team":{"username":"team","password":"p"},
            "https://reg.example.com/team/app":{"username":"app","password":"p"},
            "*.example.com":{"username":"wild","password":"p"},
            "reg.example.com:5000":{"username":"port","password":"p"}
        }}"#;
        let k = Keyring::parse(json, ConfigFormat::ConfigJson)?;
        assert_eq!(
            users(&k, "reg.example.com/team/app"),
            ["app", "team", "host", "wild"]
        );
        assert_eq!(users(&k, "reg.example.com/other"), ["host", "wild"]);
        assert_eq!(users(&k, "other.example.com/x"), ["wild"]);
        // A glob spans one host label only, and ports must be equal.
        assert!(users(&k, "a.b.example.com/x").is_empty());
        assert_eq!(users(&k, "reg.example.com:5000/x"), ["port"]);
        assert!(users(&k, "example.com/x").is_empty());
        // Hub images take index.docker.io's credentials; others do not.
        assert!(users(&k, "docker.io/library/busybox").is_empty());
        Ok(())
    }

    #[test]
    fn hub_fallback_only_for_hub_images() -> Result<(), CredentialsError> {
        let k = Keyring::parse(
            br#"{"auths":{"index.docker.io":{"username":"hub","password":"p"}}}"#,
            ConfigFormat::ConfigJson,
        )?;
        assert_eq!(users(&k, "docker.io/library/busybox"), ["hub"]);
        assert_eq!(users(&k, "docker.io/someone/app"), ["hub"]);
        assert!(users(&k, "ghcr.io/someone/app").is_empty());
        assert!(users(&k, "localhost:5000/app").is_empty());
        Ok(())
    }

    #[test]
    fn keyrings_extend_in_order() -> Result<(), CredentialsError> {
        let mut k = Keyring::parse(
            br#"{"auths":{"r.io":{"username":"first","password":"p"}}}"#,
            ConfigFormat::ConfigJson,
        )?;
        k.extend(Keyring::parse(
            br#"{"r.io":{"username":"second","password":"p"}}"#,
            ConfigFormat::Dockercfg,
        )?);
        assert_eq!(users(&k, "r.io/app"), ["first", "second"]);
        assert!(!format!("{:?}", k.lookup("r.io/app")).contains("password"));
        Ok(())
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b"abc"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"*-reg", b"eu-reg"));
        assert!(!glob_match(b"a?c", b"ac"));
        assert!(!glob_match(b"abc", b"abd"));
    }
}
