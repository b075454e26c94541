//! What Envoy 1.40 really does under the Wasm filter's `failure_policy` (and the
//! deprecated `fail_open: true`) when the module is missing or not Wasm, when the
//! plugin refuses its configuration (`on_configure` returns false), and when the VM
//! traps at runtime. The README's failure-modes table and the comments in
//! `istio/wasm-plugin.yaml` are this test's findings; it prints the table it measured.
//!
//! Configs are `envoy-configs/static/ewma.yaml` with the case's change, one worker.
//! Each test holds the fixed-ports lock and stops every process it started.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::await_holding_lock)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use e2e::{fixed_ports_lock, repo_root, EnvoyOptions, EnvoyProcess};

/// The policies, as the Wasm filter's `config` spells them.
const POLICIES: [&str; 4] = [
    "failure_policy: FAIL_CLOSED",
    "failure_policy: FAIL_OPEN",
    "failure_policy: FAIL_RELOAD",
    "fail_open: true",
];

/// `ewma.yaml` with `policy` set on the Wasm filter and `edit` applied, written under
/// `target/e2e-configs/`.
fn config(name: &str, policy: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(static_config("ewma.yaml")).unwrap();
    let anchor = "                name: ewma-balancer\n";
    assert!(text.contains(anchor), "ewma.yaml's Wasm config has moved");
    let text = text.replacen(anchor, &format!("{anchor}                {policy}\n"), 1);
    let text = edit(text);
    let dir = repo_root().join("target/e2e-configs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A change to a config's text.
type Edit<'a> = Box<dyn Fn(String) -> String + 'a>;

const MODULE: &str = "target/wasm32-wasip1/release/ewma_balancer.wasm";

fn with_module(path: &str) -> impl Fn(String) -> String + '_ {
    move |text| text.replace(MODULE, path)
}

fn with_configuration(json: &str) -> impl Fn(String) -> String + '_ {
    move |text| text.replace("value: \"{}\"", &format!("value: {json:?}"))
}

/// Starts Envoy with `config` and says what happened: whether it served, or the log
/// line that explains why it refused.
fn start(config: PathBuf, name: &str) -> Result<EnvoyProcess, String> {
    let options = EnvoyOptions::named(name)
        .concurrency(1)
        .ready_timeout(Duration::from_secs(15));
    EnvoyProcess::start(config, options)
}

/// The most telling line of a refusal: Envoy's own reason, or the filter's.
fn reason(error: &str) -> String {
    for needle in [
        "invalid plugin configuration",
        "unable to read file",
        "Failed to load Wasm",
        "Wasm VM failed",
        "Unable to create Wasm",
        "failed to load",
    ] {
        if let Some(line) = error.lines().find(|l| l.contains(needle)) {
            return line.trim().chars().take(200).collect();
        }
    }
    error.lines().last().unwrap_or_default().to_owned()
}

/// A module that cannot be loaded, or a configuration the plugin refuses, is refused by
/// Envoy under every policy: the bootstrap does not start (and, as `e2e_dynamic`
/// shows, a listener update carrying it is rejected while Envoy keeps serving). Fail-open
/// does not skip a plugin that never loaded.
#[tokio::test(flavor = "multi_thread")]
async fn a_module_or_configuration_that_cannot_load_is_refused_under_every_policy() {
    let _ports = fixed_ports_lock();
    let not_wasm = repo_root().join("README.md");
    let not_wasm = not_wasm.to_str().unwrap();
    let cases: [(&str, Edit<'_>); 3] = [
        (
            "module missing",
            Box::new(with_module("target/no-such-module.wasm")),
        ),
        ("module not Wasm", Box::new(with_module(not_wasm))),
        (
            "on_configure false",
            Box::new(with_configuration("{\"decay\":10}")),
        ),
    ];
    let mut table = Vec::new();
    for (case, edit) in &cases {
        for policy in POLICIES {
            let tag = format!("fp-{}-{}", case.replace(' ', "-"), table.len());
            let outcome = start(config(&tag, policy, edit), &tag);
            let refused = outcome.as_ref().err().map(|e| reason(e));
            println!(
                "| {case} | {policy} | {} |",
                refused
                    .as_deref()
                    .map_or("served".to_owned(), |r| format!("refused: {r}"))
            );
            table.push((case, policy, refused));
        }
    }
    for (case, policy, refused) in &table {
        let reason = refused
            .as_ref()
            .unwrap_or_else(|| panic!("{case} under {policy}: Envoy started"));
        if *case == &"on_configure false" {
            assert!(
                reason.contains("invalid plugin configuration: field \"decay\""),
                "{case} under {policy}: {reason}"
            );
        }
    }
}

/// What each call of a sequence got: `ok`, or the gRPC code.
async fn sequence(calls: usize, gap: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..calls {
        let report = common::calls(1, 1, &[]).await;
        seen.push(match report.failures_by_code().keys().next() {
            None => "ok".to_owned(),
            Some(code) => code.clone(),
        });
        tokio::time::sleep(gap).await;
    }
    seen
}

/// A VM that traps on its third request (the `wasm-probe` module with `trap_at=3`):
/// that request fails under every policy but the deprecated `fail_open: true`; after
/// it, FAIL_CLOSED fails every request, FAIL_OPEN (either spelling) serves without the
/// filter, and FAIL_RELOAD fails until it has made a new VM (about a second), which
/// then serves.
#[tokio::test(flavor = "multi_thread")]
async fn a_vm_that_traps_at_runtime_is_handled_as_the_policy_says() {
    let _ports = fixed_ports_lock();
    let _greeters = three_greeters(Duration::ZERO);
    let probe = wasm_probe_path();
    let probe = probe.to_str().unwrap().to_owned();
    let mut rows = Vec::new();
    for policy in POLICIES {
        let tag = format!("fp-trap-{}", rows.len());
        let edit = |text: String| with_configuration("trap_at=3")(with_module(&probe)(text));
        let envoy = start(config(&tag, policy, edit), &tag).unwrap();
        // Calls 1-6 a tenth of a second apart, then 6 more after 2 s.
        let mut seen = sequence(6, Duration::from_millis(100)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        seen.extend(sequence(6, Duration::from_millis(100)).await);
        let log = envoy.log_contents();
        let trapped = log
            .lines()
            .any(|l| l.contains("failed") && l.contains("wasm"));
        println!("| {policy} | {} | trap logged: {trapped} |", seen.join(" "));
        rows.push((policy, seen));
    }
    let ok = |seen: &[String], range: std::ops::Range<usize>| seen[range].iter().all(|s| s == "ok");
    let failed =
        |seen: &[String], range: std::ops::Range<usize>| seen[range].iter().all(|s| s != "ok");
    for (policy, seen) in &rows {
        assert!(ok(seen, 0..2), "{policy}: the first two calls: {seen:?}");
        match *policy {
            "failure_policy: FAIL_CLOSED" => {
                assert!(failed(seen, 2..12), "{policy}: {seen:?}")
            }
            "failure_policy: FAIL_OPEN" => {
                assert!(failed(seen, 2..3) && ok(seen, 3..12), "{policy}: {seen:?}")
            }
            "failure_policy: FAIL_RELOAD" => {
                assert!(failed(seen, 2..3), "{policy}: {seen:?}");
                assert!(
                    ok(seen, 6..8),
                    "{policy}: served again after the reload: {seen:?}"
                );
            }
            _ => assert!(ok(seen, 3..12), "{policy}: {seen:?}"),
        }
    }
}
