//! Query strings as the kubelet reads them: repeated keys kept in order.

/// The decoded `key=value` pairs of a query string, in order.
#[derive(Debug, Clone, Default)]
pub struct QueryPairs(Vec<(String, String)>);

impl QueryPairs {
    /// Decodes a raw query string (without the `?`).
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            raw.map(|raw| {
                form_urlencoded::parse(raw.as_bytes())
                    .map(|(key, value)| (key.into_owned(), value.into_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// Whether `key` is set to a true value (`1`, `true`, ...); `Err` names a bad value.
    pub fn flag(&self, key: &str) -> Result<bool, String> {
        self.get(key)
            .map_or(Ok(false), |value| parse_bool(key, value))
    }
}

/// Go's `strconv.ParseBool`, which the kubelet uses for its flags.
pub fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{name}: {value:?} is not a boolean")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_and_flags() {
        let query = QueryPairs::parse(Some(
            "command=sh&command=-c&command=echo%20a%26b&tty=1&stdin=true&x=maybe",
        ));
        assert_eq!(query.all("command"), vec!["sh", "-c", "echo a&b"]);
        assert_eq!(query.flag("tty"), Ok(true));
        assert_eq!(query.flag("stdin"), Ok(true));
        assert_eq!(query.flag("stdout"), Ok(false));
        assert!(query.flag("x").is_err());
    }
}
