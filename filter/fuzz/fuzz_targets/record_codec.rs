//! Arbitrary bytes as shared data (what a worker reads back from Envoy, possibly written
//! by another module version): both decoders, the endpoint record's and the cluster
//! index's, run on every input.
//!
//! Invariants: decoding never panics; whatever decodes re-encodes within the documented
//! bound and decodes again to the same value; re-encoding is a fixed point; the record's
//! stored floats come back sane (finite, non-negative, failure score in [0, 1]); the
//! index codec is byte-exact.

#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ewma_balancer::index::ClusterIndex;
use ewma_balancer::record::{EndpointRecord, MAX_ADDR_LEN, MAX_RECORD_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = EndpointRecord::decode(data) {
        check_record(&record);
        let bytes = record.encode();
        assert!(
            bytes.len() <= MAX_RECORD_LEN,
            "{} bytes > MAX_RECORD_LEN",
            bytes.len()
        );
        assert!(bytes.len() <= data.len(), "encoding grew the input");
        let again = EndpointRecord::decode(&bytes).expect("a re-encoded record decodes");
        assert_eq!(again, record, "round trip");
        assert_eq!(again.encode(), bytes, "re-encoding is a fixed point");
        let owned = EndpointRecord::decode_owned(data, record.addr.clone());
        assert_eq!(owned.as_ref(), Ok(&record), "decode_owned agrees");
    }
    if let Ok(index) = ClusterIndex::decode(data, u16::MAX) {
        for (_, addr) in &index.entries {
            assert!(addr.len() <= MAX_ADDR_LEN, "index address {addr:?}");
        }
        let bytes = index.encode();
        assert_eq!(bytes, data, "the index codec is byte-exact");
        assert_eq!(ClusterIndex::decode(&bytes, u16::MAX).as_ref(), Ok(&index));
    }
});

fn check_record(r: &EndpointRecord) {
    assert!(r.addr.len() <= MAX_ADDR_LEN, "address {:?}", r.addr);
    let est = r.latency.raw_ns();
    assert!(est.is_finite() && est >= 0.0, "latency estimate {est}");
    let f = r.failure.raw();
    assert!((0.0..=1.0).contains(&f), "failure score {f}");
}
