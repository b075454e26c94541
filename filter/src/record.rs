//! The shared-data record of one endpoint and its binary codec.
//!
//! One record per (cluster, endpoint) lives under its own key (see `store.rs`), so a
//! request reads and writes one small record, never the whole table. The layout is fixed
//! little-endian fields after a one-byte magic and a version byte; decoding checks every
//! length and rejects anything else, because shared data outlives module versions (a
//! hot-restarted or upgraded module may find records written by an older one).

use crate::failure_score::FailureScore;
use crate::peak_ewma::PeakEwma;
use crate::Nanos;

const MAGIC: u8 = b'E';
/// 2 added the failed-probe count (a record of version 1 is refused and relearned).
const VERSION: u8 = 2;
/// Longest endpoint address kept: `[` + 39-character IPv6 + `]:` + 5-digit port is 47.
pub const MAX_ADDR_LEN: usize = 64;
const FIXED_LEN: usize = 2 + 1 + 8 + 8 + 8 + 8 + 1 + 4 + 8 + 8 + 8;
/// The most bytes a record takes in shared data (the bound per endpoint).
pub const MAX_RECORD_LEN: usize = FIXED_LEN + MAX_ADDR_LEN;

#[derive(Clone, Debug, PartialEq)]
pub struct EndpointRecord {
    /// `IP:port`, as Envoy reports it in `upstream.address`.
    pub addr: String,
    pub latency: PeakEwma,
    pub failure: FailureScore,
    /// Requests in flight across all workers (as flushed so far).
    pub pending: u32,
    /// Last time any worker saw a request complete on this endpoint.
    pub last_seen: Nanos,
    pub requests: u64,
    pub failures: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    Truncated,
    BadMagic,
    UnsupportedVersion(u8),
    BadAddress,
    TrailingBytes,
    /// Well-formed but impossible: an index with a slot or address twice, or a slot out
    /// of range.
    Corrupt,
}

impl EndpointRecord {
    pub fn new(addr: &str, latency_ns: f64, now: Nanos) -> Self {
        Self {
            addr: addr.into(),
            latency: PeakEwma::new(latency_ns, now),
            failure: FailureScore::default(),
            pending: 0,
            last_seen: now,
            requests: 0,
            failures: 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + self.addr.len());
        self.encode_into(&mut out);
        out
    }

    /// Encodes into `out` (cleared first), so a hot path can reuse one buffer.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        let addr = self.addr.as_bytes();
        let addr = addr.get(..MAX_ADDR_LEN).unwrap_or(addr);
        out.extend_from_slice(&[MAGIC, VERSION, u8::try_from(addr.len()).unwrap_or(u8::MAX)]);
        out.extend_from_slice(addr);
        out.extend_from_slice(&self.latency.raw_ns().to_le_bytes());
        out.extend_from_slice(&self.latency.stamp().to_le_bytes());
        out.extend_from_slice(&self.failure.raw().to_le_bytes());
        out.extend_from_slice(&self.failure.stamp().to_le_bytes());
        out.push(self.failure.failed_probes());
        out.extend_from_slice(&self.pending.to_le_bytes());
        out.extend_from_slice(&self.last_seen.to_le_bytes());
        out.extend_from_slice(&self.requests.to_le_bytes());
        out.extend_from_slice(&self.failures.to_le_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Self::decode_with(bytes, |stored| Ok(stored.to_string()))
    }

    /// Decodes a record that must belong to `addr`, reusing `addr`'s allocation: the
    /// per-request path reads one record and allocates nothing for it.
    /// A record of another endpoint is `BadAddress`.
    pub fn decode_owned(bytes: &[u8], addr: String) -> Result<Self, CodecError> {
        Self::decode_with(bytes, |stored| {
            if stored == addr {
                Ok(addr)
            } else {
                Err(CodecError::BadAddress)
            }
        })
    }

    fn decode_with(
        bytes: &[u8],
        addr_of: impl FnOnce(&str) -> Result<String, CodecError>,
    ) -> Result<Self, CodecError> {
        let mut r = Reader::after_header(bytes, MAGIC, VERSION)?;
        let addr = r.addr()?;
        let latency = PeakEwma::new(r.f64()?, r.u64()?);
        let failure = FailureScore::from_parts(r.f64()?, r.u64()?, r.u8()?);
        let record = Self {
            addr: addr_of(addr)?,
            latency,
            failure,
            pending: r.u32()?,
            last_seen: r.u64()?,
            requests: r.u64()?,
            failures: r.u64()?,
        };
        r.finish()?;
        Ok(record)
    }
}

/// A cursor over bytes that never reads past the end: the one reader of both shared-data
/// codecs (records here, the index in `index.rs`).
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    /// A reader past the magic byte and version byte every encoding starts with, which
    /// must be `magic` and `version`.
    pub(crate) fn after_header(
        bytes: &'a [u8],
        magic: u8,
        version: u8,
    ) -> Result<Self, CodecError> {
        let mut r = Self(bytes);
        if r.u8()? != magic {
            return Err(CodecError::BadMagic);
        }
        match r.u8()? {
            v if v == version => Ok(r),
            v => Err(CodecError::UnsupportedVersion(v)),
        }
    }

    /// An endpoint address: a length byte (at most [`MAX_ADDR_LEN`]) and UTF-8 text.
    pub(crate) fn addr(&mut self) -> Result<&'a str, CodecError> {
        let len = usize::from(self.u8()?);
        if len > MAX_ADDR_LEN {
            return Err(CodecError::BadAddress);
        }
        std::str::from_utf8(self.take(len)?).map_err(|_| CodecError::BadAddress)
    }

    /// Succeeds only if every byte was read.
    pub(crate) fn finish(self) -> Result<(), CodecError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes)
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, CodecError> {
        Ok(f64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EndpointRecord {
        let mut r = EndpointRecord::new("127.0.0.1:50051", 1.5e6, 42);
        r.failure = FailureScore::from_parts(0.25, 40, 2);
        r.pending = 3;
        r.requests = 1000;
        r.failures = 7;
        r
    }

    #[test]
    fn round_trips() {
        let r = sample();
        assert_eq!(EndpointRecord::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn decode_owned_checks_the_address_and_reuses_it() {
        let r = sample();
        let bytes = r.encode();
        assert_eq!(
            EndpointRecord::decode_owned(&bytes, "127.0.0.1:50051".into()),
            Ok(r)
        );
        assert_eq!(
            EndpointRecord::decode_owned(&bytes, "127.0.0.1:50052".into()),
            Err(CodecError::BadAddress)
        );
    }

    #[test]
    fn encode_into_reuses_and_clears_the_buffer() {
        let mut buf = vec![9; 500];
        sample().encode_into(&mut buf);
        assert_eq!(buf, sample().encode());
    }

    #[test]
    fn encoded_size_is_fixed_plus_address() {
        assert_eq!(sample().encode().len(), 64 + "127.0.0.1:50051".len());
        assert_eq!(MAX_RECORD_LEN, 128);
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(EndpointRecord::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn wrong_magic_version_and_trailing_bytes_are_rejected() {
        let mut bytes = sample().encode();
        bytes[1] = 9;
        assert_eq!(
            EndpointRecord::decode(&bytes),
            Err(CodecError::UnsupportedVersion(9))
        );
        bytes[0] = b'X';
        assert_eq!(EndpointRecord::decode(&bytes), Err(CodecError::BadMagic));
        let mut bytes = sample().encode();
        bytes.push(0);
        assert_eq!(
            EndpointRecord::decode(&bytes),
            Err(CodecError::TrailingBytes)
        );
    }

    #[test]
    fn non_utf8_or_overlong_addresses_are_rejected() {
        let mut bytes = sample().encode();
        bytes[3] = 0xff;
        assert_eq!(EndpointRecord::decode(&bytes), Err(CodecError::BadAddress));
        let mut bytes = sample().encode();
        bytes[2] = 200;
        assert_eq!(EndpointRecord::decode(&bytes), Err(CodecError::BadAddress));
    }

    #[test]
    fn stored_nan_decodes_to_a_safe_value() {
        let mut r = sample();
        r.latency = PeakEwma::new(f64::NAN, 0);
        let decoded = EndpointRecord::decode(&r.encode());
        assert_eq!(decoded.map(|d| d.latency.raw_ns()), Ok(0.0));
    }
}
