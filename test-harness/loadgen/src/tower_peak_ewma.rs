//! Linkerd's balancer on the client side: tower's power-of-two-choices
//! ([`tower::balance::p2c::Balance`]) over [`tower::load::PeakEwma`], one HTTP/2
//! connection (a tonic [`Channel`]) per backend, no proxy in the path.
//!
//! Each backend's load is its Peak-EWMA round-trip time times its outstanding calls
//! plus one (Finagle's "peak EWMA"); each call draws two ready backends at random and
//! goes to the cheaper, ties to the first drawn. The settings are Linkerd's defaults:
//! an unmeasured backend costs [`DEFAULT_RTT`] and the estimate decays over [`DECAY`].
//! The round trip ends at the response headers ([`CompleteOnResponse`]), as Linkerd
//! measures the time to the first response frame; a gRPC status arrives in trailers
//! after HTTP 200, so a backend that fails fast looks fast (Linkerd adds failure accrual
//! separately; this is tower's balancer as it is).
//!
//! [`Balance`] is not `Clone`, so a [`Buffer`] sits in front of it, as Linkerd buffers in
//! front of its balancer: every concurrent call holds a cheap clone of the buffer, and
//! one worker task drives the balancer.

use std::{collections::hash_map::DefaultHasher, hash::BuildHasherDefault, time::Duration};

use http::Request;
use tonic::{body::Body, transport::Channel};
use tower::{
    balance::p2c::Balance,
    buffer::Buffer,
    discover::ServiceList,
    load::{CompleteOnResponse, PeakEwmaDiscover},
    util::rng::HasherRng,
    Service,
};

use crate::closed::{connect, LoadError};

/// What a backend costs before its first answer: Linkerd's default RTT.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// How long the Peak-EWMA takes to forget a peak (Linkerd's default decay).
pub const DECAY: Duration = Duration::from_secs(10);

type Balanced =
    Balance<PeakEwmaDiscover<ServiceList<Vec<Channel>>, CompleteOnResponse>, Request<Body>>;

/// The balancer behind its buffer: a gRPC transport for [`GreeterClient`]
/// (`crate::pb::greeter_client::GreeterClient`), cheap to clone.
pub type TowerPeakEwma = Buffer<Request<Body>, <Balanced as Service<Request<Body>>>::Future>;

/// Connects once to each of `targets` (gRPC URIs) and balances over them; `buffer` is
/// how many calls may wait for the balancer at once (the load's concurrency).
///
/// The balancer's random draws are deterministic (a fixed-key hasher), so two runs
/// against the same backends draw the same pairs.
pub async fn connect_tower_peak_ewma(
    targets: &[String],
    buffer: usize,
) -> Result<TowerPeakEwma, LoadError> {
    if targets.is_empty() {
        return Err(LoadError::InvalidSpec(
            "a balanced target needs at least one backend".into(),
        ));
    }
    let mut channels = Vec::with_capacity(targets.len());
    for target in targets {
        channels.extend(connect(target, 1).await?);
    }
    let discover = PeakEwmaDiscover::new::<Request<Body>>(
        ServiceList::new::<Request<Body>>(channels),
        DEFAULT_RTT,
        DECAY,
        CompleteOnResponse::default(),
    );
    let rng = HasherRng::with_hasher(BuildHasherDefault::<DefaultHasher>::default());
    let balance: Balanced = Balance::from_rng(discover, rng);
    Ok(Buffer::new(balance, buffer.max(1)))
}
