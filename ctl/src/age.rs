//! Ages as kubectl prints them (`5s`, `3m2s`, `2d3h`, `<unknown>`), for the columns the
//! client computes itself (fallback tables, describe, events). The server's printers
//! compute the same for the tables it sends; skiffctl does not link the control plane.

use serde_json::Value;

/// `seconds` as kubectl's short human duration.
pub fn human_duration(seconds: i64) -> String {
    // A second or two in the future is clock skew between client and server.
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (minutes, hours, days) = (s / 60, s / 3600, s / 86400);
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if minutes < 10 => with(minutes, "m", s % 60, "s"),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => with(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => with(days, "d", hours % 24, "h"),
        _ if days < 365 * 2 => format!("{days}d"),
        _ if days < 365 * 8 => with(days / 365, "y", days % 365, "d"),
        _ => format!("{}y", days / 365),
    }
}

/// The age of a timestamp field relative to `now`.
pub fn age(timestamp: Option<&Value>, now: jiff::Timestamp) -> String {
    match parse(timestamp) {
        Some(t) => human_duration(now.duration_since(t).as_secs()),
        None => "<unknown>".into(),
    }
}

pub fn parse(timestamp: Option<&Value>) -> Option<jiff::Timestamp> {
    timestamp
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        for (secs, text) in [
            (-10, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 5, "3h5m"),
            (47 * 3600, "47h"),
            (51 * 3600, "2d3h"),
            (8 * 86400, "8d"),
            (800 * 86400, "2y70d"),
            (3000 * 86400, "8y"),
        ] {
            assert_eq!(human_duration(secs), text, "{secs}s");
        }
        let now: jiff::Timestamp = "2024-05-01T12:00:00Z".parse().expect("ts");
        assert_eq!(age(Some(&json!("2024-05-01T11:57:00Z")), now), "3m");
        assert_eq!(age(Some(&json!("garbage")), now), "<unknown>");
        assert_eq!(age(None, now), "<unknown>");
    }
}
