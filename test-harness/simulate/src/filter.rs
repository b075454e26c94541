//! The policy `ewma`: the built `ewma_balancer.wasm` in every worker VM of every proxy,
//! on the wasmtime proxy-wasm host. Each proxy is one Envoy (its own shared data, stats
//! and clock) with `workers` VMs; the plugin configuration is the one `istio/` ships
//! (membership from the admin cluster `prometheus_stats`, answered at once with the
//! mesh's endpoints). The simulated Envoy routes as `override_host` does: the first
//! named endpoint that is in the cluster, otherwise its round robin fallback, which
//! starts each worker at a random place (as Envoy's does: with one start for all, every
//! worker's first fallback call went to the same endpoint at once, and the queue it
//! built there kept that endpoint at 60 % of a fair share for the low-rate run).

use std::collections::HashMap;

use proxy_wasm_host::scenario::{clusters_json, respond, unary_call_headers, Reply, EPOCH};
use proxy_wasm_host::{headers, Cost, Vm, VmOptions, WasmHost};

use ewma_balancer::rng::SplitMix64;

use crate::policy::{FuelUse, Origin, Outcome, Policy};
use crate::station::Station;
use crate::Nanos;

pub const CLUSTER: &str = "greeter";
pub const ADMIN_CLUSTER: &str = "prometheus_stats";
const OVERRIDE_HEADER: &[u8] = b"x-ewma-balancer-host";

struct Proxy {
    host: WasmHost,
    vms: Vec<Vm>,
    next_tick: Vec<Option<Nanos>>,
    fallback: Vec<usize>,
}

pub struct Filter {
    proxies: Vec<Proxy>,
    addrs: Vec<String>,
    by_addr: HashMap<String, usize>,
    admin_answer: Vec<u8>,
    /// A call's stream context in its VM.
    streams: HashMap<u64, u32>,
    /// The earliest tick due in any VM.
    next_tick: Nanos,
    /// Calls before this time are warm-up: their cost is not counted.
    measure_from: Nanos,
    request_cost: Cost,
    measured: u64,
    tick_cost: Cost,
}

fn ns(d: std::time::Duration) -> Nanos {
    d.as_nanos() as Nanos
}

impl Filter {
    /// Starts `proxies` Envoys of `workers` VMs each on the module `host` compiled,
    /// balancing over `addrs`. VMs start 7,919 ns apart (the filter seeds its choices
    /// from the time it is configured; proxies started at the same instant would choose
    /// alike).
    pub fn new(
        host: &WasmHost,
        proxies: usize,
        workers: usize,
        addrs: &[String],
        measure_from: Nanos,
        seed: u64,
    ) -> Outcome<Self> {
        let mut rng = SplitMix64::new(seed);
        let options = VmOptions {
            plugin_config: format!(r#"{{"adminCluster":"{ADMIN_CLUSTER}"}}"#).into_bytes(),
            upstreams: vec![ADMIN_CLUSTER.to_owned()],
            ..VmOptions::default()
        };
        let mut started = 0u64;
        let proxies = (0..proxies)
            .map(|_| {
                let host = host.fresh();
                let vms = (0..workers)
                    .map(|_| {
                        host.set_now(EPOCH + started * 7_919);
                        started += 1;
                        let vm = host.vm(&options).map_err(|e| e.to_string())?;
                        if vm.configured {
                            Ok(vm)
                        } else {
                            Err(format!(
                                "the plugin refused its configuration: {:?}",
                                vm.logs()
                            ))
                        }
                    })
                    .collect::<Outcome<Vec<Vm>>>()?;
                host.set_now(EPOCH);
                let next_tick = vms.iter().map(|v| v.tick_period().map(ns)).collect();
                Ok(Proxy {
                    host,
                    fallback: (0..workers).map(|_| rng.below(addrs.len())).collect(),
                    vms,
                    next_tick,
                })
            })
            .collect::<Outcome<Vec<Proxy>>>()?;
        let admin_answer = clusters_json(CLUSTER, addrs.iter().map(|a| (a.as_str(), "HEALTHY")));
        let mut filter = Self {
            proxies,
            addrs: addrs.to_vec(),
            by_addr: addrs
                .iter()
                .enumerate()
                .map(|(i, a)| (a.clone(), i))
                .collect(),
            admin_answer,
            streams: HashMap::new(),
            next_tick: 0,
            measure_from,
            request_cost: Cost::default(),
            measured: 0,
            tick_cost: Cost::default(),
        };
        filter.next_tick = filter.earliest_tick();
        Ok(filter)
    }

    fn earliest_tick(&self) -> Nanos {
        self.proxies
            .iter()
            .flat_map(|p| p.next_tick.iter().flatten())
            .min()
            .copied()
            .unwrap_or(Nanos::MAX)
    }

    fn count(&mut self, cost: Cost, now: Nanos) {
        if now >= self.measure_from {
            self.request_cost += cost;
        }
    }
}

impl Policy for Filter {
    fn key(&self) -> &'static str {
        "ewma"
    }

    fn advance(&mut self, now: Nanos) -> Outcome<()> {
        if now < self.next_tick {
            return Ok(());
        }
        for p in &mut self.proxies {
            for (w, vm) in p.vms.iter_mut().enumerate() {
                while let Some(due) = p.next_tick[w].filter(|&d| d <= now) {
                    p.host.set_now(EPOCH + due);
                    let mut cost = vm.tick().map_err(|e| e.to_string())?;
                    for call in vm.take_http_calls() {
                        cost += vm
                            .http_call_response(
                                call.token,
                                headers(&[(":status", "200")]),
                                self.admin_answer.clone(),
                            )
                            .map_err(|e| e.to_string())?;
                    }
                    if due >= self.measure_from {
                        self.tick_cost += cost;
                    }
                    p.next_tick[w] = vm.tick_period().map(|t| due + ns(t));
                }
            }
        }
        self.next_tick = self.earliest_tick();
        Ok(())
    }

    fn pick(&mut self, call: u64, o: Origin, now: Nanos, _: &[Station]) -> Outcome<usize> {
        let p = &mut self.proxies[o.proxy];
        p.host.set_now(EPOCH + now);
        let vm = &mut p.vms[o.worker];
        let (ctx, mut cost) = vm
            .request(
                unary_call_headers(),
                &[(&["xds", "cluster_name"], CLUSTER.as_bytes().to_vec())],
            )
            .map_err(|e| e.to_string())?;
        cost += vm.request_body(ctx, 12, true).map_err(|e| e.to_string())?;
        let named = vm
            .request_headers(ctx)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(OVERRIDE_HEADER))
            .map(|(_, v)| v);
        let by_header = named.as_deref().and_then(|list| {
            std::str::from_utf8(list)
                .ok()?
                .split(',')
                .find_map(|h| self.by_addr.get(h.trim()).copied())
        });
        let endpoint = match by_header {
            Some(e) => e,
            None => {
                let slot = &mut p.fallback[o.worker];
                *slot = (*slot + 1) % self.addrs.len().max(1);
                *slot
            }
        };
        let addr = self.addrs.get(endpoint).cloned().unwrap_or_default();
        vm.set_property(ctx, &["upstream", "address"], addr.into_bytes());
        vm.set_property(
            ctx,
            &["upstream", "request_attempt_count"],
            1i64.to_le_bytes().to_vec(),
        );
        self.streams.insert(call, ctx);
        if now >= self.measure_from {
            self.measured += 1;
        }
        self.count(cost, now);
        Ok(endpoint)
    }

    fn complete(&mut self, call: u64, o: Origin, _: usize, now: Nanos) -> Outcome<()> {
        let ctx = self.streams.remove(&call).ok_or("no such stream")?;
        let p = &mut self.proxies[o.proxy];
        p.host.set_now(EPOCH + now);
        let cost = respond(&mut p.vms[o.worker], ctx, Reply::Ok).map_err(|e| e.to_string())?;
        self.count(cost, now);
        Ok(())
    }

    fn fuel(&self) -> Option<FuelUse> {
        let n = self.measured.max(1) as f64;
        Some(FuelUse {
            per_request: self.request_cost.fuel as f64 / n,
            ticks_per_request: self.tick_cost.fuel as f64 / n,
        })
    }
}
