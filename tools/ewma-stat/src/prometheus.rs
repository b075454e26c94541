//! Just enough of the Prometheus text exposition format to read Envoy's
//! `/stats/prometheus`: `name{label="value",…} value` lines; `#` comments and
//! blank lines are skipped, an optional timestamp after the value is ignored.
//!
//! Only lines whose metric name the caller wants are parsed, so a line of some
//! other Envoy stat that this reader would not understand cannot fail a scrape.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Labels in the order they appear.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The metric name of every sample line in `text` (comments and blank lines
/// skipped), without parsing the rest of the line.
pub fn sample_names(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|line| {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        Some(&line[..end])
    })
}

/// Parses the sample lines of `text` whose metric name satisfies `wanted`.
/// A wanted line that does not parse is an error naming its line number.
pub fn parse_samples(text: &str, wanted: impl Fn(&str) -> bool) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        if !wanted(&line[..name_end]) {
            continue;
        }
        let sample = parse_line(line, name_end)
            .map_err(|reason| format!("line {}: {reason}: `{line}`", number + 1))?;
        samples.push(sample);
    }
    Ok(samples)
}

fn parse_line(line: &str, name_end: usize) -> Result<Sample, String> {
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or("no value after the metric")?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// Parses `label="value",…}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let (label, after_name) = rest.split_once('=').ok_or("label without `=`")?;
        let after_name = after_name.trim_start();
        let mut chars = after_name
            .strip_prefix('"')
            .ok_or("label value does not start with `\"`")?
            .char_indices();
        let mut value = String::new();
        let after_value = loop {
            match chars.next() {
                Some((i, '"')) => break &after_name[1 + i + 1..],
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped)) => value.push(escaped),
                    None => return Err("label value ends in `\\`".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("label value is not terminated".into()),
            }
        };
        labels.push((label.trim().to_owned(), value));
        rest = after_value.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn parse_value(token: &str) -> Result<f64, String> {
    match token {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => token
            .parse()
            .map_err(|_| format!("value `{token}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<Sample>, String> {
        parse_samples(text, |_| true)
    }

    #[test]
    fn reads_labels_and_value() {
        let samples = all(
            "ewma_balancer_requests_total{cluster_name=\"greeter\",endpoint=\"127.0.0.1:50051\"} 1583\n",
        )
        .unwrap();
        assert_eq!(
            samples,
            [Sample {
                name: "ewma_balancer_requests_total".into(),
                labels: vec![
                    ("cluster_name".into(), "greeter".into()),
                    ("endpoint".into(), "127.0.0.1:50051".into())
                ],
                value: 1583.0,
            }]
        );
        assert_eq!(samples[0].label("endpoint"), Some("127.0.0.1:50051"));
        assert_eq!(samples[0].label("le"), None);
    }

    #[test]
    fn skips_comments_blank_lines_and_unwanted_names() {
        let text = "# TYPE a counter\n\na{} 1\nb 2\n# HELP b help\n";
        let samples = parse_samples(text, |name| name == "b").unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!((samples[0].name.as_str(), samples[0].value), ("b", 2.0));
        assert_eq!(sample_names(text).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn reads_empty_braces_infinity_long_decimals_and_timestamps() {
        let text = "a{} 0\n\
            h_bucket{le=\"+Inf\"} 36\n\
            h_sum{} 2810291.4677920532412827014923096\n\
            t 7 1700000000000\n";
        let samples = all(text).unwrap();
        assert_eq!(samples[0].labels, []);
        assert_eq!(samples[1].label("le"), Some("+Inf"));
        assert_eq!(samples[2].value, 2_810_291.467_792_053_2);
        assert_eq!(samples[3].value, 7.0);
        assert!(parse_value("NaN").unwrap().is_nan());
        assert_eq!(parse_value("+Inf"), Ok(f64::INFINITY));
        assert_eq!(parse_value("1e+06"), Ok(1_000_000.0));
    }

    #[test]
    fn unescapes_label_values() {
        let samples = all(r#"m{a="x\"y",b="back\\slash",c="new\nline", d = "spaced" } 1"#).unwrap();
        assert_eq!(
            samples[0].labels,
            [
                ("a".to_owned(), "x\"y".to_owned()),
                ("b".to_owned(), "back\\slash".to_owned()),
                ("c".to_owned(), "new\nline".to_owned()),
                ("d".to_owned(), "spaced".to_owned()),
            ]
        );
    }

    #[test]
    fn a_broken_wanted_line_is_an_error_naming_the_line() {
        assert_eq!(
            all("ok 1\nm{a=\"x} 1\n"),
            Err("line 2: label value is not terminated: `m{a=\"x} 1`".into())
        );
        assert_eq!(
            all("m{a=\"x\"}\n"),
            Err("line 1: no value after the metric: `m{a=\"x\"}`".into())
        );
        assert_eq!(
            all("m one\n"),
            Err("line 1: value `one` is not a number: `m one`".into())
        );
        assert!(parse_samples("m{a=\"x} 1\n", |name| name != "m").is_ok());
    }
}
