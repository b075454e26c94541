//! The proxy-wasm ABI (0.2.1) calls the filter makes, declared here rather than taken
//! from the SDK's `hostcalls`, because the SDK's wrappers `panic!` on any status they
//! do not expect (proxy-wasm 0.2.5: every wrapper but `set_shared_data`'s CAS mismatch),
//! and a Wasm panic traps the VM of a whole Envoy worker. Here every status comes back
//! as a number and every caller turns a failure into "don't balance this request".
//!
//! The SDK still provides the entry points (`proxy_on_*`), its context dispatcher and
//! `proxy_on_memory_allocate`, with which the host allocates the buffers it returns to
//! us: those are taken back with `Vec::from_raw_parts(ptr, len, len)`, as the SDK does.
//! Property paths are passed pre-serialized (parts separated by NUL), which spares an
//! allocation per read.

// The ABI is C functions taking raw pointers: this module is the filter's one use of
// `unsafe`, each block a single host call with pointers to live Rust values.
#![allow(unsafe_code)]

use std::ptr::null_mut;

/// `proxy_result_t`: 0 is OK.
pub type Status = u32;
pub const OK: Status = 0;
pub const NOT_FOUND: Status = 1;
pub const CAS_MISMATCH: Status = 8;

pub const REQUEST_HEADERS: u32 = 0;
pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
pub const HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> Status;
    fn proxy_get_log_level(return_level: *mut u32) -> Status;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> Status;
    fn proxy_set_tick_period_milliseconds(period: u32) -> Status;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> Status;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize)
        -> Status;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> Status;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> Status;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> Status;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> Status;
    fn proxy_record_metric(metric_id: u32, value: u64) -> Status;
}

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`.
fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host returned `data`, allocated by the SDK's `proxy_on_memory_allocate`
    // as a `Vec<u8>` of capacity `size`, and gives up its ownership with this return.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

fn status(s: Status) -> Result<(), Status> {
    if s == OK {
        Ok(())
    } else {
        Err(s)
    }
}

pub fn log(level: u32, message: &str) -> Result<(), Status> {
    // SAFETY: a pointer and length of a live `&str`.
    status(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
}

pub fn log_level() -> Result<u32, Status> {
    let mut level = 0;
    // SAFETY: a pointer to a live local.
    status(unsafe { proxy_get_log_level(&mut level) }).map(|()| level)
}

/// The host's clock, in nanoseconds since the epoch (wall clock in Envoy).
pub fn now() -> Result<u64, Status> {
    let mut t = 0;
    // SAFETY: a pointer to a live local.
    status(unsafe { proxy_get_current_time_nanoseconds(&mut t) }).map(|()| t)
}

pub fn set_tick_period_ms(period: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    status(unsafe { proxy_set_tick_period_milliseconds(period) })
}

pub fn buffer(buffer_type: u32) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: pointers to live locals, which the host fills.
    match unsafe { proxy_get_buffer_bytes(buffer_type, 0, usize::MAX, &mut data, &mut size) } {
        OK => Ok(owned(data, size)),
        NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

pub fn header(map_type: u32, name: &str) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: a live `&str`, and pointers to live locals, which the host fills.
    let s = unsafe {
        proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    match s {
        OK => Ok(owned(data, size)),
        NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

pub fn replace_header(map_type: u32, name: &str, value: &str) -> Result<(), Status> {
    // SAFETY: pointers and lengths of two live `&str`s.
    status(unsafe {
        proxy_replace_header_map_value(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn remove_header(map_type: u32, name: &str) -> Result<(), Status> {
    // SAFETY: a pointer and length of a live `&str`.
    status(unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) })
}

/// A property by its serialized path (parts separated by NUL, e.g. `b"upstream\0address"`).
pub fn property(path: &[u8]) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: a live slice, and pointers to live locals, which the host fills.
    match unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) } {
        OK => Ok(owned(data, size)),
        NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

/// The value under `key` and its CAS token.
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, Status> {
    let (mut data, mut size, mut cas) = (null_mut(), 0, 0);
    // SAFETY: a live `&str`, and pointers to live locals, which the host fills.
    let s =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match s {
        OK => Ok(owned(data, size).map(|v| (v, cas))),
        NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    // SAFETY: pointers and lengths of a live `&str` and slice.
    status(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

pub fn define_metric(metric_type: u32, name: &str) -> Result<u32, Status> {
    let mut id = 0;
    // SAFETY: a live `&str` and a pointer to a live local.
    status(unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) })
        .map(|()| id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: no pointers.
    status(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: no pointers.
    status(unsafe { proxy_record_metric(id, value) })
}
