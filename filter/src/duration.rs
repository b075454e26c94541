//! Durations in plugin configuration: a decimal number followed by a unit, as in Envoy's
//! and Istio's YAML: `500us`, `30ms`, `1.5s`, `2m`, `1h`.

use crate::Nanos;

/// Parses `"<number><unit>"`. Returns a message fit for a config error on failure.
pub fn parse_duration(text: &str) -> Result<Nanos, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.matches('.').count() > 1 {
        return Err("expected a number followed by a unit, like \"30ms\"".into());
    }
    let scale: f64 = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        "" => return Err("a unit is required (ns, us, ms, s, m, h)".into()),
        other => return Err(format!("unknown unit {other:?} (use ns, us, ms, s, m, h)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| "expected a number followed by a unit, like \"30ms\"".to_string())?;
    let ns = value * scale;
    if !ns.is_finite() || ns >= u64::MAX as f64 {
        return Err("too large".into());
    }
    // Finite and below u64::MAX, checked above (and never negative: no sign is parsed);
    // the cast saturates anyway.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(ns.round() as Nanos)
}

/// Formats nanoseconds the way a person would write them in config.
pub fn format_duration(ns: Nanos) -> String {
    const UNITS: [(Nanos, &str); 5] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (scale, unit) in UNITS {
        if ns >= scale && ns.is_multiple_of(scale) {
            return format!("{}{unit}", ns / scale);
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("7ns"), Ok(7));
        assert_eq!(parse_duration("500us"), Ok(500_000));
        assert_eq!(parse_duration("30ms"), Ok(30_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("2m"), Ok(120_000_000_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_duration(" 10s "), Ok(10_000_000_000));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in [
            "", "ms", "10", "-5s", "1.2.3s", "10 s", "10sec", "1e3s", "NaNs", "infs",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn formats_round_values_in_the_largest_unit() {
        assert_eq!(format_duration(30_000_000), "30ms");
        assert_eq!(format_duration(10_000_000_000), "10s");
        assert_eq!(format_duration(3_600_000_000_000), "1h");
        assert_eq!(format_duration(1_500_000_000), "1500ms");
        assert_eq!(format_duration(7), "7ns");
    }
}
