//! The API server: serves the Kubernetes API over HTTP from a [`Store`].
//!
//! It owns routing, the wire format and the errors users see; objects live in the
//! store it is given (embedded or etcd), and every kind it serves comes from the
//! registry of `wasmkube-types`. Today it answers the health and version endpoints
//! that clients and orchestrators probe first.

mod health;
pub mod kubeconfig;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use wasmkube_store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiServer {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").finish_non_exhaustive()
    }
}

impl ApiServer {
    /// An API server over `store`.
    pub fn new(store: Arc<dyn Store>) -> ApiServer {
        ApiServer { store }
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/version", get(health::version))
            .route("/version/", get(health::version))
            .route("/healthz", get(health::live))
            .route("/livez", get(health::live))
            .route("/readyz", get(health::ready))
            .with_state(self.clone())
    }
}
