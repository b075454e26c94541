//! The proxy-wasm adapter: the only code that talks to the host. It reads headers and
//! properties, measures time, and forwards to the pure core; it never panics (a host
//! call that fails degrades to "don't balance this request").

mod abi;
mod adapters;
mod request;
mod root;
mod worker;

#[allow(unsafe_code)] // the SDK's entry-point macro calls the Wasm constructors
mod entry {
    proxy_wasm::main! {{
        super::adapters::init_logging(2);
        proxy_wasm::set_root_context(|context_id| Box::new(super::root::Root::new(context_id)));
    }}
}
