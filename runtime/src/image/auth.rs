//! Registry credentials from `kubernetes.io/dockerconfigjson` (and legacy `.dockercfg`)
//! secrets, matched to a registry host the way the kubelet does.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::Deserialize;

use super::ImageError;

/// How to authenticate to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryCredentials {
    /// No credentials (bearer tokens are still fetched anonymously when asked for).
    #[default]
    Anonymous,
    /// HTTP basic credentials, also used to obtain bearer tokens.
    Basic {
        /// The user name.
        username: String,
        /// The password or access token.
        password: String,
    },
}

impl fmt::Debug for RegistryCredentials {
    // The password must never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryCredentials::Anonymous => write!(f, "Anonymous"),
            RegistryCredentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl RegistryCredentials {
    /// The credentials for `registry` in a dockerconfigjson document, or anonymous when
    /// it has none (see [`auth_from_docker_config`]).
    pub fn from_docker_config(json: &[u8], registry: &str) -> Result<Self, ImageError> {
        Ok(match auth_from_docker_config(json, registry)? {
            Some((username, password)) => RegistryCredentials::Basic { username, password },
            None => RegistryCredentials::Anonymous,
        })
    }

    /// The equivalent `oci-client` authentication.
    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        match self {
            RegistryCredentials::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
            RegistryCredentials::Basic { username, password } => {
                oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone())
            }
        }
    }
}

#[derive(Deserialize)]
struct DockerConfigEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
struct DockerConfigJson {
    auths: BTreeMap<String, DockerConfigEntry>,
}

/// The host names Docker Hub is known by in config files.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Finds the credentials for `registry` (a host such as `docker.io` or `127.0.0.1:5000`) in
/// a dockerconfigjson document (`{"auths": {...}}`, or the legacy `.dockercfg` map).
/// Keys may be hosts or URLs (`https://index.docker.io/v1/`); Docker Hub's aliases match
/// each other and `*.example.com` matches one label. `auth` (base64 `user:password`) wins
/// over `username`/`password`. Returns `Ok(None)` when no entry matches.
pub fn auth_from_docker_config(
    json: &[u8],
    registry: &str,
) -> Result<Option<(String, String)>, ImageError> {
    let invalid = |reason: String| ImageError::InvalidDockerConfig {
        registry: registry.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|err| invalid(format!("not JSON: {err}")))?;
    let entries: BTreeMap<String, DockerConfigEntry> = if value.get("auths").is_some() {
        serde_json::from_value::<DockerConfigJson>(value)
            .map_err(|err| invalid(format!("bad \"auths\" map: {err}")))?
            .auths
    } else {
        serde_json::from_value(value).map_err(|err| {
            invalid(format!(
                "neither {{\"auths\": ...}} nor a .dockercfg map: {err}"
            ))
        })?
    };
    let wanted = canonical_host(registry);
    // An exact host match wins over a wildcard one, whatever the key order.
    let matched = entries
        .iter()
        .find(|(key, _)| canonical_host(&config_key_host(key)) == wanted)
        .or_else(|| {
            entries
                .iter()
                .find(|(key, _)| wildcard_matches(&config_key_host(key), &wanted))
        });
    let Some((key, entry)) = matched else {
        return Ok(None);
    };
    if let Some(encoded) = entry.auth.as_deref().filter(|auth| !auth.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|err| invalid(format!("entry {key:?}: \"auth\" is not base64: {err}")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| invalid(format!("entry {key:?}: \"auth\" is not UTF-8")))?;
        let Some((username, password)) = decoded.split_once(':') else {
            return Err(invalid(format!(
                "entry {key:?}: \"auth\" does not decode to user:password"
            )));
        };
        return Ok(Some((username.to_string(), password.to_string())));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) => Ok(Some((username.clone(), password.clone()))),
        _ => Err(invalid(format!(
            "entry {key:?} has neither \"auth\" nor both \"username\" and \"password\""
        ))),
    }
}

/// The host part of a config key, which may be a URL such as `https://host/v1/`.
fn config_key_host(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    host.to_ascii_lowercase()
}

/// Docker Hub's aliases collapse to `docker.io`; other hosts are compared lower-cased.
fn canonical_host(host: &str) -> String {
    let lowered = host.to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&lowered.as_str()) {
        DOCKER_HUB_ALIASES[0].to_string()
    } else {
        lowered
    }
}

/// `*.example.com` matches `a.example.com` (one label, same port), as in the kubelet.
fn wildcard_matches(pattern: &str, host: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    host.split_once('.')
        .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn auth_field_is_decoded() {
        let json = format!(
            r#"{{"auths":{{"registry.example.com":{{"auth":"{}"}}}}}}"#,
            b64("alice:s3cr:et")
        );
        assert_eq!(
            auth_from_docker_config(json.as_bytes(), "registry.example.com").unwrap(),
            Some(("alice".to_string(), "s3cr:et".to_string()))
        );
        assert_eq!(
            auth_from_docker_config(json.as_bytes(), "other.example.com").unwrap(),
            None
        );
    }

    #[test]
    fn username_and_password_fields() {
        let json = br#"{"auths":{"127.0.0.1:5000":{"username":"bob","password":"pw"}}}"#;
        assert_eq!(
            auth_from_docker_config(json, "127.0.0.1:5000").unwrap(),
            Some(("bob".to_string(), "pw".to_string()))
        );
    }

    #[test]
    fn docker_hub_aliases_match() {
        let json = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            b64("hub:token")
        );
        for registry in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(
                auth_from_docker_config(json.as_bytes(), registry).unwrap(),
                Some(("hub".to_string(), "token".to_string())),
                "{registry}"
            );
        }
        let json = format!(r#"{{"auths":{{"docker.io":{{"auth":"{}"}}}}}}"#, b64("a:b"));
        assert_eq!(
            auth_from_docker_config(json.as_bytes(), "index.docker.io").unwrap(),
            Some(("a".to_string(), "b".to_string()))
        );
    }

    #[test]
    fn url_keys_and_wildcards() {
        let json = format!(
            r#"{{"auths":{{"*.example.com":{{"auth":"{}"}},"https://exact.example.com/v2/":{{"auth":"{}"}}}}}}"#,
            b64("wild:1"),
            b64("exact:2")
        );
        assert_eq!(
            auth_from_docker_config(json.as_bytes(), "exact.example.com").unwrap(),
            Some(("exact".to_string(), "2".to_string()))
        );
        assert_eq!(
            auth_from_docker_config(json.as_bytes(), "other.example.com").unwrap(),
            Some(("wild".to_string(), "1".to_string()))
        );
        assert_eq!(
            auth_from_docker_config(json.as_bytes(), "a.b.example.com").unwrap(),
            None
        );
    }

    #[test]
    fn legacy_dockercfg_map() {
        let json = format!(r#"{{"quay.io":{{"auth":"{}"}}}}"#, b64("q:p"));
        assert_eq!(
            auth_from_docker_config(json.as_bytes(), "quay.io").unwrap(),
            Some(("q".to_string(), "p".to_string()))
        );
    }

    #[test]
    fn malformed_documents_are_errors_naming_the_registry() {
        let err = auth_from_docker_config(b"not json", "quay.io").unwrap_err();
        assert!(err.to_string().contains("quay.io"), "{err}");
        let err = auth_from_docker_config(br#"{"auths":{"quay.io":{"auth":"!!!"}}}"#, "quay.io")
            .unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        let json = format!(
            r#"{{"auths":{{"quay.io":{{"auth":"{}"}}}}}}"#,
            b64("nocolon")
        );
        let err = auth_from_docker_config(json.as_bytes(), "quay.io").unwrap_err();
        assert!(err.to_string().contains("user:password"), "{err}");
        let err = auth_from_docker_config(br#"{"auths":{"quay.io":{"username":"u"}}}"#, "quay.io")
            .unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
    }

    #[test]
    fn credentials_from_docker_config() {
        let json = format!(r#"{{"auths":{{"quay.io":{{"auth":"{}"}}}}}}"#, b64("q:p"));
        assert_eq!(
            RegistryCredentials::from_docker_config(json.as_bytes(), "quay.io").unwrap(),
            RegistryCredentials::Basic {
                username: "q".to_string(),
                password: "p".to_string()
            }
        );
        assert_eq!(
            RegistryCredentials::from_docker_config(json.as_bytes(), "ghcr.io").unwrap(),
            RegistryCredentials::Anonymous
        );
    }

    #[test]
    fn debug_redacts_the_password() {
        let credentials = RegistryCredentials::Basic {
            username: "u".to_string(),
            password: "hunter2".to_string(),
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
