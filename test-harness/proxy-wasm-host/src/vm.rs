//! Loading the module and running its callbacks, one `Vm` per simulated Envoy worker.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::error::Context as _;
use wasmtime::{bail, format_err, Result};
use wasmtime::{Config, Engine, Instance, Linker, Module, Store, TypedFunc};

use super::abi::{link, KNOWN_IMPORTS};
use super::env::HostEnv;
use super::state::{
    HeaderMap, LogLine, Stream, VmState, REQUEST_HEADERS, RESPONSE_HEADERS, RESPONSE_TRAILERS,
};

/// Fuel given to a VM; far more than any test spends.
const FUEL: u64 = u64::MAX / 4;
/// The root context id this host gives the plugin, as Envoy does.
pub const ROOT_CONTEXT: u32 = 1;

/// A compiled module and the process-wide state its VMs share.
pub struct WasmHost {
    engine: Engine,
    module: Module,
    linker: Linker<VmState>,
    env: Arc<HostEnv>,
}

/// The instructions (fuel) and hostcalls one callback or one stream cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub fuel: u64,
    pub hostcalls: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Self) {
        self.fuel += o.fuel;
        self.hostcalls += o.hostcalls;
    }
}

/// How a VM is started: what Envoy would pass it.
#[derive(Clone, Debug)]
pub struct VmOptions {
    pub plugin_name: String,
    pub plugin_config: Vec<u8>,
    /// proxy-wasm log level the host reports (0 trace … 5 critical).
    pub log_level: i32,
    /// Clusters the module may make HTTP calls to (Envoy refuses others).
    pub upstreams: Vec<String>,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self {
            plugin_name: "ewma-balancer".into(),
            plugin_config: Vec::new(),
            log_level: 2,
            upstreams: Vec::new(),
        }
    }
}

impl WasmHost {
    /// Loads a `.wasm` file; the error says how to build it when it is missing.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read {}: build it first with `make wasm`",
                path.display()
            )
        })?;
        Self::from_binary(&bytes)
    }

    /// Compiles a module (binary or WAT) and checks that this host implements each import.
    pub fn from_binary(bytes: &[u8]) -> Result<Self> {
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config)?;
        let module = Module::new(&engine, bytes)?;
        let missing: Vec<String> = module
            .imports()
            .filter(|i| !KNOWN_IMPORTS.contains(&(i.module(), i.name())))
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect();
        if !missing.is_empty() {
            bail!(
                "the module imports {}, which this test host does not implement",
                missing.join(", ")
            );
        }
        let mut linker = Linker::new(&engine);
        link(&mut linker)?;
        Ok(Self {
            engine,
            module,
            linker,
            env: Arc::new(HostEnv::default()),
        })
    }

    /// The same compiled module in a new environment (shared data, clock, metrics): a
    /// separate Envoy process, for runs that must not see each other's state.
    pub fn fresh(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            module: self.module.clone(),
            linker: self.linker.clone(),
            env: Arc::new(HostEnv::default()),
        }
    }

    pub fn env(&self) -> &Arc<HostEnv> {
        &self.env
    }

    /// Sets the fake clock, in nanoseconds (Envoy's is the wall clock).
    pub fn set_now(&self, ns: u64) {
        self.env.set_now_ns(ns);
    }

    pub fn now(&self) -> u64 {
        self.env.now_ns()
    }

    /// Starts a VM as Envoy starts one per worker: `_initialize`, the root context,
    /// `proxy_on_vm_start`, `proxy_on_configure`. `Vm::configured` tells whether the
    /// plugin accepted its configuration.
    pub fn vm(&self, options: &VmOptions) -> Result<Vm> {
        let mut state = VmState::new(Arc::clone(&self.env));
        state.plugin_config = options.plugin_config.clone();
        state.log_level = options.log_level;
        state.upstreams = options.upstreams.clone();
        state.root_properties.insert(
            b"plugin_name".to_vec(),
            options.plugin_name.clone().into_bytes(),
        );
        let mut store = Store::new(&self.engine, state);
        store.set_fuel(FUEL)?;
        let instance = self.linker.instantiate(&mut store, &self.module)?;
        let exports = Exports::find(&instance, &mut store)?;
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ())?;
        }
        let mut vm = Vm {
            store,
            exports,
            next_context: ROOT_CONTEXT + 1,
            configured: false,
            callback_costs: Default::default(),
        };
        let ex = vm.exports.clone();
        vm.call("proxy_on_context_create", 0, |s| {
            ex.on_context_create.call(s, (ROOT_CONTEXT as i32, 0))
        })?;
        let started =
            vm.call("proxy_on_vm_start", 0, |s| {
                ex.on_vm_start.call(s, (ROOT_CONTEXT as i32, 0))
            })?
            .0 != 0;
        let size = options.plugin_config.len() as i32;
        vm.configured = started
            && vm
                .call("proxy_on_configure", 0, |s| {
                    ex.on_configure.call(s, (ROOT_CONTEXT as i32, size))
                })?
                .0
                != 0;
        Ok(vm)
    }
}

#[derive(Clone)]
struct Exports {
    on_context_create: TypedFunc<(i32, i32), ()>,
    on_vm_start: TypedFunc<(i32, i32), i32>,
    on_configure: TypedFunc<(i32, i32), i32>,
    on_tick: TypedFunc<i32, ()>,
    on_http_call_response: TypedFunc<(i32, i32, i32, i32, i32), ()>,
    on_request_headers: TypedFunc<(i32, i32, i32), i32>,
    on_request_body: TypedFunc<(i32, i32, i32), i32>,
    on_response_headers: TypedFunc<(i32, i32, i32), i32>,
    on_response_trailers: TypedFunc<(i32, i32), i32>,
    on_log: TypedFunc<i32, ()>,
    on_done: TypedFunc<i32, i32>,
    on_delete: TypedFunc<i32, ()>,
}

impl Exports {
    fn find(instance: &Instance, store: &mut Store<VmState>) -> Result<Self> {
        macro_rules! get {
            ($name:literal) => {
                instance
                    .get_typed_func(&mut *store, $name)
                    .with_context(|| {
                        format!(
                            "the module does not export {} with the ABI 0.2.1 signature",
                            $name
                        )
                    })?
            };
        }
        Ok(Self {
            on_context_create: get!("proxy_on_context_create"),
            on_vm_start: get!("proxy_on_vm_start"),
            on_configure: get!("proxy_on_configure"),
            on_tick: get!("proxy_on_tick"),
            on_http_call_response: get!("proxy_on_http_call_response"),
            on_request_headers: get!("proxy_on_request_headers"),
            on_request_body: get!("proxy_on_request_body"),
            on_response_headers: get!("proxy_on_response_headers"),
            on_response_trailers: get!("proxy_on_response_trailers"),
            on_log: get!("proxy_on_log"),
            on_done: get!("proxy_on_done"),
            on_delete: get!("proxy_on_delete"),
        })
    }
}

/// One VM: one Envoy worker's instance of the plugin, with its own linear memory.
pub struct Vm {
    store: Store<VmState>,
    exports: Exports,
    next_context: u32,
    /// Whether `proxy_on_configure` returned true.
    pub configured: bool,
    /// Cost accumulated per exported callback.
    pub callback_costs: std::collections::BTreeMap<&'static str, Cost>,
}

/// A property path as the ABI serializes it: segments joined by NUL.
pub fn property_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

impl Vm {
    /// Sets the clock of this VM's Envoy (every VM of one [`WasmHost`] shares it).
    pub fn set_now(&self, ns: u64) {
        self.store.data().env.set_now_ns(ns);
    }

    /// Runs one callback with `current` as the effective context, measuring its cost.
    fn call<R>(
        &mut self,
        callback: &'static str,
        current: u32,
        f: impl FnOnce(&mut Store<VmState>) -> wasmtime::Result<R>,
    ) -> Result<(R, Cost)> {
        self.store.data_mut().current = current;
        let fuel_before = self.store.get_fuel()?;
        let calls_before = self.store.data().hostcalls;
        let result = f(&mut self.store).map_err(|e| format_err!("the module trapped: {e:?}"))?;
        let cost = Cost {
            fuel: fuel_before - self.store.get_fuel()?,
            hostcalls: self.store.data().hostcalls - calls_before,
        };
        *self.callback_costs.entry(callback).or_default() += cost;
        Ok((result, cost))
    }

    pub fn tick_period(&self) -> Option<Duration> {
        let ms = self.store.data().tick_period_ms;
        (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
    }

    pub fn tick(&mut self) -> Result<Cost> {
        let ex = self.exports.clone();
        Ok(self
            .call("proxy_on_tick", 0, |s| {
                ex.on_tick.call(s, ROOT_CONTEXT as i32)
            })?
            .1)
    }

    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().logs
    }

    pub fn hostcalls_by_name(&self) -> &std::collections::BTreeMap<&'static str, u64> {
        &self.store.data().hostcalls_by_name
    }

    pub fn unsupported_calls(&self) -> &[&'static str] {
        &self.store.data().unsupported_calls
    }

    /// Opens a stream and runs `proxy_on_request_headers`. `properties` are what Envoy
    /// would answer for this stream (e.g. `xds.cluster_name`).
    pub fn request(
        &mut self,
        headers: HeaderMap,
        properties: &[(&[&str], Vec<u8>)],
    ) -> Result<(u32, Cost)> {
        let ctx = self.next_context;
        self.next_context += 1;
        let mut stream = Stream::default();
        stream.maps[REQUEST_HEADERS] = headers;
        for (path, value) in properties {
            stream.properties.insert(property_path(path), value.clone());
        }
        let n = stream.maps[REQUEST_HEADERS].len() as i32;
        self.store.data_mut().streams.insert(ctx, stream);
        let ex = self.exports.clone();
        let mut cost = self
            .call("proxy_on_context_create", 0, |s| {
                ex.on_context_create
                    .call(s, (ctx as i32, ROOT_CONTEXT as i32))
            })?
            .1;
        cost += self
            .call("proxy_on_request_headers", ctx, |s| {
                ex.on_request_headers.call(s, (ctx as i32, n, 0))
            })?
            .1;
        Ok((ctx, cost))
    }

    /// The request headers of a stream as the filter left them.
    pub fn request_headers(&self, ctx: u32) -> HeaderMap {
        self.store
            .data()
            .streams
            .get(&ctx)
            .map(|s| s.maps[REQUEST_HEADERS].clone())
            .unwrap_or_default()
    }

    /// Sets (or replaces) a property of a stream.
    pub fn set_property(&mut self, ctx: u32, path: &[&str], value: Vec<u8>) {
        if let Some(s) = self.store.data_mut().streams.get_mut(&ctx) {
            s.properties.insert(property_path(path), value);
        }
    }

    /// The HTTP calls the module made and that have not been answered, oldest first.
    pub fn take_http_calls(&mut self) -> Vec<super::state::HttpCall> {
        std::mem::take(&mut self.store.data_mut().http_calls)
    }

    /// Delivers the answer to HTTP call `token` (`proxy_on_http_call_response` on the
    /// root context): `headers` (with `:status`, or empty for a call that failed) and
    /// `body`.
    pub fn http_call_response(
        &mut self,
        token: u32,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<Cost> {
        let (n, size) = (headers.len() as i32, body.len() as i32);
        self.store.data_mut().http_response = Some((headers, body));
        let ex = self.exports.clone();
        let result = self.call("proxy_on_http_call_response", 0, |s| {
            ex.on_http_call_response
                .call(s, (ROOT_CONTEXT as i32, token as i32, n, size, 0))
        });
        self.store.data_mut().http_response = None;
        Ok(result?.1)
    }

    /// Runs `proxy_on_request_body` for a body of `size` bytes (the request's whole
    /// message, for a unary gRPC call, with `end_of_stream`).
    pub fn request_body(&mut self, ctx: u32, size: usize, end_of_stream: bool) -> Result<Cost> {
        let ex = self.exports.clone();
        Ok(self
            .call("proxy_on_request_body", ctx, |s| {
                ex.on_request_body
                    .call(s, (ctx as i32, size as i32, i32::from(end_of_stream)))
            })?
            .1)
    }

    /// Runs `proxy_on_response_headers`.
    pub fn response_headers(
        &mut self,
        ctx: u32,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Cost> {
        let n = headers.len() as i32;
        if let Some(s) = self.store.data_mut().streams.get_mut(&ctx) {
            s.maps[RESPONSE_HEADERS] = headers;
        }
        let ex = self.exports.clone();
        Ok(self
            .call("proxy_on_response_headers", ctx, |s| {
                ex.on_response_headers
                    .call(s, (ctx as i32, n, i32::from(end_of_stream)))
            })?
            .1)
    }

    /// Runs `proxy_on_response_trailers`.
    pub fn response_trailers(&mut self, ctx: u32, trailers: HeaderMap) -> Result<Cost> {
        let n = trailers.len() as i32;
        if let Some(s) = self.store.data_mut().streams.get_mut(&ctx) {
            s.maps[RESPONSE_TRAILERS] = trailers;
        }
        let ex = self.exports.clone();
        Ok(self
            .call("proxy_on_response_trailers", ctx, |s| {
                ex.on_response_trailers.call(s, (ctx as i32, n))
            })?
            .1)
    }

    /// Ends a stream as Envoy does: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
    pub fn finish(&mut self, ctx: u32) -> Result<Cost> {
        let ex = self.exports.clone();
        let mut cost = self
            .call("proxy_on_log", ctx, |s| ex.on_log.call(s, ctx as i32))?
            .1;
        cost += self
            .call("proxy_on_done", ctx, |s| ex.on_done.call(s, ctx as i32))?
            .1;
        cost += self
            .call("proxy_on_delete", ctx, |s| ex.on_delete.call(s, ctx as i32))?
            .1;
        self.store.data_mut().streams.remove(&ctx);
        Ok(cost)
    }
}
