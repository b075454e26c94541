//! The `helloworld.Greeter` service, answering as one named backend.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use tonic::{Request, Response, Status};

use crate::{
    behaviour::{Behaviour, Plan},
    capacity::{CapacityGate, ServiceTime},
    greeting::greeting,
    pb::{greeter_server::Greeter, HelloReply, HelloRequest},
};

/// A greeter that signs each reply with its backend address and treats
/// calls according to its [`Behaviour`].
#[derive(Debug, Clone)]
pub struct GreeterService {
    backend: String,
    behaviour: Behaviour,
    /// Limited capacity: the slots calls queue for and each call's work; `None` serves
    /// every call at once.
    capacity: Option<(CapacityGate, ServiceTime)>,
    /// Once set, every call is answered at once, whatever the behaviour says.
    healed: Arc<AtomicBool>,
}

impl GreeterService {
    /// A greeter calling itself `backend` (an `IP:port`) in its replies.
    pub fn new(backend: impl Into<String>, behaviour: Behaviour) -> Self {
        Self {
            backend: backend.into(),
            behaviour,
            capacity: None,
            healed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The same greeter with a limited capacity: every answered call first waits for one
    /// of `gate`'s slots (FIFO) and holds it for a `service_time` draw; the behaviour's
    /// delay comes on top without holding a slot. Failing and hanging calls take no slot.
    pub fn with_capacity(mut self, gate: CapacityGate, service_time: ServiceTime) -> Self {
        self.capacity = Some((gate, service_time));
        self
    }

    /// The switch that makes this greeter healthy from then on (the `greeter-server`
    /// binary flips it on SIGUSR1): a failing, slow or hanging backend recovers.
    pub fn heal_switch(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.healed)
    }

    /// The address this greeter puts in its replies.
    pub fn backend(&self) -> &str {
        &self.backend
    }
}

#[tonic::async_trait]
impl Greeter for GreeterService {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        // Decide before awaiting: the thread-local RNG is not `Send`.
        let (plan, work) = {
            let mut rng = rand::rng();
            let plan = if self.healed.load(Ordering::Relaxed) {
                Plan::Reply {
                    after: std::time::Duration::ZERO,
                }
            } else {
                self.behaviour.plan(&mut rng)
            };
            let work = self
                .capacity
                .as_ref()
                .map(|(gate, time)| (gate.clone(), time.draw(&mut rng)));
            (plan, work)
        };
        match plan {
            Plan::Fail(code) => Err(Status::new(
                code,
                format!("injected failure from backend {}", self.backend),
            )),
            Plan::Hang => std::future::pending().await,
            Plan::Reply { after } => {
                if let Some((gate, work)) = work {
                    gate.serve(work).await;
                }
                if !after.is_zero() {
                    tokio::time::sleep(after).await;
                }
                let message = greeting(&request.into_inner().name, &self.backend);
                Ok(Response::new(HelloReply { message }))
            }
        }
    }
}
