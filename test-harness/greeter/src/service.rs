//! The `helloworld.Greeter` service, answering as one named backend.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use tonic::{Request, Response, Status};

use crate::{
    behaviour::{Behaviour, Plan},
    greeting::greeting,
    pb::{greeter_server::Greeter, HelloReply, HelloRequest},
};

/// A greeter that signs each reply with its backend address and treats
/// calls according to its [`Behaviour`].
#[derive(Debug, Clone)]
pub struct GreeterService {
    backend: String,
    behaviour: Behaviour,
    /// Once set, every call is answered at once, whatever the behaviour says.
    healed: Arc<AtomicBool>,
}

impl GreeterService {
    /// A greeter calling itself `backend` (an `IP:port`) in its replies.
    pub fn new(backend: impl Into<String>, behaviour: Behaviour) -> Self {
        Self {
            backend: backend.into(),
            behaviour,
            healed: Arc::new(AtomicBool::new(false)),
        }
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
        let plan = if self.healed.load(Ordering::Relaxed) {
            Plan::Reply {
                after: std::time::Duration::ZERO,
            }
        } else {
            self.behaviour.plan(&mut rand::rng())
        };
        match plan {
            Plan::Fail(code) => Err(Status::new(
                code,
                format!("injected failure from backend {}", self.backend),
            )),
            Plan::Hang => std::future::pending().await,
            Plan::Reply { after } => {
                if !after.is_zero() {
                    tokio::time::sleep(after).await;
                }
                let message = greeting(&request.into_inner().name, &self.backend);
                Ok(Response::new(HelloReply { message }))
            }
        }
    }
}
