//! `ewma-check-config FILE...`: checks the ewma-balancer plugin configurations in each
//! file with the filter's own parser and prints, per configuration, `ok` with every
//! field's value or the exact line the filter would log when refusing it.
//!
//! Exit status: 0 when every configuration is valid, 1 when one is refused, 2 when a
//! file cannot be read or holds no configuration. Use it in CI and before applying a
//! WasmPlugin: Envoy refuses a bad configuration even with `failStrategy: FAIL_OPEN`.

use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use ewma_check_config::{check, find, guess_format, Format};

#[derive(Parser)]
#[command(
    version,
    about = "Checks ewma-balancer plugin configurations (a JSON plugin configuration, Istio WasmPlugin YAML, Envoy YAML or a ConfigMap holding one) with the filter's own parser"
)]
struct Args {
    /// Files to check; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<String>,
    /// How to read the files (auto: `.json` files, and standard input starting with
    /// `{` or `[`, are plugin configurations; anything else is YAML).
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    format: FormatArg,
    /// Only the WasmPlugin (metadata.name) or Envoy Wasm filter (config.name) of this name.
    #[arg(long)]
    plugin: Option<String>,
    /// Print nothing for valid configurations.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Auto,
    Json,
    Yaml,
}

fn read(name: &str) -> Result<String, String> {
    if name == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("-: cannot read standard input: {e}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(name).map_err(|e| format!("{name}: cannot read: {e}"))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut status = ExitCode::SUCCESS;
    let mut refused = false;
    for name in &args.files {
        let text = match read(name) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("{e}");
                status = ExitCode::from(2);
                continue;
            }
        };
        let format = match args.format {
            FormatArg::Auto => guess_format(name, &text),
            FormatArg::Json => Format::Json,
            FormatArg::Yaml => Format::Yaml,
        };
        let found = match find(&text, format, args.plugin.as_deref()) {
            Ok(found) => found,
            Err(e) => {
                eprintln!("{name}: {e}");
                status = ExitCode::from(2);
                continue;
            }
        };
        for checked in check(found) {
            match checked.result {
                Ok(config) if !args.quiet => {
                    println!("{name}: {}: ok: {}", checked.location, config.describe())
                }
                Ok(_) => {}
                Err(line) => {
                    eprintln!("{name}: {}: {line}", checked.location);
                    refused = true;
                }
            }
        }
    }
    if refused && status == ExitCode::SUCCESS {
        status = ExitCode::from(1);
    }
    status
}
