//! The proxy-wasm adapter: the only code that talks to the host. It reads headers and
//! properties, measures time, and forwards to the pure core; it never panics (hostcall
//! errors degrade to "don't balance this request").

mod adapters;
mod request;
mod root;

use proxy_wasm::types::LogLevel;

#[allow(unsafe_code)] // the SDK's entry-point macro calls the Wasm constructors
mod entry {
    use super::*;
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|context_id| Box::new(root::Root::new(context_id)));
    }}
}
