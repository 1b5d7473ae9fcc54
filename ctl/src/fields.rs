//! Reading fields of objects held as JSON, with the zero values kubectl's typed structs
//! would give for a missing field.

use serde_json::Value;

/// The string at `pointer`, or "".
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `pointer`, or 0.
pub fn int_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The integer at `pointer`, if there is one.
pub fn opt_int_at(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// The array at `pointer`, or an empty slice.
pub fn items_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `metadata.name`.
pub fn name(v: &Value) -> &str {
    str_at(v, "/metadata/name")
}

/// The ownerReference marked `controller: true`, if any.
pub fn controller_of(v: &Value) -> Option<&Value> {
    items_at(v, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
}

/// Whether `v` is controlled by the object with this uid.
pub fn controlled_by(v: &Value, uid: &str) -> bool {
    !uid.is_empty() && controller_of(v).is_some_and(|o| str_at(o, "/uid") == uid)
}

/// An annotation's value, escaping the `/` in its key for the JSON pointer.
pub fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Now as RFC 3339 in local time with its offset, as Go's `time.Now().Format(time.RFC3339)`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
        .replace("+00:00", "Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_with_zero_values() {
        let v = json!({"metadata": {"name": "a", "annotations": {"x/y": "1"},
            "ownerReferences": [{"uid": "u1"}, {"uid": "u2", "controller": true}]},
            "spec": {"replicas": 3, "list": [1]}});
        assert_eq!(name(&v), "a");
        assert_eq!(int_at(&v, "/spec/replicas"), 3);
        assert_eq!(int_at(&v, "/spec/missing"), 0);
        assert_eq!(opt_int_at(&v, "/spec/missing"), None);
        assert_eq!(items_at(&v, "/spec/list").len(), 1);
        assert_eq!(annotation(&v, "x/y"), Some("1"));
        assert!(controlled_by(&v, "u2"));
        assert!(!controlled_by(&v, "u1"));
        assert!(!controlled_by(&v, ""));
        let now = now_rfc3339();
        assert!(now.len() >= 20 && now.contains('T'), "{now}");
    }
}
