//! The checker against the README's invalid-config table (`ewma_balancer::invalid_configs`,
//! whose lines a real Envoy logs too: test-harness `e2e_dynamic`): each configuration,
//! as a JSON file and inside a WasmPlugin, exits 1 with exactly the filter's line; the
//! repository's own configurations exit 0.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ewma_balancer::invalid_configs::INVALID_CONFIGS;

const BIN: &str = env!("CARGO_BIN_EXE_ewma-check-config");

fn run(args: &[&Path]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ewma-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn each_invalid_config_as_json_exits_1_with_the_filters_exact_line() {
    for (i, (input, expected)) in INVALID_CONFIGS.iter().enumerate() {
        let file = scratch(&format!("bad-{i}.json"), input);
        let out = run(&[&file]);
        assert_eq!(out.status.code(), Some(1), "{input}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("{}: plugin configuration: {expected}\n", file.display()),
            "{input}"
        );
    }
}

#[test]
fn each_invalid_config_in_a_wasm_plugin_exits_1_with_the_filters_exact_line() {
    let mut checked = 0;
    for (i, (input, expected)) in INVALID_CONFIGS.iter().enumerate() {
        // Only configurations that are JSON can be a WasmPlugin's pluginConfig.
        let Ok(config) = serde_json::from_str::<serde_json::Value>(input) else {
            continue;
        };
        let doc = format!(
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: ewma-balancer\nspec:\n  url: oci://example/filter:0.1.0\n  pluginConfig: {config}\n"
        );
        let file = scratch(&format!("bad-{i}.yaml"), &doc);
        let out = run(&[&file]);
        assert_eq!(out.status.code(), Some(1), "{doc}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("{}: WasmPlugin ewma-balancer: {expected}\n", file.display()),
            "{doc}"
        );
        checked += 1;
    }
    assert!(checked >= INVALID_CONFIGS.len() - 1, "{checked} checked");
}

#[test]
fn the_repositorys_configurations_are_valid() {
    let files = [
        "istio/wasm-plugin.yaml",
        "envoy-configs/static/ewma.yaml",
        "envoy-configs/dynamic/lds.yaml",
        "kubernetes/greeter-envoy-sidecar-config.yaml",
    ]
    .map(repo);
    let out = run(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": ok: ")).count(),
        4,
        "{stdout}"
    );
}

#[test]
fn a_file_without_any_configuration_exits_2() {
    let file = scratch("none.yaml", "kind: Service\nmetadata: {name: x}\n");
    let out = run(&[&file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no WasmPlugin or Envoy Wasm filter"));
}
