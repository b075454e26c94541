//! Cluster membership as Envoy itself knows it: the answer of its admin interface's
//! `GET /clusters?format=json&filter=<regex>`, reduced to what balancing needs (each
//! host's address, weight, and whether Envoy's own balancers would use it), and the
//! shared-data codec of that list.
//!
//! A host is judged as Envoy's load balancers judge it: failing an active health check,
//! ejected by outlier detection, marked for removal, timed out on its first check, or
//! `UNHEALTHY` / `DRAINING` / `TIMEOUT` in EDS, it is out; `DEGRADED` (by EDS or a
//! degraded check) it is used only when no healthy host is left.
//!
//! The answer is bounded ([`MAX_ANSWER_BYTES`]) and parsed strictly; anything unexpected
//! is an error the caller logs, and the last good membership is kept.

use crate::fx_map::FxSet;
use crate::record::{CodecError, Reader, MAX_ADDR_LEN};
use crate::Nanos;
use std::fmt;

/// The largest admin answer read: about 900 bytes per host, so some 9,000 hosts.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Whether Envoy's balancers would send to a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Healthy,
    /// Used only when no healthy host is left.
    Degraded,
    /// Not used.
    Unusable,
}

/// One host of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// `IP:port`, or `[IPv6]:port`, as `upstream.address` spells it.
    pub addr: String,
    /// The load-balancing weight (1 when Envoy gives none), at least 1.
    pub weight: u32,
    pub health: Health,
}

/// The members of one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    /// When the holder of the lease read them.
    pub fetched_at: Nanos,
    pub members: Vec<Member>,
}

impl Members {
    /// The members to balance over, as Envoy would: the healthy ones, or the degraded
    /// ones when none is healthy.
    pub fn usable(&self) -> impl Iterator<Item = &Member> {
        let floor = if self.members.iter().any(|m| m.health == Health::Healthy) {
            Health::Healthy
        } else {
            Health::Degraded
        };
        self.members.iter().filter(move |m| m.health <= floor)
    }
}

/// Why an admin answer was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerError {
    /// More than [`MAX_ANSWER_BYTES`].
    TooLarge(usize),
    NotJson(String),
    /// Valid JSON, but not shaped as `/clusters?format=json` answers.
    Unexpected(&'static str),
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge(n) => write!(
                f,
                "answer of {n} bytes is over the {MAX_ANSWER_BYTES}-byte bound"
            ),
            Self::NotJson(e) => write!(f, "answer is not JSON: {e}"),
            Self::Unexpected(what) => {
                write!(f, "answer is not a /clusters?format=json answer: {what}")
            }
        }
    }
}

/// The admin path asking for `clusters`: `/clusters?format=json&filter=^(a|b)$`, each name
/// escaped for RE2 and the whole regex for the query string.
pub fn admin_path(clusters: &[&str]) -> String {
    let alternatives: Vec<String> = clusters.iter().map(|c| regex_escape(c)).collect();
    let regex = format!("^({})$", alternatives.join("|"));
    format!("/clusters?format=json&filter={}", percent_encode(&regex))
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The members of each of `clusters` in an admin answer, at most `max_members` per
/// cluster (the first ones listed). A cluster missing from the answer is missing from
/// the result; clusters not asked for are ignored (an Envoy whose `/clusters` ignores
/// `filter` answers with all of them).
pub fn parse_answer(
    body: &[u8],
    clusters: &[&str],
    max_members: usize,
    now: Nanos,
) -> Result<Vec<(String, Members)>, AnswerError> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(AnswerError::TooLarge(body.len()));
    }
    // serde would take an array for the object; Envoy's answer is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(AnswerError::Unexpected("not an object"));
    }
    // Typed and borrowing: the per-host stats (most of the bytes) are skipped unread.
    let answer: wire::Answer<'_> =
        serde_json::from_slice(body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                AnswerError::Unexpected("a field of the wrong type")
            }
            _ => AnswerError::NotJson(e.to_string()),
        })?;
    let mut out: Vec<(String, Members)> = Vec::new();
    for status in answer.cluster_statuses.unwrap_or_default() {
        let Some(name) = status.name else {
            return Err(AnswerError::Unexpected("a cluster without a name"));
        };
        if !clusters.contains(&name.as_ref()) || out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let hosts = status.host_statuses.unwrap_or_default();
        let mut members = Vec::with_capacity(hosts.len().min(max_members));
        let mut seen: FxSet<String> = FxSet::default();
        for host in &hosts {
            if members.len() >= max_members {
                break;
            }
            if let Some(member) = member_of(host)? {
                if seen.insert(member.addr.clone()) {
                    members.push(member);
                }
            }
        }
        out.push((
            name.into_owned(),
            Members {
                fetched_at: now,
                members,
            },
        ));
    }
    Ok(out)
}

/// The parts of Envoy's `/clusters?format=json` answer the filter reads
/// (`envoy.admin.v3.Clusters`); every other field is skipped.
mod wire {
    use serde::Deserialize;
    use std::borrow::Cow;

    #[derive(Deserialize)]
    pub struct Answer<'a> {
        #[serde(borrow)]
        pub cluster_statuses: Option<Vec<ClusterStatus<'a>>>,
    }

    #[derive(Deserialize)]
    pub struct ClusterStatus<'a> {
        #[serde(borrow)]
        pub name: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub host_statuses: Option<Vec<HostStatus<'a>>>,
    }

    #[derive(Deserialize)]
    pub struct HostStatus<'a> {
        #[serde(borrow)]
        pub address: Option<Address<'a>>,
        pub weight: Option<u64>,
        #[serde(borrow)]
        pub health_status: Option<HealthStatus<'a>>,
    }

    #[derive(Deserialize)]
    pub struct Address<'a> {
        #[serde(borrow)]
        pub socket_address: Option<SocketAddress<'a>>,
    }

    #[derive(Deserialize)]
    pub struct SocketAddress<'a> {
        #[serde(borrow)]
        pub address: Option<Cow<'a, str>>,
        pub port_value: Option<u64>,
    }

    /// Envoy's `HostHealthStatus`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct HealthStatus<'a> {
        pub failed_active_health_check: bool,
        pub failed_outlier_check: bool,
        pub failed_active_degraded_check: bool,
        pub pending_dynamic_removal: bool,
        pub excluded_via_immediate_hc_fail: bool,
        pub active_hc_timeout: bool,
        #[serde(borrow)]
        pub eds_health_status: Option<Cow<'a, str>>,
    }
}

/// One host status; `None` for a host that is not an IP socket (a pipe, an internal
/// address), which `override_host` cannot name anyway.
fn member_of(host: &wire::HostStatus<'_>) -> Result<Option<Member>, AnswerError> {
    let Some(socket) = host
        .address
        .as_ref()
        .and_then(|a| a.socket_address.as_ref())
    else {
        return Ok(None);
    };
    let (Some(ip), Some(port)) = (socket.address.as_deref(), socket.port_value) else {
        return Err(AnswerError::Unexpected(
            "a socket address without address or port",
        ));
    };
    let addr = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    if addr.len() > MAX_ADDR_LEN {
        return Ok(None);
    }
    let weight = host
        .weight
        .map_or(1, |w| u32::try_from(w).unwrap_or(u32::MAX).max(1));
    Ok(Some(Member {
        addr,
        weight,
        health: health_of(host.health_status.as_ref()),
    }))
}

/// Envoy's `HostHealthStatus`, judged as its balancers judge it.
fn health_of(status: Option<&wire::HealthStatus<'_>>) -> Health {
    let Some(s) = status else {
        return Health::Healthy;
    };
    if s.failed_active_health_check
        || s.failed_outlier_check
        || s.pending_dynamic_removal
        || s.excluded_via_immediate_hc_fail
        || s.active_hc_timeout
    {
        return Health::Unusable;
    }
    match s.eds_health_status.as_deref() {
        Some("UNHEALTHY" | "DRAINING" | "TIMEOUT") => Health::Unusable,
        Some("DEGRADED") => Health::Degraded,
        _ if s.failed_active_degraded_check => Health::Degraded,
        _ => Health::Healthy,
    }
}

const MAGIC: u8 = b'M';
const VERSION: u8 = 1;

impl Members {
    pub fn encode(&self) -> Vec<u8> {
        let members = self
            .members
            .iter()
            .filter(|m| m.addr.len() <= MAX_ADDR_LEN)
            .take(usize::from(u16::MAX));
        let count = members.clone().count();
        let mut out = Vec::with_capacity(12 + count * 24);
        out.extend_from_slice(&[MAGIC, VERSION]);
        out.extend_from_slice(&self.fetched_at.to_le_bytes());
        out.extend_from_slice(&u16::try_from(count).unwrap_or(u16::MAX).to_le_bytes());
        for m in members {
            out.push(u8::try_from(m.addr.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(m.addr.as_bytes());
            out.extend_from_slice(&m.weight.to_le_bytes());
            out.push(match m.health {
                Health::Healthy => 0,
                Health::Degraded => 1,
                Health::Unusable => 2,
            });
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::after_header(bytes, MAGIC, VERSION)?;
        let fetched_at = r.u64()?;
        let count = r.u16()?;
        let mut members = Vec::with_capacity(usize::from(count).min(r.0.len() / 6));
        for _ in 0..count {
            let addr = r.addr()?.to_owned();
            let weight = r.u32()?.max(1);
            let health = match r.u8()? {
                0 => Health::Healthy,
                1 => Health::Degraded,
                2 => Health::Unusable,
                _ => return Err(CodecError::Corrupt),
            };
            members.push(Member {
                addr,
                weight,
                health,
            });
        }
        r.finish()?;
        Ok(Self {
            fetched_at,
            members,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy 1.40's answer for a cluster of five hosts (weights and EDS health set in its
    /// config) with outlier detection, read off its admin interface.
    const ANSWER: &[u8] = include_bytes!("testdata/admin-clusters.json");
    const CLUSTER: &str = "outbound|8000||greeter.default.svc.cluster.local";

    fn health(addr: &str, members: &Members) -> Option<Health> {
        members
            .members
            .iter()
            .find(|m| m.addr == addr)
            .map(|m| m.health)
    }

    #[test]
    fn envoys_answer_gives_each_hosts_address_weight_and_health() {
        let parsed = parse_answer(ANSWER, &[CLUSTER], 1024, 7).unwrap_or_default();
        assert_eq!(parsed.len(), 1);
        let (name, members) = &parsed[0];
        assert_eq!(name, CLUSTER);
        assert_eq!(members.fetched_at, 7);
        assert_eq!(
            members.members,
            vec![
                Member {
                    addr: "127.0.0.1:50051".into(),
                    weight: 3,
                    health: Health::Healthy
                },
                Member {
                    addr: "127.0.0.1:50052".into(),
                    weight: 1,
                    health: Health::Unusable
                },
                Member {
                    addr: "127.0.0.1:50053".into(),
                    weight: 1,
                    health: Health::Unusable
                },
                Member {
                    addr: "127.0.0.1:50054".into(),
                    weight: 1,
                    health: Health::Degraded
                },
                Member {
                    addr: "[::1]:50055".into(),
                    weight: 1,
                    health: Health::Healthy
                },
            ]
        );
        let usable: Vec<&str> = members.usable().map(|m| m.addr.as_str()).collect();
        assert_eq!(usable, ["127.0.0.1:50051", "[::1]:50055"]);
    }

    /// A `health_status` object as Envoy writes it, judged.
    fn judge(json: &str) -> Health {
        let status = serde_json::from_str::<wire::HealthStatus<'_>>(json);
        assert!(status.is_ok(), "{json}: {status:?}");
        health_of(status.ok().as_ref())
    }

    #[test]
    fn every_exclusion_envoy_reports_makes_a_host_unusable() {
        for flag in [
            "failed_active_health_check",
            "failed_outlier_check",
            "pending_dynamic_removal",
            "excluded_via_immediate_hc_fail",
            "active_hc_timeout",
        ] {
            let json = format!(r#"{{"eds_health_status":"HEALTHY","{flag}":true}}"#);
            assert_eq!(judge(&json), Health::Unusable, "{flag}");
        }
        for (eds, expected) in [
            ("HEALTHY", Health::Healthy),
            ("UNKNOWN", Health::Healthy),
            ("UNHEALTHY", Health::Unusable),
            ("DRAINING", Health::Unusable),
            ("TIMEOUT", Health::Unusable),
            ("DEGRADED", Health::Degraded),
        ] {
            let json = format!(r#"{{"eds_health_status":"{eds}"}}"#);
            assert_eq!(judge(&json), expected, "{eds}");
        }
        assert_eq!(
            judge(r#"{"failed_active_degraded_check":true}"#),
            Health::Degraded
        );
        assert_eq!(health_of(None), Health::Healthy);
    }

    #[test]
    fn degraded_hosts_are_used_only_when_no_healthy_one_is_left() {
        let m = |addr: &str, health| Member {
            addr: addr.into(),
            weight: 1,
            health,
        };
        let members = Members {
            fetched_at: 0,
            members: vec![
                m("a:1", Health::Degraded),
                m("b:1", Health::Unusable),
                m("c:1", Health::Degraded),
            ],
        };
        let usable: Vec<&str> = members.usable().map(|m| m.addr.as_str()).collect();
        assert_eq!(usable, ["a:1", "c:1"]);
        assert_eq!(health("b:1", &members), Some(Health::Unusable));
    }

    #[test]
    fn clusters_not_asked_for_or_missing_are_left_out_and_the_bound_holds() {
        assert_eq!(parse_answer(ANSWER, &["other"], 1024, 0), Ok(Vec::new()));
        assert_eq!(parse_answer(b"{}", &[CLUSTER], 1024, 0), Ok(Vec::new()));
        let parsed = parse_answer(ANSWER, &[CLUSTER], 2, 0).unwrap_or_default();
        assert_eq!(parsed[0].1.members.len(), 2);
    }

    #[test]
    fn bad_answers_are_errors_never_panics() {
        let too_big = vec![b' '; MAX_ANSWER_BYTES + 1];
        assert_eq!(
            parse_answer(&too_big, &[CLUSTER], 8, 0),
            Err(AnswerError::TooLarge(MAX_ANSWER_BYTES + 1))
        );
        assert!(matches!(
            parse_answer(b"<html>", &[CLUSTER], 8, 0),
            Err(AnswerError::NotJson(_))
        ));
        for bad in [
            &b"[]"[..],
            br#"{"cluster_statuses":{}}"#,
            br#"{"cluster_statuses":[{"host_statuses":[]}]}"#,
            br#"{"cluster_statuses":[{"name":"c","host_statuses":{}}]}"#,
            br#"{"cluster_statuses":[{"name":"c","host_statuses":[{"address":{"socket_address":{"address":"1.2.3.4"}}}]}]}"#,
        ] {
            assert!(
                matches!(parse_answer(bad, &["c"], 8, 0), Err(AnswerError::Unexpected(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let pipe = br#"{"cluster_statuses":[{"name":"c","host_statuses":[{"address":{"pipe":{"path":"/x"}}}]}]}"#;
        assert_eq!(
            parse_answer(pipe, &["c"], 8, 0).map(|p| p[0].1.members.len()),
            Ok(0)
        );
    }

    #[test]
    fn the_admin_path_escapes_names_for_re2_and_the_query() {
        assert_eq!(
            admin_path(&["outbound|8000||greeter.default.svc.cluster.local", "greeter"]),
            "/clusters?format=json&filter=%5E%28outbound%5C%7C8000%5C%7C%5C%7Cgreeter%5C.default%5C.svc%5C.cluster%5C.local%7Cgreeter%29%24"
        );
    }

    #[test]
    fn members_round_trip_and_refuse_corruption() {
        let parsed = parse_answer(ANSWER, &[CLUSTER], 1024, 99).unwrap_or_default();
        let members = parsed[0].1.clone();
        let bytes = members.encode();
        assert_eq!(Members::decode(&bytes), Ok(members));
        for n in 0..bytes.len() {
            assert!(Members::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] = 9;
        assert_eq!(Members::decode(&bad), Err(CodecError::Corrupt));
    }
}
