//! The README's tables that the code defines must match the code.

use ewma_balancer::invalid_configs::INVALID_CONFIGS;
use test_harness::support::repo_root;

#[test]
fn the_readme_shows_every_invalid_config_with_its_exact_error() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap_or_default();
    let missing: Vec<_> = INVALID_CONFIGS
        .iter()
        .filter(|(config, error)| {
            let row = format!(
                "| `{}` | `{}` |",
                config.replace('|', "\\|"),
                error.replace('|', "\\|")
            );
            !readme.contains(&row)
        })
        .collect();
    assert!(INVALID_CONFIGS.len() >= 10);
    assert!(missing.is_empty(), "README lacks the rows {missing:#?}");
}
