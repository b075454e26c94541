//! Finds ewma-balancer plugin configurations in a file and checks each with the filter's
//! own parser ([`ewma_balancer::config::Config::parse`]), so that a configuration Envoy
//! would refuse is caught before rollout, with the exact line the filter would log.
//!
//! Envoy cannot skip a plugin whose configuration is refused, whatever its
//! `failure_policy` (measured on Envoy 1.40: the listener or the whole bootstrap is
//! rejected), so this check belongs in CI and before `kubectl apply`.
//!
//! What a file may hold:
//! * **JSON** (`--format json`, or a `.json` file, or standard input starting with `{` or
//!   `[`): the plugin configuration itself, exactly as Envoy's `configuration` value or
//!   Istio's `pluginConfig` carries it;
//! * **YAML** (anything else), one or more documents, each of them any of:
//!   * an Istio `WasmPlugin`: its `spec.pluginConfig` (absent means all defaults);
//!   * an Envoy config (bootstrap, LDS resources, an EnvoyFilter): every
//!     `envoy.extensions.filters.http.wasm.v3.Wasm` typed config in it, its
//!     `config.configuration` string (absent means defaults);
//!   * a Kubernetes ConfigMap whose data values are such Envoy configs.
//!
//! Which Wasm filters are ours: all of them, unless `--plugin NAME` names the one
//! (`config.name` in Envoy, `metadata.name` of the WasmPlugin).

use ewma_balancer::config::Config;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

/// The `@type` of Envoy's Wasm HTTP filter config.
const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// One plugin configuration found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Where in the file, e.g. `WasmPlugin ewma-balancer` or `Wasm filter ewma-balancer`.
    pub location: String,
    /// The configuration bytes as the filter receives them (`None`: absent, defaults).
    pub bytes: Option<Vec<u8>>,
}

/// What checking one configuration gave.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    pub location: String,
    /// The validated config, or the filter's error line.
    pub result: Result<Config, String>,
}

/// The format of a file named `name` starting with `text`.
pub fn guess_format(name: &str, text: &str) -> Format {
    let starts_json = matches!(text.trim_start().chars().next(), Some('{' | '['));
    if name.ends_with(".json") || (name == "-" && starts_json) {
        Format::Json
    } else {
        Format::Yaml
    }
}

/// Every plugin configuration in `text`; `plugin` restricts to the one of that name.
/// An error is a file that is not what it claims, or holds no configuration at all.
pub fn find(text: &str, format: Format, plugin: Option<&str>) -> Result<Vec<Found>, String> {
    if format == Format::Json {
        return Ok(vec![Found {
            location: "plugin configuration".into(),
            bytes: Some(text.as_bytes().to_vec()),
        }]);
    }
    let mut found = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc: Yaml = serde::Deserialize::deserialize(doc)
            .map_err(|e| format!("not valid YAML (document {}): {e}", i + 1))?;
        let doc = to_json(&doc).map_err(|e| format!("document {}: {e}", i + 1))?;
        collect(&doc, plugin, &mut found)?;
    }
    if found.is_empty() {
        return Err(match plugin {
            Some(name) => format!("no WasmPlugin or Envoy Wasm filter named {name:?} found"),
            None => "no WasmPlugin or Envoy Wasm filter found (use --format json for a plugin configuration file)".into(),
        });
    }
    Ok(found)
}

/// Checks each configuration with the filter's parser.
pub fn check(found: Vec<Found>) -> Vec<Checked> {
    found
        .into_iter()
        .map(|f| Checked {
            result: Config::parse(f.bytes.as_deref()).map_err(|e| e.to_string()),
            location: f.location,
        })
        .collect()
}

fn to_json(yaml: &Yaml) -> Result<Json, String> {
    serde_json::to_value(yaml).map_err(|e| format!("cannot be read as JSON: {e}"))
}

fn collect(doc: &Json, plugin: Option<&str>, found: &mut Vec<Found>) -> Result<(), String> {
    let wanted = |name: &str| plugin.is_none_or(|p| p == name);
    if doc.get("kind").and_then(Json::as_str) == Some("WasmPlugin") {
        let name = doc
            .pointer("/metadata/name")
            .and_then(Json::as_str)
            .unwrap_or("(unnamed)");
        if wanted(name) {
            let bytes = match doc.pointer("/spec/pluginConfig") {
                None | Some(Json::Null) => None,
                Some(config) => Some(serde_json::to_vec(config).map_err(|e| e.to_string())?),
            };
            found.push(Found {
                location: format!("WasmPlugin {name}"),
                bytes,
            });
        }
        return Ok(());
    }
    if doc.get("kind").and_then(Json::as_str) == Some("ConfigMap") {
        if let Some(Json::Object(data)) = doc.get("data") {
            for (key, value) in data {
                let Some(text) = value.as_str() else { continue };
                // Only data values that are YAML (an Envoy config) can hold filters.
                let Ok(inner) = parse_embedded(text) else {
                    continue;
                };
                let before = found.len();
                collect(&inner, plugin, found)?;
                for f in &mut found[before..] {
                    f.location = format!("ConfigMap data {key}: {}", f.location);
                }
            }
        }
        return Ok(());
    }
    walk(doc, plugin, found)
}

fn parse_embedded(text: &str) -> Result<Json, String> {
    let yaml: Yaml = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    to_json(&yaml)
}

/// Every Wasm filter config anywhere in an Envoy config.
fn walk(value: &Json, plugin: Option<&str>, found: &mut Vec<Found>) -> Result<(), String> {
    match value {
        Json::Object(map) => {
            if map.get("@type").and_then(Json::as_str) == Some(WASM_FILTER_TYPE) {
                let name = value
                    .pointer("/config/name")
                    .and_then(Json::as_str)
                    .unwrap_or("(unnamed)");
                if plugin.is_none_or(|p| p == name) {
                    let bytes = match value.pointer("/config/configuration") {
                        None | Some(Json::Null) => None,
                        Some(c) if c.get("@type").and_then(Json::as_str) == Some(STRING_VALUE_TYPE) => {
                            c.get("value")
                                .and_then(Json::as_str)
                                .map(|v| v.as_bytes().to_vec())
                        }
                        Some(c) => {
                            return Err(format!(
                                "Wasm filter {name}: configuration is not a google.protobuf.StringValue: {c}"
                            ))
                        }
                    };
                    found.push(Found {
                        location: format!("Wasm filter {name}"),
                        bytes,
                    });
                }
                return Ok(());
            }
            for v in map.values() {
                walk(v, plugin, found)?;
            }
        }
        Json::Array(items) => {
            for v in items {
                walk(v, plugin, found)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locations(text: &str, plugin: Option<&str>) -> Result<Vec<String>, String> {
        find(text, Format::Yaml, plugin).map(|f| f.into_iter().map(|f| f.location).collect())
    }

    #[test]
    fn a_wasm_plugin_gives_its_plugin_config_as_json() {
        let text = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: b}\nspec:\n  pluginConfig:\n    decay: 3s\n    maxEndpoints: 10\n";
        let found = find(text, Format::Yaml, None);
        assert_eq!(
            found,
            Ok(vec![Found {
                location: "WasmPlugin b".into(),
                bytes: Some(br#"{"decay":"3s","maxEndpoints":10}"#.to_vec()),
            }])
        );
    }

    #[test]
    fn a_wasm_plugin_without_plugin_config_means_defaults() {
        let text = "kind: WasmPlugin\nmetadata: {name: b}\nspec: {url: file:///x}\n";
        let checked = check(find(text, Format::Yaml, None).unwrap_or_default());
        assert_eq!(checked.len(), 1);
        assert_eq!(checked[0].result, Ok(Config::default()));
    }

    #[test]
    fn envoy_filters_are_found_anywhere_and_filtered_by_name() {
        let filter = |name: &str, value: &str| {
            format!(
                "- name: envoy.filters.http.wasm\n  typed_config:\n    \"@type\": {WASM_FILTER_TYPE}\n    config:\n      name: {name}\n      configuration:\n        \"@type\": {STRING_VALUE_TYPE}\n        value: '{value}'\n"
            )
        };
        let text = format!(
            "a:\n  b:\n{}{}",
            indent(&filter("one", "{}")),
            indent(&filter("two", "{\"decay\":1}"))
        );
        assert_eq!(
            locations(&text, None),
            Ok(vec!["Wasm filter one".into(), "Wasm filter two".into()])
        );
        assert_eq!(
            locations(&text, Some("two")),
            Ok(vec!["Wasm filter two".into()])
        );
        let checked = check(find(&text, Format::Yaml, Some("two")).unwrap_or_default());
        assert_eq!(
            checked[0].result,
            Err("invalid plugin configuration: field \"decay\": expected a duration string between 100ms and 1h (like \"2s\"), got a number".into())
        );
    }

    fn indent(text: &str) -> String {
        text.lines().map(|l| format!("    {l}\n")).collect()
    }

    #[test]
    fn nothing_found_and_bad_yaml_are_errors() {
        assert!(locations("a: 1\n", None)
            .unwrap_err()
            .contains("no WasmPlugin"));
        assert!(locations("a: [\n", None)
            .unwrap_err()
            .contains("not valid YAML"));
        assert!(
            locations("kind: WasmPlugin\nmetadata: {name: a}\n", Some("b"))
                .unwrap_err()
                .contains("named \"b\"")
        );
    }

    #[test]
    fn json_is_passed_to_the_parser_byte_for_byte() {
        let checked = check(find("{\"decay\":", Format::Json, None).unwrap_or_default());
        assert_eq!(
            checked[0].result,
            Err("invalid plugin configuration: not valid JSON: EOF while parsing a value at line 1 column 9".into())
        );
    }

    #[test]
    fn the_format_is_guessed_from_the_name_or_the_first_character() {
        assert_eq!(guess_format("x.json", "a: 1"), Format::Json);
        assert_eq!(guess_format("-", " {\"a\":1}"), Format::Json);
        assert_eq!(guess_format("-", "kind: WasmPlugin"), Format::Yaml);
        assert_eq!(guess_format("x.yaml", "{}"), Format::Yaml);
    }
}
