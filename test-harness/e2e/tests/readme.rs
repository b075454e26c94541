//! The documented tables that the code defines must match the code.

use e2e::repo_root;
use ewma_balancer::invalid_configs::INVALID_CONFIGS;

#[test]
fn the_readme_shows_every_invalid_config_with_its_exact_error() {
    let readme =
        std::fs::read_to_string(repo_root().join("docs/failure-modes.md")).unwrap_or_default();
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
    assert!(
        missing.is_empty(),
        "docs/failure-modes.md lacks the rows {missing:#?}"
    );
}
