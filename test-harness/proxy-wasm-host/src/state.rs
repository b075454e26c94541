//! The per-VM (per-worker) host state: configuration buffers, logs, tick period, the
//! header maps and properties of each stream, and hostcall accounting.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::env::HostEnv;

/// Header map types of the ABI.
pub const REQUEST_HEADERS: usize = 0;
pub const RESPONSE_HEADERS: usize = 2;
pub const RESPONSE_TRAILERS: usize = 3;
const MAP_TYPES: usize = 8;

pub type HeaderMap = Vec<(Vec<u8>, Vec<u8>)>;

/// One HTTP stream as the filter sees it.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    pub maps: [HeaderMap; MAP_TYPES],
    /// Properties by serialized path (`upstream\0address`).
    pub properties: HashMap<Vec<u8>, Vec<u8>>,
    /// A local reply the filter asked for, if any.
    pub local_response: Option<u32>,
}

/// A log line the module wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: i32,
    pub message: String,
}

pub const LOG_CRITICAL: i32 = 5;

pub struct VmState {
    pub env: Arc<HostEnv>,
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    pub log_level: i32,
    pub logs: Vec<LogLine>,
    pub tick_period_ms: u32,
    /// Properties of the root context (e.g. `plugin_name`).
    pub root_properties: HashMap<Vec<u8>, Vec<u8>>,
    pub streams: HashMap<u32, Stream>,
    /// The stream whose callback is running (0: the root context).
    pub current: u32,
    pub hostcalls: u64,
    pub hostcalls_by_name: BTreeMap<&'static str, u64>,
    /// Calls this host answers as Envoy does without a matching upstream (grpc_call,
    /// …): recorded so a test can assert the filter never makes them.
    pub unsupported_calls: Vec<&'static str>,
    /// Clusters an HTTP call may go to (Envoy answers BadArgument for any other).
    pub upstreams: Vec<String>,
    /// HTTP calls made and not answered yet.
    pub http_calls: Vec<HttpCall>,
    pub next_token: u32,
    /// The answer being delivered (during `proxy_on_http_call_response`).
    pub http_response: Option<(HeaderMap, Vec<u8>)>,
}

/// An HTTP call a module made (`proxy_http_call`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    pub upstream: String,
    pub headers: HeaderMap,
    pub timeout_ms: u32,
}

impl HttpCall {
    /// A request header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

impl VmState {
    pub fn new(env: Arc<HostEnv>) -> Self {
        Self {
            env,
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            log_level: 2,
            logs: Vec::new(),
            tick_period_ms: 0,
            root_properties: HashMap::new(),
            streams: HashMap::new(),
            current: 0,
            hostcalls: 0,
            hostcalls_by_name: BTreeMap::new(),
            unsupported_calls: Vec::new(),
            upstreams: Vec::new(),
            http_calls: Vec::new(),
            next_token: 1,
            http_response: None,
        }
    }

    pub fn count(&mut self, name: &'static str) {
        self.hostcalls += 1;
        *self.hostcalls_by_name.entry(name).or_default() += 1;
    }

    pub fn map(&mut self, map_type: i32) -> Option<&mut HeaderMap> {
        // HTTP call response headers (6) belong to the answer being delivered.
        if map_type == 6 {
            return self.http_response.as_mut().map(|(h, _)| h);
        }
        let stream = self.streams.get_mut(&self.current)?;
        stream.maps.get_mut(usize::try_from(map_type).ok()?)
    }

    pub fn property(&self, path: &[u8]) -> Option<&Vec<u8>> {
        self.streams
            .get(&self.current)
            .and_then(|s| s.properties.get(path))
            .or_else(|| self.root_properties.get(path))
    }
}

/// The ABI's header map serialization: count, (key len, value len)*, then each key and
/// value followed by a NUL.
pub fn serialize_map(map: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses the ABI's header map serialization; `None` if malformed.
pub fn deserialize_map(bytes: &[u8]) -> Option<HeaderMap> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |i: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let n = u32_at(0)?;
    let mut p = 4usize.checked_add(n.checked_mul(8)?)?;
    let mut map = Vec::with_capacity(n.min(1024));
    for i in 0..n {
        let (kl, vl) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
        let k = bytes.get(p..p + kl)?.to_vec();
        p += kl + 1;
        let v = bytes.get(p..p + vl)?.to_vec();
        p += vl + 1;
        map.push((k, v));
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_round_trip() {
        let map: HeaderMap = vec![
            (b":status".to_vec(), b"200".to_vec()),
            (b"x".to_vec(), vec![0xff, 0]),
        ];
        assert_eq!(deserialize_map(&serialize_map(&map)), Some(map));
        assert_eq!(deserialize_map(&[1, 0, 0, 0]), None);
        assert_eq!(deserialize_map(&[]), Some(vec![]));
    }
}
