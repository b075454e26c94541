//! Serving a [`GreeterService`] over HTTP/2 until told to stop.
//!
//! Binding and serving are split so the caller learns the real listen
//! address (port 0 works) before the first call arrives, which is what the
//! `greeter-server` binary prints and what in-process tests connect to.

use std::{future::Future, io, net::SocketAddr, time::Duration};

use tokio::net::{TcpListener, ToSocketAddrs};
use tonic::transport::{server::TcpIncoming, Server};

use crate::{
    behaviour::Behaviour,
    capacity::{Capacity, CapacityChange, CapacityGate},
    pb::greeter_server::GreeterServer,
    service::GreeterService,
};

/// How long in-flight calls may finish after shutdown is requested. Hanging
/// calls never finish, so the server stops waiting for them after this.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Everything about a greeter server except where it listens.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// How calls are treated.
    pub behaviour: Behaviour,
    /// Address to name in replies instead of the listen address, e.g. a pod
    /// IP from the Kubernetes downward API when listening on `0.0.0.0`.
    pub backend_addr: Option<String>,
    /// Close each HTTP/2 connection (with GOAWAY) after it has lived this long,
    /// forcing clients to reconnect and be re-balanced.
    pub max_connection_age: Option<Duration>,
    /// Serve at most this many calls at once, the rest waiting in FIFO order; `None`
    /// serves every call at once.
    pub capacity: Option<Capacity>,
}

/// A greeter bound to its listen address but not yet serving.
#[derive(Debug)]
pub struct BoundGreeter {
    listener: TcpListener,
    local_addr: SocketAddr,
    service: GreeterService,
    max_connection_age: Option<Duration>,
    /// The capacity's slots and its scheduled change, started with serving.
    capacity: Option<(CapacityGate, Option<CapacityChange>)>,
}

impl BoundGreeter {
    /// Binds `addr` (e.g. `("127.0.0.1", 50051)` or `"0.0.0.0:0"`).
    pub async fn bind(addr: impl ToSocketAddrs, options: ServerOptions) -> io::Result<Self> {
        Self::from_listener(TcpListener::bind(addr).await?, options)
    }

    /// Serves on an already bound listener.
    pub fn from_listener(listener: TcpListener, options: ServerOptions) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let backend = options
            .backend_addr
            .unwrap_or_else(|| local_addr.to_string());
        let service = GreeterService::new(backend, options.behaviour);
        let (service, capacity) = match options.capacity {
            Some(capacity) => {
                let gate = CapacityGate::new(capacity.slots);
                (
                    service.with_capacity(gate.clone(), capacity.service_time),
                    Some((gate, capacity.change)),
                )
            }
            None => (service, None),
        };
        Ok(Self {
            listener,
            local_addr,
            service,
            max_connection_age: options.max_connection_age,
            capacity,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// See [`GreeterService::heal_switch`].
    pub fn heal_switch(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.service.heal_switch()
    }

    /// The address replies are signed with.
    pub fn backend(&self) -> &str {
        self.service.backend()
    }

    /// Serves until `shutdown` completes, then lets in-flight calls finish
    /// for at most [`SHUTDOWN_GRACE`].
    pub async fn serve_until(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        // The capacity change is timed from the start of serving, and ends with it.
        let _change = self
            .capacity
            .as_ref()
            .and_then(|(gate, change)| change.map(|change| AbortOnDrop(gate.schedule(change))));
        let mut builder = Server::builder();
        if let Some(age) = self.max_connection_age {
            builder = builder.max_connection_age(age);
        }
        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let server = builder
            .add_service(GreeterServer::new(self.service))
            .serve_with_incoming_shutdown(incoming, async {
                // A dropped sender means the same as a sent signal: stop.
                let _ = drain_rx.await;
            });
        tokio::pin!(server);

        tokio::select! {
            result = &mut server => return result,
            () = shutdown => {}
        }
        let _ = drain_tx.send(());
        tokio::time::timeout(SHUTDOWN_GRACE, server)
            .await
            .unwrap_or(Ok(()))
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
