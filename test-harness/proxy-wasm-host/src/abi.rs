//! The host side of the proxy-wasm ABI 0.2.1 (and the four WASI calls a Rust
//! `wasm32-wasip1` module imports), as Envoy implements them, for wasmtime.
//!
//! Every import the filter links is implemented with Envoy's semantics. Calls that need
//! an upstream (`proxy_http_call`, `proxy_grpc_*`) answer as Envoy does when the named
//! cluster does not exist, and are recorded in `VmState::unsupported_calls` so a test can
//! assert they never happen. An import outside this list fails instantiation by name
//! (`KNOWN_IMPORTS`).

use wasmtime::{bail, format_err, Result};
use wasmtime::{Caller, Linker, Memory};

use super::env::{MetricType, Status};
use super::state::{deserialize_map, serialize_map, HttpCall, LogLine, VmState};

/// Every (module, name) this host implements.
pub const KNOWN_IMPORTS: &[(&str, &str)] = &[
    ("env", "proxy_log"),
    ("env", "proxy_get_log_level"),
    ("env", "proxy_get_current_time_nanoseconds"),
    ("env", "proxy_set_tick_period_milliseconds"),
    ("env", "proxy_get_buffer_bytes"),
    ("env", "proxy_set_buffer_bytes"),
    ("env", "proxy_get_header_map_pairs"),
    ("env", "proxy_set_header_map_pairs"),
    ("env", "proxy_get_header_map_value"),
    ("env", "proxy_replace_header_map_value"),
    ("env", "proxy_remove_header_map_value"),
    ("env", "proxy_add_header_map_value"),
    ("env", "proxy_get_property"),
    ("env", "proxy_set_property"),
    ("env", "proxy_get_shared_data"),
    ("env", "proxy_set_shared_data"),
    ("env", "proxy_register_shared_queue"),
    ("env", "proxy_resolve_shared_queue"),
    ("env", "proxy_dequeue_shared_queue"),
    ("env", "proxy_enqueue_shared_queue"),
    ("env", "proxy_continue_stream"),
    ("env", "proxy_close_stream"),
    ("env", "proxy_send_local_response"),
    ("env", "proxy_http_call"),
    ("env", "proxy_grpc_call"),
    ("env", "proxy_grpc_stream"),
    ("env", "proxy_grpc_send"),
    ("env", "proxy_grpc_cancel"),
    ("env", "proxy_grpc_close"),
    ("env", "proxy_get_status"),
    ("env", "proxy_set_effective_context"),
    ("env", "proxy_call_foreign_function"),
    ("env", "proxy_done"),
    ("env", "proxy_define_metric"),
    ("env", "proxy_get_metric"),
    ("env", "proxy_record_metric"),
    ("env", "proxy_increment_metric"),
    ("wasi_snapshot_preview1", "environ_get"),
    ("wasi_snapshot_preview1", "environ_sizes_get"),
    ("wasi_snapshot_preview1", "fd_write"),
    ("wasi_snapshot_preview1", "proc_exit"),
];

type C<'a> = Caller<'a, VmState>;

fn memory(c: &mut C<'_>) -> Result<Memory> {
    c.get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| format_err!("the module exports no memory"))
}

fn read(c: &mut C<'_>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let mem = memory(c)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let data = mem.data(&c);
    let end = ptr
        .checked_add(len)
        .ok_or_else(|| format_err!("pointer overflow"))?;
    data.get(ptr..end)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format_err!("guest pointer {ptr}+{len} out of bounds"))
}

fn write(c: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let mem = memory(c)?;
    mem.write(c, ptr as u32 as usize, bytes)
        .map_err(|e| format_err!("guest write at {ptr}: {e}"))
}

fn write_u32(c: &mut C<'_>, ptr: i32, v: u32) -> Result<()> {
    write(c, ptr, &v.to_le_bytes())
}

/// Copies `bytes` into memory the module allocates, and stores pointer and size.
fn return_bytes(c: &mut C<'_>, bytes: &[u8], ret_ptr: i32, ret_size: i32) -> Result<()> {
    let alloc = c
        .get_export("proxy_on_memory_allocate")
        .and_then(|e| e.into_func())
        .ok_or_else(|| format_err!("the module exports no proxy_on_memory_allocate"))?
        .typed::<i32, i32>(&c)?;
    let ptr = alloc.call(&mut *c, bytes.len() as i32)?;
    if ptr == 0 && !bytes.is_empty() {
        bail!("proxy_on_memory_allocate({}) returned null", bytes.len());
    }
    write(c, ptr, bytes)?;
    write_u32(c, ret_ptr, ptr as u32)?;
    write_u32(c, ret_size, bytes.len() as u32)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn unsupported(c: &mut C<'_>, name: &'static str) -> i32 {
    c.data_mut().count(name);
    c.data_mut().unsupported_calls.push(name);
    Status::BadArgument as i32
}

/// Adds every import to `linker`.
pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            c.data_mut().count("proxy_log");
            let message = text(&read(&mut c, ptr, len)?);
            c.data_mut().logs.push(LogLine { level, message });
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C<'_>, ret: i32| -> Result<i32> {
            c.data_mut().count("proxy_get_log_level");
            let level = c.data().log_level as u32;
            write_u32(&mut c, ret, level)?;
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: i32| -> Result<i32> {
            c.data_mut().count("proxy_get_current_time_nanoseconds");
            let now = c.data().env.now_ns();
            write(&mut c, ret, &now.to_le_bytes())?;
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, ms: i32| -> i32 {
            c.data_mut().count("proxy_set_tick_period_milliseconds");
            c.data_mut().tick_period_ms = ms as u32;
            Status::Ok as i32
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>,
         kind: i32,
         start: i32,
         max: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> Result<i32> {
            c.data_mut().count("proxy_get_buffer_bytes");
            let buffer = match kind {
                4 => match &c.data().http_response {
                    Some((_, body)) => body.clone(),
                    None => return Ok(Status::NotFound as i32),
                },
                6 => c.data().vm_config.clone(),
                7 => c.data().plugin_config.clone(),
                _ => return Ok(Status::NotFound as i32),
            };
            let start = (start as u32 as usize).min(buffer.len());
            let end = start.saturating_add(max as u32 as usize).min(buffer.len());
            if start == end {
                return Ok(Status::NotFound as i32);
            }
            return_bytes(&mut c, &buffer[start..end], ret_ptr, ret_size)?;
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, _k: i32, _s: i32, _n: i32, _p: i32, _l: i32| -> i32 {
            // Bodies are not modelled: Envoy answers NotFound for a buffer the stream lacks.
            c.data_mut().count("proxy_set_buffer_bytes");
            Status::NotFound as i32
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, kind: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            c.data_mut().count("proxy_get_header_map_pairs");
            let Some(map) = c.data_mut().map(kind).cloned() else {
                return Ok(Status::NotFound as i32);
            };
            return_bytes(&mut c, &serialize_map(&map), ret_ptr, ret_size)?;
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, kind: i32, ptr: i32, len: i32| -> Result<i32> {
            c.data_mut().count("proxy_set_header_map_pairs");
            let bytes = read(&mut c, ptr, len)?;
            let Some(new) = deserialize_map(&bytes) else {
                return Ok(Status::BadArgument as i32);
            };
            match c.data_mut().map(kind) {
                Some(map) => {
                    *map = new;
                    Ok(Status::Ok as i32)
                }
                None => Ok(Status::NotFound as i32),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, kind: i32, kp: i32, kl: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            c.data_mut().count("proxy_get_header_map_value");
            let key = read(&mut c, kp, kl)?;
            let value = c.data_mut().map(kind).and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                    .map(|(_, v)| v.clone())
            });
            match value {
                Some(v) => {
                    return_bytes(&mut c, &v, ret_ptr, ret_size)?;
                    Ok(Status::Ok as i32)
                }
                None => Ok(Status::NotFound as i32),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C<'_>, kind: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<i32> {
            c.data_mut().count("proxy_replace_header_map_value");
            let (key, value) = (
                read(&mut c, kp, kl)?.to_ascii_lowercase(),
                read(&mut c, vp, vl)?,
            );
            let Some(map) = c.data_mut().map(kind) else {
                return Ok(Status::NotFound as i32);
            };
            map.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            map.push((key, value));
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, kind: i32, kp: i32, kl: i32| -> Result<i32> {
            c.data_mut().count("proxy_remove_header_map_value");
            let key = read(&mut c, kp, kl)?;
            let Some(map) = c.data_mut().map(kind) else {
                return Ok(Status::NotFound as i32);
            };
            map.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C<'_>, kind: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<i32> {
            c.data_mut().count("proxy_add_header_map_value");
            let (key, value) = (
                read(&mut c, kp, kl)?.to_ascii_lowercase(),
                read(&mut c, vp, vl)?,
            );
            let Some(map) = c.data_mut().map(kind) else {
                return Ok(Status::NotFound as i32);
            };
            map.push((key, value));
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, pp: i32, pl: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            c.data_mut().count("proxy_get_property");
            let path = read(&mut c, pp, pl)?;
            match c.data().property(&path).cloned() {
                Some(value) => {
                    return_bytes(&mut c, &value, ret_ptr, ret_size)?;
                    Ok(Status::Ok as i32)
                }
                None => Ok(Status::NotFound as i32),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32| -> Result<i32> {
            c.data_mut().count("proxy_set_property");
            let (path, value) = (read(&mut c, pp, pl)?, read(&mut c, vp, vl)?);
            let current = c.data().current;
            match c.data_mut().streams.get_mut(&current) {
                Some(s) => s.properties.insert(path, value),
                None => c.data_mut().root_properties.insert(path, value),
            };
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>,
         kp: i32,
         kl: i32,
         ret_ptr: i32,
         ret_size: i32,
         ret_cas: i32|
         -> Result<i32> {
            c.data_mut().count("proxy_get_shared_data");
            let key = text(&read(&mut c, kp, kl)?);
            let found = c
                .data()
                .env
                .shared()
                .get(&key)
                .map(|(v, cas)| (v.to_vec(), cas));
            let Some((value, cas)) = found else {
                return Ok(Status::NotFound as i32);
            };
            return_bytes(&mut c, &value, ret_ptr, ret_size)?;
            write_u32(&mut c, ret_cas, cas)?;
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> Result<i32> {
            c.data_mut().count("proxy_set_shared_data");
            let key = text(&read(&mut c, kp, kl)?);
            let value = read(&mut c, vp, vl)?;
            Ok(match c.data().env.shared().set(&key, &value, cas as u32) {
                Ok(()) => Status::Ok,
                Err(_) => Status::CasMismatch,
            } as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: i32, nl: i32, ret: i32| -> Result<i32> {
            c.data_mut().count("proxy_register_shared_queue");
            let name = text(&read(&mut c, np, nl)?);
            let id = c.data().env.queues().register(&name);
            write_u32(&mut c, ret, id)?;
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, _vp: i32, _vl: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            c.data_mut().count("proxy_resolve_shared_queue");
            let name = text(&read(&mut c, np, nl)?);
            let Some(id) = c.data().env.queues().resolve(&name) else {
                return Ok(Status::NotFound as i32);
            };
            write_u32(&mut c, ret, id)?;
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            c.data_mut().count("proxy_dequeue_shared_queue");
            let item = match c.data().env.queues().queue(id as u32) {
                None => return Ok(Status::NotFound as i32),
                Some(q) => q.pop_front(),
            };
            match item {
                Some(v) => {
                    return_bytes(&mut c, &v, ret_ptr, ret_size)?;
                    Ok(Status::Ok as i32)
                }
                None => Ok(7), // Empty
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, id: i32, vp: i32, vl: i32| -> Result<i32> {
            c.data_mut().count("proxy_enqueue_shared_queue");
            let value = read(&mut c, vp, vl)?;
            match c.data().env.queues().queue(id as u32) {
                Some(q) => {
                    q.push_back(value);
                    Ok(Status::Ok as i32)
                }
                None => Ok(Status::NotFound as i32),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: C<'_>, _t: i32| -> i32 {
            c.data_mut().count("proxy_continue_stream");
            Status::Ok as i32
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: C<'_>, _t: i32| -> i32 {
            c.data_mut().count("proxy_close_stream");
            Status::Ok as i32
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         code: i32,
         _dp: i32,
         _dl: i32,
         _bp: i32,
         _bl: i32,
         _hp: i32,
         _hl: i32,
         _grpc: i32|
         -> i32 {
            c.data_mut().count("proxy_send_local_response");
            let current = c.data().current;
            if let Some(s) = c.data_mut().streams.get_mut(&current) {
                s.local_response = Some(code as u32);
            }
            Status::Ok as i32
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         up: i32,
         up_len: i32,
         hp: i32,
         hl: i32,
         _bp: i32,
         _bl: i32,
         _tp: i32,
         _tl: i32,
         timeout: i32,
         token_ptr: i32|
         -> Result<i32> {
            c.data_mut().count("proxy_http_call");
            let upstream = text(&read(&mut c, up, up_len)?);
            // Envoy: a cluster it does not have is BadArgument.
            if !c.data().upstreams.contains(&upstream) {
                return Ok(Status::BadArgument as i32);
            }
            let Some(headers) = deserialize_map(&read(&mut c, hp, hl)?) else {
                return Ok(Status::BadArgument as i32);
            };
            let token = c.data().next_token;
            c.data_mut().next_token = token.wrapping_add(1).max(1);
            c.data_mut().http_calls.push(HttpCall {
                token,
                upstream,
                headers,
                timeout_ms: timeout as u32,
            });
            write_u32(&mut c, token_ptr, token)?;
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut c: C<'_>,
         _a: i32,
         _b: i32,
         _k2: i32,
         _d: i32,
         _e: i32,
         _f: i32,
         _g: i32,
         _h: i32,
         _i: i32,
         _j: i32,
         _k: i32,
         _l: i32|
         -> i32 { unsupported(&mut c, "proxy_grpc_call") },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |mut c: C<'_>,
         _a: i32,
         _b: i32,
         _k2: i32,
         _d: i32,
         _e: i32,
         _f: i32,
         _g: i32,
         _h: i32,
         _i: i32|
         -> i32 { unsupported(&mut c, "proxy_grpc_stream") },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |mut c: C<'_>, _t: i32, _p: i32, _l: i32, _e: i32| -> i32 {
            unsupported(&mut c, "proxy_grpc_send")
        },
    )?;
    linker.func_wrap("env", "proxy_grpc_cancel", |mut c: C<'_>, _t: i32| -> i32 {
        unsupported(&mut c, "proxy_grpc_cancel")
    })?;
    linker.func_wrap("env", "proxy_grpc_close", |mut c: C<'_>, _t: i32| -> i32 {
        unsupported(&mut c, "proxy_grpc_close")
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C<'_>, _code: i32, _p: i32, _l: i32| -> i32 {
            // No call has completed, so there is no status to report.
            c.data_mut().count("proxy_get_status");
            Status::NotFound as i32
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: i32| -> i32 {
            c.data_mut().count("proxy_set_effective_context");
            let id = id as u32;
            // The root context (as Envoy: callbacks such as an HTTP call's answer are
            // delivered to it) or a stream.
            if id == 0 || id == super::vm::ROOT_CONTEXT || c.data().streams.contains_key(&id) {
                c.data_mut().current = id;
                Status::Ok as i32
            } else {
                Status::BadArgument as i32
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C<'_>, _np: i32, _nl: i32, _ap: i32, _al: i32, _rp: i32, _rl: i32| -> i32 {
            c.data_mut().count("proxy_call_foreign_function");
            c.data_mut()
                .unsupported_calls
                .push("proxy_call_foreign_function");
            Status::NotFound as i32
        },
    )?;
    linker.func_wrap("env", "proxy_done", |mut c: C<'_>| -> i32 {
        c.data_mut().count("proxy_done");
        Status::Ok as i32
    })?;
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, kind: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            c.data_mut().count("proxy_define_metric");
            let Some(kind) = MetricType::from_abi(kind) else {
                return Ok(Status::BadArgument as i32);
            };
            let name = text(&read(&mut c, np, nl)?);
            let id = c.data().env.stats().define(kind, &name);
            write_u32(&mut c, ret, id)?;
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: i32, ret: i32| -> Result<i32> {
            c.data_mut().count("proxy_get_metric");
            let Some(value) = c.data().env.stats().get(id as u32) else {
                return Ok(Status::NotFound as i32);
            };
            write(&mut c, ret, &value.to_le_bytes())?;
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: C<'_>, id: i32, value: i64| -> i32 {
            c.data_mut().count("proxy_record_metric");
            c.data().env.stats().record(id as u32, value as u64) as i32
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: C<'_>, id: i32, offset: i64| -> i32 {
            c.data_mut().count("proxy_increment_metric");
            c.data().env.stats().increment(id as u32, offset) as i32
        },
    )?;
    link_wasi(linker)
}

/// The WASI calls Rust's standard library links: no environment, output captured as
/// log lines, exit as a trap.
fn link_wasi(linker: &mut Linker<VmState>) -> Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut c: C<'_>, count: i32, size: i32| -> Result<i32> {
            write_u32(&mut c, count, 0)?;
            write_u32(&mut c, size, 0)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(WASI, "environ_get", |_c: C<'_>, _a: i32, _b: i32| -> i32 {
        0
    })?;
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut c: C<'_>, fd: i32, iovs: i32, n: i32, written: i32| -> Result<i32> {
            let mut total = 0u32;
            let mut out = Vec::new();
            for i in 0..n {
                let iov = read(&mut c, iovs + i * 8, 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                out.extend(read(&mut c, ptr, len)?);
                total += len as u32;
            }
            c.data_mut().logs.push(LogLine {
                level: if fd == 2 { 4 } else { 2 },
                message: text(&out),
            });
            write_u32(&mut c, written, total)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(WASI, "proc_exit", |_c: C<'_>, code: i32| -> Result<()> {
        bail!("the module called proc_exit({code})")
    })?;
    Ok(())
}
