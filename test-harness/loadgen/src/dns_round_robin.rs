//! Client-side round robin over every address a DNS name resolves to, re-resolved
//! periodically: what gRPC's `round_robin` policy does with a Kubernetes headless
//! Service (one A record per ready pod).
//!
//! [`DnsRoundRobin::connect`] resolves the target's host with the system resolver
//! (`getaddrinfo`, so `/etc/hosts` and the pod's DNS search path apply), opens one HTTP/2
//! channel per address and hands them out in turn with [`DnsRoundRobin::next`]. A
//! background task resolves the name again every `refresh`: addresses that appeared are
//! connected and join the rotation, addresses that disappeared leave it (calls already
//! running on them finish). Like gRPC, only addresses that accept a connection join
//! (gRPC's READY subchannels); a resolution that fails or leaves nothing connectable
//! keeps the current set, and says so on stderr.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, PoisonError, RwLock,
    },
    time::Duration,
};

use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::closed::LoadError;

/// How long connecting to one resolved address may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The shortest re-resolution period accepted; shorter would hammer the resolver.
pub const MIN_REFRESH: Duration = Duration::from_millis(100);

/// A target split into what is resolved and what is sent as `:authority`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    /// `http` or `https`.
    pub scheme: String,
    /// The name (or literal IP) to resolve.
    pub host: String,
    /// The port every resolved address is called on.
    pub port: u16,
    /// The target as given, sent as the origin of every call.
    pub origin: Uri,
}

impl DnsTarget {
    /// Parses `http://name:port` (the port defaults to 80 for http, 443 for https).
    pub fn parse(target: &str) -> Result<Self, String> {
        let origin: Uri = target
            .parse()
            .map_err(|error| format!("invalid target `{target}`: {error}"))?;
        let scheme = origin.scheme_str().unwrap_or("http").to_owned();
        let host = origin
            .host()
            .ok_or_else(|| format!("invalid target `{target}`: no host"))?;
        // `[::1]` in a URI is `::1` to the resolver.
        let host = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let port = origin
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(Self {
            scheme,
            host,
            port,
            origin,
        })
    }

    /// The URI of one resolved address, e.g. `http://10.0.0.7:8000`.
    pub fn address_uri(&self, addr: SocketAddr) -> String {
        format!("{}://{addr}", self.scheme)
    }

    /// Every address the host resolves to now, sorted and without duplicates.
    pub async fn resolve(&self) -> Result<BTreeSet<SocketAddr>, String> {
        let found = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|error| format!("cannot resolve {}: {error}", self.host))?;
        let addrs: BTreeSet<SocketAddr> = found.collect();
        if addrs.is_empty() {
            return Err(format!("{} resolves to no address", self.host));
        }
        Ok(addrs)
    }
}

/// One connected address in the rotation.
#[derive(Debug, Clone)]
struct Member {
    addr: SocketAddr,
    channel: Channel,
}

/// Round robin over one channel per resolved address, kept current by re-resolution.
/// Stops re-resolving when dropped.
#[derive(Debug)]
pub struct DnsRoundRobin {
    members: Arc<RwLock<Vec<Member>>>,
    next: AtomicUsize,
    refresher: JoinHandle<()>,
}

impl DnsRoundRobin {
    /// Resolves `target`, connects to every address that accepts a connection, and
    /// re-resolves every `refresh`. Fails if no address can be connected.
    pub async fn connect(target: &str, refresh: Duration) -> Result<Self, LoadError> {
        let target = DnsTarget::parse(target).map_err(LoadError::InvalidSpec)?;
        if refresh < MIN_REFRESH {
            return Err(LoadError::InvalidSpec(format!(
                "dns refresh must be at least {}",
                humantime::format_duration(MIN_REFRESH)
            )));
        }
        let addrs = target.resolve().await.map_err(LoadError::Resolve)?;
        let (members, failures) = rebuild(&target, &[], &addrs).await;
        if members.is_empty() {
            return Err(LoadError::Resolve(format!(
                "no address of {} accepts connections: {}",
                target.host,
                failures.join("; ")
            )));
        }
        for failure in &failures {
            eprintln!("greeter-client: {failure}");
        }
        let members = Arc::new(RwLock::new(members));
        let refresher = tokio::spawn(keep_resolving(target, refresh, members.clone()));
        Ok(Self {
            members,
            next: AtomicUsize::new(0),
            refresher,
        })
    }

    /// The next channel in the rotation (`None` only if the set is empty, which
    /// [`connect`](Self::connect) and re-resolution never leave it).
    pub fn next(&self) -> Option<Channel> {
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        if members.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % members.len();
        members.get(turn).map(|member| member.channel.clone())
    }

    /// The addresses in the rotation now, sorted.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|member| member.addr)
            .collect()
    }
}

impl Drop for DnsRoundRobin {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// Re-resolves every `refresh` and replaces the rotation with the new set.
async fn keep_resolving(target: DnsTarget, refresh: Duration, members: Arc<RwLock<Vec<Member>>>) {
    let mut ticks = tokio::time::interval(refresh);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate; `connect` just resolved
    loop {
        ticks.tick().await;
        let addrs = match target.resolve().await {
            Ok(addrs) => addrs,
            Err(reason) => {
                eprintln!("greeter-client: {reason}; keeping the current addresses");
                continue;
            }
        };
        let current = members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if current
            .iter()
            .map(|member| member.addr)
            .eq(addrs.iter().copied())
        {
            continue;
        }
        let (updated, failures) = rebuild(&target, &current, &addrs).await;
        for failure in &failures {
            eprintln!("greeter-client: {failure}");
        }
        if updated.is_empty() {
            eprintln!(
                "greeter-client: no address of {} accepts connections; keeping the current addresses",
                target.host
            );
            continue;
        }
        let described: Vec<String> = updated.iter().map(|m| m.addr.to_string()).collect();
        eprintln!(
            "greeter-client: {} resolves to {}",
            target.host,
            described.join(", ")
        );
        *members.write().unwrap_or_else(PoisonError::into_inner) = updated;
    }
}

/// The rotation for `addrs`: channels of `current` are kept for addresses still
/// present, new addresses are connected; returns the members and one line per address
/// that could not be connected.
async fn rebuild(
    target: &DnsTarget,
    current: &[Member],
    addrs: &BTreeSet<SocketAddr>,
) -> (Vec<Member>, Vec<String>) {
    let mut members = Vec::with_capacity(addrs.len());
    let mut failures = Vec::new();
    for &addr in addrs {
        if let Some(kept) = current.iter().find(|member| member.addr == addr) {
            members.push(kept.clone());
            continue;
        }
        match connect_one(target, addr).await {
            Ok(channel) => members.push(Member { addr, channel }),
            Err(reason) => failures.push(reason),
        }
    }
    (members, failures)
}

async fn connect_one(target: &DnsTarget, addr: SocketAddr) -> Result<Channel, String> {
    let uri = target.address_uri(addr);
    let endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|error| format!("invalid address {uri}: {error}"))?
        .origin(target.origin.clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    endpoint
        .connect()
        .await
        .map_err(|error| format!("cannot connect to {addr} ({}): {error}", target.host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_with_name_and_port_is_split() {
        let target = DnsTarget::parse("http://greeter-server:8000").unwrap();
        assert_eq!(target.scheme, "http");
        assert_eq!(target.host, "greeter-server");
        assert_eq!(target.port, 8000);
        assert_eq!(
            target.address_uri("10.0.0.7:8000".parse().unwrap()),
            "http://10.0.0.7:8000"
        );
    }

    #[test]
    fn port_defaults_to_the_scheme_port() {
        assert_eq!(DnsTarget::parse("http://greeter").unwrap().port, 80);
        assert_eq!(DnsTarget::parse("https://greeter").unwrap().port, 443);
    }

    #[test]
    fn ipv6_literal_loses_its_brackets() {
        let target = DnsTarget::parse("http://[::1]:50081").unwrap();
        assert_eq!(target.host, "::1");
        assert_eq!(
            target.address_uri("[::1]:50081".parse().unwrap()),
            "http://[::1]:50081"
        );
    }

    #[test]
    fn target_without_host_is_refused() {
        assert!(DnsTarget::parse("/path/only").is_err());
        assert!(DnsTarget::parse("http://exa mple:80").is_err());
    }

    #[tokio::test]
    async fn literal_ip_resolves_to_itself() {
        let target = DnsTarget::parse("http://127.0.0.1:50081").unwrap();
        let addrs: Vec<_> = target.resolve().await.unwrap().into_iter().collect();
        assert_eq!(addrs, ["127.0.0.1:50081".parse::<SocketAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn refresh_below_the_floor_is_refused() {
        let error = DnsRoundRobin::connect("http://127.0.0.1:50081", Duration::from_millis(10))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid load spec: dns refresh must be at least 100ms"
        );
    }
}
