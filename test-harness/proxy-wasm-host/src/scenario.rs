//! A scenario driver: requests arrive at a fixed interval across W workers (VMs) and go
//! through the filter; a simulated Envoy routes each as `override_host` does (the named
//! endpoint if it is in the cluster, otherwise round robin), and each endpoint answers
//! after its latency with its outcome, both functions of time. Endpoints may join and
//! leave the cluster mid-run. Time is a fake clock; nothing sleeps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use wasmtime::Result;

use super::vm::{Cost, Vm, VmOptions, WasmHost};
use super::{headers, HeaderMap};

pub type Nanos = u64;

/// 2023-11-14T22:13:20Z: a wall clock in nanoseconds, as Envoy reports it.
pub const EPOCH: Nanos = 1_700_000_000_000_000_000;

/// How an endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `:status 200`, then trailers with `grpc-status: 0`.
    Ok,
    /// A trailers-only response with this gRPC status (e.g. 14, UNAVAILABLE).
    Status(u32),
    /// Envoy could not connect: its local reply, trailers-only `grpc-status: 14`,
    /// response flags UF.
    ConnectFailure,
    /// The client reset the stream before any response (HTTP/2 `RST_STREAM`): no
    /// response, response flags DR, as Envoy 1.40 reports it.
    ClientReset,
}

type Behaviour<T> = Box<dyn Fn(Nanos) -> T>;

/// A simulated endpoint; its behaviour is a function of the scenario time (ns from 0).
pub struct Endpoint {
    pub addr: String,
    latency: Behaviour<Duration>,
    reply: Behaviour<Reply>,
    /// Its EDS health status (`HEALTHY`, `UNHEALTHY`, `DRAINING`, …) or an admin health
    /// flag (`failed_outlier_check`) at a time: what Envoy's admin interface reports, and
    /// what its round robin fallback skips when not healthy.
    health: Behaviour<&'static str>,
    joins: Nanos,
    leaves: Option<Nanos>,
}

impl Endpoint {
    pub fn new(addr: impl Into<String>, latency: Duration) -> Self {
        Self {
            addr: addr.into(),
            latency: Box::new(move |_| latency),
            reply: Box::new(|_| Reply::Ok),
            health: Box::new(|_| "HEALTHY"),
            joins: 0,
            leaves: None,
        }
    }

    pub fn latency_fn(mut self, f: impl Fn(Nanos) -> Duration + 'static) -> Self {
        self.latency = Box::new(f);
        self
    }

    pub fn reply_fn(mut self, f: impl Fn(Nanos) -> Reply + 'static) -> Self {
        self.reply = Box::new(f);
        self
    }

    pub fn always(self, reply: Reply) -> Self {
        self.reply_fn(move |_| reply)
    }

    pub fn health_fn(mut self, f: impl Fn(Nanos) -> &'static str + 'static) -> Self {
        self.health = Box::new(f);
        self
    }

    fn healthy_at(&self, t: Nanos) -> bool {
        (self.health)(t) == "HEALTHY"
    }

    pub fn joins_at(mut self, t: Duration) -> Self {
        self.joins = t.as_nanos() as Nanos;
        self
    }

    pub fn leaves_at(mut self, t: Duration) -> Self {
        self.leaves = Some(t.as_nanos() as Nanos);
        self
    }

    fn member_at(&self, t: Nanos) -> bool {
        t >= self.joins && self.leaves.is_none_or(|l| t < l)
    }
}

/// What to run.
pub struct Scenario {
    /// Independent Envoys (each its own shared data and clock), `workers` VMs each.
    pub proxies: usize,
    /// Workers (VMs sharing one shared-data store) per Envoy.
    pub workers: usize,
    pub endpoints: Vec<Endpoint>,
    pub requests: usize,
    /// Time between request arrivals (across all workers).
    pub interval: Duration,
    /// Requests not counted in `Run::served` (they still run).
    pub warm_up: usize,
    pub options: VmOptions,
    pub cluster: String,
    pub override_header: String,
    /// Headers every client request carries (e.g. a spoofed override header).
    pub client_headers: Vec<(String, String)>,
    /// The clock the VMs see for a scenario time (default: `EPOCH + t`).
    pub clock: Box<dyn Fn(Nanos) -> Nanos>,
    /// The cluster to Envoy's admin interface, if the simulated Envoy has one: HTTP calls
    /// to it are answered at once with the scenario's members as `/clusters?format=json`.
    pub admin_cluster: Option<String>,
}

impl Scenario {
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        Self {
            proxies: 1,
            workers: 1,
            endpoints,
            requests: 1000,
            interval: Duration::from_millis(1),
            warm_up: 0,
            options: VmOptions::default(),
            cluster: "greeter".into(),
            override_header: "x-ewma-balancer-host".into(),
            client_headers: Vec::new(),
            clock: Box::new(|t| EPOCH + t),
            admin_cluster: None,
        }
    }
}

/// One request's fate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub index: usize,
    pub at: Nanos,
    /// The VM that handled it: `proxy × workers + worker`.
    pub worker: usize,
    /// The endpoint the filter named first in the override header (after it ran).
    pub chosen: Option<String>,
    /// The one it named second, for a retry (`winner,runner-up`).
    pub runner_up: Option<String>,
    /// The endpoint that served it (`None`: no endpoint in the cluster).
    pub endpoint: Option<String>,
    pub reply: Reply,
}

/// What a scenario produced.
pub struct Run {
    pub requests: Vec<Served>,
    /// Requests per endpoint after warm-up.
    pub served: BTreeMap<String, u64>,
    /// Cost of the measured (post-warm-up) requests, all callbacks included.
    pub request_cost: Cost,
    pub measured: u64,
    pub tick_cost: Cost,
    pub ticks: u64,
    /// Admin membership requests answered, their bytes and what handling them cost.
    pub admin_calls: u64,
    pub admin_bytes: u64,
    pub admin_cost: Cost,
    pub vms: Vec<Vm>,
}

impl Run {
    pub fn share(&self, addr: &str) -> f64 {
        let total: u64 = self.served.values().sum();
        self.served.get(addr).copied().unwrap_or(0) as f64 / total.max(1) as f64
    }

    pub fn fuel_per_request(&self) -> u64 {
        self.request_cost.fuel / self.measured.max(1)
    }

    pub fn hostcalls_per_request(&self) -> f64 {
        self.request_cost.hostcalls as f64 / self.measured.max(1) as f64
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Completion {
    at: Nanos,
    seq: usize,
    worker: usize,
    ctx: u32,
}

fn int(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

impl Scenario {
    /// Runs the scenario on fresh VMs of `host`.
    pub fn run(&self, host: &WasmHost) -> Result<Run> {
        // Workers start a few microseconds apart, as Envoy's do, and proxies too (the
        // filter seeds its random choices from the time it is configured: proxies
        // started at the same instant would make the same choices).
        let mut options = self.options.clone();
        options.upstreams.extend(self.admin_cluster.clone());
        // The first Envoy is `host` itself (its shared data and stats stay readable).
        let others: Vec<WasmHost> = (1..self.proxies.max(1)).map(|_| host.fresh()).collect();
        let mut vms = std::iter::once(host)
            .chain(others.iter())
            .flat_map(|proxy| (0..self.workers.max(1)).map(move |w| (proxy, w)))
            .enumerate()
            .map(|(vm, (proxy, _))| {
                proxy.set_now((self.clock)(0) + vm as Nanos * 7_919);
                let vm = proxy.vm(&options);
                proxy.set_now((self.clock)(0));
                vm
            })
            .collect::<Result<Vec<_>>>()?;
        host.set_now((self.clock)(0));
        wasmtime::ensure!(
            vms.iter().all(|v| v.configured),
            "the plugin refused its configuration: {:?}",
            vms[0].logs()
        );
        self.drive(host, &mut vms).map(|mut run| {
            run.vms = vms;
            run
        })
    }

    fn drive(&self, host: &WasmHost, vms: &mut [Vm]) -> Result<Run> {
        let interval = self.interval.as_nanos() as Nanos;
        let mut next_tick: Vec<Option<Nanos>> = vms
            .iter()
            .map(|v| v.tick_period().map(|p| p.as_nanos() as Nanos))
            .collect();
        let mut completions: BinaryHeap<Reverse<Completion>> = BinaryHeap::new();
        let mut in_flight: BTreeMap<(usize, u32), (usize, Reply)> = BTreeMap::new();
        let mut run = Run {
            requests: Vec::with_capacity(self.requests),
            served: BTreeMap::new(),
            request_cost: Cost::default(),
            measured: 0,
            tick_cost: Cost::default(),
            ticks: 0,
            admin_calls: 0,
            admin_bytes: 0,
            admin_cost: Cost::default(),
            vms: Vec::new(),
        };
        // Envoy's round robin is per worker.
        let mut rr = vec![0usize; vms.len()];
        let mut arrived = 0usize;
        loop {
            let arrival = (arrived < self.requests).then(|| arrived as Nanos * interval);
            let completion = completions.peek().map(|Reverse(c)| c.at);
            let tick = next_tick.iter().flatten().min().copied();
            let pending_work = arrival.is_some() || completion.is_some();
            if !pending_work {
                break;
            }
            let t = [arrival, completion, tick]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(0);
            host.set_now((self.clock)(t));
            if tick == Some(t) {
                for (w, vm) in vms.iter_mut().enumerate() {
                    if let Some(due) = next_tick[w].filter(|&d| d == t) {
                        vm.set_now((self.clock)(t));
                        run.tick_cost += vm.tick()?;
                        run.ticks += 1;
                        next_tick[w] = vm.tick_period().map(|p| due + p.as_nanos() as Nanos);
                        for call in vm.take_http_calls() {
                            let answer = self.admin_answer(t);
                            run.admin_calls += 1;
                            run.admin_bytes += answer.len() as u64;
                            run.admin_cost += vm.http_call_response(
                                call.token,
                                headers(&[(":status", "200")]),
                                answer,
                            )?;
                        }
                    }
                }
                continue;
            }
            if completion == Some(t) {
                let Some(Reverse(c)) = completions.pop() else {
                    break;
                };
                let Some((index, reply)) = in_flight.remove(&(c.worker, c.ctx)) else {
                    continue;
                };
                vms[c.worker].set_now((self.clock)(t));
                let cost = respond(&mut vms[c.worker], c.ctx, reply)?;
                if index >= self.warm_up {
                    run.request_cost += cost;
                }
                continue;
            }
            // An arrival.
            let index = arrived;
            arrived += 1;
            let worker = index % vms.len();
            let vm = &mut vms[worker];
            vm.set_now((self.clock)(t));
            let mut request = unary_call_headers();
            request.extend(
                self.client_headers
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
            );
            let (ctx, mut cost) = vm.request(
                request,
                &[(&["xds", "cluster_name"], self.cluster.as_bytes().to_vec())],
            )?;
            // A unary call's message, ending the request stream.
            cost += vm.request_body(ctx, 12, true)?;
            let named: Option<String> = vm
                .request_headers(ctx)
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(self.override_header.as_bytes()))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
            let members: Vec<usize> = (0..self.endpoints.len())
                .filter(|&i| self.endpoints[i].member_at(t))
                .collect();
            let by_header = named.as_deref().and_then(|list| {
                list.split(',').find_map(|h| {
                    members
                        .iter()
                        .copied()
                        .find(|&i| self.endpoints[i].addr == h.trim())
                })
            });
            // The fallback skips hosts that are not healthy (all of them when none is).
            let healthy: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| self.endpoints[i].healthy_at(t))
                .collect();
            let pool = if healthy.is_empty() {
                &members
            } else {
                &healthy
            };
            let target = by_header.or_else(|| {
                (!pool.is_empty()).then(|| {
                    rr[worker] += 1;
                    pool[rr[worker] % pool.len()]
                })
            });
            let (endpoint, reply, latency) = match target {
                Some(i) => {
                    let e = &self.endpoints[i];
                    vm.set_property(ctx, &["upstream", "address"], e.addr.as_bytes().to_vec());
                    // This Envoy never retries: one attempt.
                    vm.set_property(ctx, &["upstream", "request_attempt_count"], int(1));
                    let reply = (e.reply)(t);
                    let latency = match reply {
                        Reply::ConnectFailure => Duration::from_micros(100),
                        Reply::ClientReset => Duration::from_millis(1),
                        _ => (e.latency)(t),
                    };
                    (Some(e.addr.clone()), reply, latency)
                }
                None => (None, Reply::Status(14), Duration::from_micros(50)),
            };
            if index >= self.warm_up {
                run.request_cost += cost;
                run.measured += 1;
                if let Some(e) = &endpoint {
                    *run.served.entry(e.clone()).or_default() += 1;
                }
            }
            run.requests.push(Served {
                index,
                at: t,
                worker,
                chosen: named
                    .as_deref()
                    .and_then(|l| l.split(',').next())
                    .map(|h| h.trim().to_owned()),
                runner_up: named
                    .as_deref()
                    .and_then(|l| l.split(',').nth(1))
                    .map(|h| h.trim().to_owned()),
                endpoint,
                reply,
            });
            in_flight.insert((worker, ctx), (index, reply));
            completions.push(Reverse(Completion {
                at: t + latency.as_nanos() as Nanos,
                seq: index,
                worker,
                ctx,
            }));
        }
        Ok(run)
    }
}

impl Scenario {
    /// `/clusters?format=json` for the scenario's members at scenario time `t`.
    fn admin_answer(&self, t: Nanos) -> Vec<u8> {
        clusters_json(
            &self.cluster,
            self.endpoints
                .iter()
                .filter(|e| e.member_at(t))
                .map(|e| (e.addr.as_str(), (e.health)(t))),
        )
    }
}

/// `/clusters?format=json` as Envoy 1.40 answers it for one cluster: each host's address,
/// weight 1 and health (an EDS status, or a health flag such as `failed_outlier_check`),
/// and a few of the stats each host carries (the answer's size matters: about 900 bytes
/// per host in Envoy).
pub fn clusters_json<'a>(
    cluster: &str,
    hosts: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<u8> {
    let hosts: Vec<String> = hosts
        .map(|(addr, health)| {
            let (ip, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            let health = match health {
                flag @ ("failed_outlier_check" | "failed_active_health_check") => {
                    format!(r#"{{"eds_health_status":"HEALTHY","{flag}":true}}"#)
                }
                eds => format!(r#"{{"eds_health_status":"{eds}"}}"#),
            };
            format!(
                r#"{{"address":{{"socket_address":{{"address":"{ip}","port_value":{port}}}}},"stats":[{{"name":"cx_connect_fail"}},{{"name":"cx_total","value":"3"}},{{"name":"rq_error"}},{{"name":"rq_success","value":"120"}},{{"name":"rq_timeout"}},{{"name":"rq_total","value":"120"}},{{"type":"GAUGE","name":"cx_active","value":"1"}},{{"type":"GAUGE","name":"rq_active"}},{{"type":"GAUGE","name":"rq_pending_active"}}],"health_status":{health},"weight":1,"locality":{{}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"cluster_statuses":[{{"name":"{cluster}","host_statuses":[{}],"observability_name":"{cluster}"}}]}}"#,
        hosts.join(","),
    )
    .into_bytes()
}

/// The request headers of a unary `helloworld.Greeter/SayHello` call.
pub fn unary_call_headers() -> HeaderMap {
    headers(&[
        (":method", "POST"),
        (":path", "/helloworld.Greeter/SayHello"),
        (":authority", "greeter"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ])
}

/// Delivers an endpoint's reply to the filter as Envoy would, and ends the stream.
pub fn respond(vm: &mut Vm, ctx: u32, reply: Reply) -> Result<Cost> {
    let ok_headers = || headers(&[(":status", "200"), ("content-type", "application/grpc")]);
    let mut cost = Cost::default();
    // Envoy always has response flags (0: none).
    vm.set_property(ctx, &["response", "flags"], int(0));
    match reply {
        Reply::ClientReset => {
            vm.set_property(ctx, &["response", "flags"], int(0x1000_0000));
            vm.set_property(
                ctx,
                &["response", "code_details"],
                b"http2.remote_reset".to_vec(),
            );
        }
        Reply::Ok => {
            vm.set_property(ctx, &["response", "code"], int(200));
            vm.set_property(ctx, &["response", "grpc_status"], int(0));
            cost += vm.response_headers(ctx, ok_headers(), false)?;
            cost += vm.response_trailers(ctx, headers(&[("grpc-status", "0")]))?;
        }
        Reply::Status(_) | Reply::ConnectFailure => {
            vm.set_property(
                ctx,
                &["response", "code_details"],
                match reply {
                    Reply::ConnectFailure => {
                        b"upstream_reset_before_response_started{remote_connection_failure}"
                            .to_vec()
                    }
                    _ => b"via_upstream".to_vec(),
                },
            );
            let code = if let Reply::Status(c) = reply { c } else { 14 };
            vm.set_property(ctx, &["response", "code"], int(200));
            vm.set_property(ctx, &["response", "grpc_status"], int(i64::from(code)));
            if reply == Reply::ConnectFailure {
                vm.set_property(ctx, &["response", "flags"], int(32));
            }
            let mut h: HeaderMap = ok_headers();
            h.push((b"grpc-status".to_vec(), code.to_string().into_bytes()));
            cost += vm.response_headers(ctx, h, true)?;
        }
    }
    cost += vm.finish(ctx)?;
    Ok(cost)
}
