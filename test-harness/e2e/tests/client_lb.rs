//! Client-side round robin (`greeter-client --lb round_robin`, Example 1 of
//! docs/deployment.md) against real greeters behind one host name, as gRPC's
//! `round_robin` sees a Kubernetes headless Service: one A record per pod.
//!
//! Greeters listen on 127.0.0.1, 127.0.0.2, 127.0.0.3 and 127.0.0.4, all on port 50081
//! (used by no other test; loopback is all of 127/8). The name resolves through the
//! system resolver from a private hosts file: the client runs under
//! `unshare --mount` with a file bind-mounted over `/etc/hosts`, and the test rewrites
//! that file in place (the bind mount follows the inode, so never rename over it) to add
//! and drop addresses, as Kubernetes DNS does when pods come and go.
//!
//! Needs permission to create a mount namespace (root, or CAP_SYS_ADMIN); without it
//! the test fails, saying so, unless `EWMA_SKIP_CLIENT_LB=1` asks to skip it (then it
//! passes with a SKIPPED line on stderr): it never passes silently untested.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

use e2e::{greeter_server, logs::log_path, repo_root, Greeter, GreeterProcess};
use greeter::greeting::backend_of;

const PORT: u16 = 50081;
const NAME: &str = "greeters.client-lb.test";
const DNS_REFRESH: &str = "300ms";
/// How long re-resolution may take to show in the calls: a few refresh periods.
const PATIENCE: Duration = Duration::from_secs(5);

fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn backend(last: u8) -> String {
    format!("{}:{PORT}", loopback(last))
}

/// The private hosts file: `NAME` resolves to `addrs`.
struct HostsFile {
    path: PathBuf,
}

impl HostsFile {
    fn create(addrs: &[u8]) -> Self {
        let dir = repo_root().join("target/client-lb");
        fs::create_dir_all(&dir).unwrap();
        let hosts = Self {
            path: dir.join("hosts"),
        };
        hosts.resolve_to(addrs);
        hosts
    }

    /// Rewrites the file in place (same inode) with one write, so a concurrent
    /// lookup sees the old content, an empty file (a failed lookup: the client keeps
    /// its addresses) or the new content, never half of it.
    fn resolve_to(&self, addrs: &[u8]) {
        let mut text = String::from("127.0.0.1 localhost\n");
        for &last in addrs {
            text.push_str(&format!("{} {NAME}\n", loopback(last)));
        }
        fs::write(&self.path, text).unwrap();
    }
}

/// `greeter-client` in its own mount namespace; killed and reaped on drop.
struct ClientProcess {
    child: Child,
    greetings: Receiver<String>,
}

impl ClientProcess {
    fn start(hosts: &Path) -> Self {
        let log = log_path("greeter-client-lb");
        fs::create_dir_all(log.parent().unwrap()).unwrap();
        let stderr = fs::File::create(&log).unwrap();
        // `exec`: the client replaces the shell, so killing the child kills it.
        let script = format!(
            "mount --bind '{}' /etc/hosts && exec '{}' \
             --target http://{NAME}:{PORT} --lb round_robin --dns-refresh {DNS_REFRESH} \
             --count 100000000 --concurrency 3 --interval 2ms",
            hosts.display(),
            e2e::built_binary("greeter-client").display()
        );
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("cannot run unshare");
        let stdout = child.stdout.take().unwrap();
        let (tx, greetings) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, greetings }
    }

    /// The next printed line, or a failure naming what the client logged.
    fn next_line(&self, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.greetings.recv_timeout(left) {
            Ok(line) => line,
            Err(error) => panic!(
                "no greeting from the client ({error}); its stderr:\n{}",
                fs::read_to_string(log_path("greeter-client-lb")).unwrap_or_default()
            ),
        }
    }

    /// The backends of the next `count` calls, failing on any failed call.
    fn next_backends(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        (0..count)
            .map(|_| {
                let line = self.next_line(deadline);
                backend_of(&line)
                    .unwrap_or_else(|| panic!("not a greeting: {line}"))
                    .to_owned()
            })
            .collect()
    }

    /// Reads calls until `done` holds for the backends read so far (oldest first);
    /// returns them, or fails after [`PATIENCE`].
    fn read_until(&self, what: &str, mut done: impl FnMut(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        while !done(&seen) {
            if Instant::now() >= deadline {
                panic!(
                    "{what} did not happen within {PATIENCE:?}; last calls: {:?}",
                    {
                        let from = seen.len().saturating_sub(12);
                        &seen[from..]
                    }
                );
            }
            let line = self.next_line(deadline);
            seen.push(
                backend_of(&line)
                    .unwrap_or_else(|| panic!("not a greeting: {line}"))
                    .to_owned(),
            );
        }
        seen
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shares(backends: &[String]) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::<String, usize>::new();
    for backend in backends {
        *counts.entry(backend.clone()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(backend, count)| (backend, count as f64 / backends.len() as f64))
        .collect()
}

fn can_create_mount_namespace() -> bool {
    Command::new("unshare")
        .args(["--mount", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn spawn_greeters(addrs: &[u8]) -> Vec<GreeterProcess> {
    addrs
        .iter()
        .map(|&last| {
            Greeter::on(PORT)
                .host(loopback(last))
                .spawn(greeter_server())
                .unwrap()
        })
        .collect()
}

#[test]
fn round_robin_spreads_calls_evenly_and_follows_dns_changes() {
    if !can_create_mount_namespace() {
        let why = "`unshare --mount` is not permitted here (needs root or CAP_SYS_ADMIN): \
                   client-side round robin cannot be tested";
        assert!(
            std::env::var_os("EWMA_SKIP_CLIENT_LB").is_some_and(|v| v == "1"),
            "{why}; set EWMA_SKIP_CLIENT_LB=1 to skip this test on purpose"
        );
        eprintln!("SKIPPED (EWMA_SKIP_CLIENT_LB=1): {why}");
        return;
    }
    let _greeters = spawn_greeters(&[1, 2, 3, 4]);
    let hosts = HostsFile::create(&[1, 2, 3]);
    let client = ClientProcess::start(&hosts.path);

    // Three addresses: each serves a third of the calls (round robin is exact up to
    // the calls in flight; allow a little for the three workers' interleaving).
    let first = client.next_backends(300);
    let first_shares = shares(&first);
    assert_eq!(
        first_shares.keys().cloned().collect::<Vec<_>>(),
        [backend(1), backend(2), backend(3)],
        "{first_shares:?}"
    );
    for (addr, share) in &first_shares {
        assert!((0.28..=0.39).contains(share), "{addr} served {share:.3}");
    }

    // A pod is added: its address joins after re-resolution, and takes a quarter.
    hosts.resolve_to(&[1, 2, 3, 4]);
    client.read_until("a call to the added address", |seen| {
        seen.last() == Some(&backend(4))
    });
    let with_fourth = shares(&client.next_backends(400));
    assert_eq!(with_fourth.len(), 4, "{with_fourth:?}");
    for (addr, share) in &with_fourth {
        assert!((0.20..=0.30).contains(share), "{addr} served {share:.3}");
    }

    // A pod is removed: once re-resolved, its address gets no more calls.
    hosts.resolve_to(&[2, 3, 4]);
    client.read_until("200 calls in a row without the removed address", |seen| {
        seen.len() >= 200 && !seen[seen.len() - 200..].contains(&backend(1))
    });
    let without_first = shares(&client.next_backends(300));
    assert_eq!(
        without_first.keys().cloned().collect::<Vec<_>>(),
        [backend(2), backend(3), backend(4)],
        "{without_first:?}"
    );
}
