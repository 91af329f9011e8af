//! The edge middleware, just inside the request-id middleware (served together as one
//! service, [`Front`], with the routes): resolves the client address
//! ([`ClientIp`], trusting forwarding headers only from `SLUICE_TRUSTED_PROXIES`), applies
//! the instance-wide per-IP rate limit (`SLUICE_RATE_LIMIT_PER_IP`) to every endpoint but
//! the health checks (its refusals are counted in the metrics as limit `address`), and fills
//! the baseline security headers on every answer.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use crate::gateway::{self, GatewayState};
use crate::http::server::{PeerAddr, Serve, ServeFn};
use crate::http::{ApiError, request_id};
use crate::policy::Refusal;
use crate::policy::client_ip::{self, ClientIp};
use crate::policy::edge::EdgeState;
use crate::policy::headers::apply_baseline;
use crate::policy::rate_limit::Decision;
use crate::policy::refusal::RateLimited;

/// What the main listener serves: the request-id middleware, this edge middleware just
/// inside it, and inside both the query route ([`gateway::serve_query`], for the requests
/// [`gateway::query_route`] picks) or else the router with every other route. One service
/// and one future per request, which the listener does not box
/// ([`Front::listener_service`]): no `from_fn` layer (each boxes its own future and clones
/// the next service) and no router on the query route's path. Cloning it is one reference
/// count.
#[derive(Clone)]
pub struct Front(Arc<FrontParts>);

struct FrontParts {
    edge: Arc<EdgeState>,
    gateway: Arc<GatewayState>,
    routes: Router,
}

impl Front {
    pub fn new(gateway: Arc<GatewayState>, routes: Router) -> Front {
        Front(Arc::new(FrontParts {
            edge: gateway.edge.clone(),
            gateway,
            routes,
        }))
    }

    /// What the main listener serves: the request's future (below) as it is, which hyper
    /// moves into the connection's own slot, instead of a box allocated and freed per request
    /// (the future is several kilobytes, and a fresh block for it each request was written
    /// to cold memory). The slot is allocated once per connection and sized to the future
    /// (about 5 KiB in a release build), so an open connection, idle or not, holds that much.
    pub fn listener_service(self) -> impl Serve {
        ServeFn(move |request| self.clone().answer(request))
    }

    /// The request-id middleware, this edge middleware, then the query route or the
    /// router, in one future: each nested future is built and moved into its parent, and
    /// the query route's is several kilobytes, so every level wrapped around it as its own
    /// future would copy it once more per request.
    ///
    /// The query route gets the request id, the client address and the start time as
    /// arguments; the router's routes read the first two as extensions
    /// ([`RequestId`](crate::http::RequestId), [`ClientIp`]), which only they are given.
    async fn answer(self, mut request: Request) -> Result<Response, Infallible> {
        let parts = &*self.0;
        // One clock reading for the request log and the query's metrics.
        let started = Instant::now();
        let tagged = request_id::Tagged::start(&request, started);
        let mut response = match admit(&parts.edge, &mut request).await {
            Err(refused) => refused,
            Ok(ip) => match gateway::query_route(&request) {
                Some(names) => {
                    let found = gateway::Found {
                        names,
                        request_id: tagged.id().clone(),
                        ip: Some(ip),
                        started,
                    };
                    gateway::serve_query(&parts.gateway, found, request).await
                }
                None => {
                    request.extensions_mut().insert(tagged.id().clone());
                    request.extensions_mut().insert(ClientIp(ip));
                    match parts.routes.serve(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                }
            },
        };
        apply_baseline(response.headers_mut(), parts.edge.tls);
        Ok(tagged.finish(response))
    }
}

impl tower::Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    /// In-process callers (tests, tower's `oneshot`): one reference count and one box per
    /// request; the listener serves [`Front::listener_service`] instead.
    fn call(&mut self, request: Request) -> Self::Future {
        Box::pin(self.clone().answer(request))
    }
}

/// The edge middleware's way in: resolves the client address (returned) and applies the
/// instance-wide per-IP limit, answering a refusal itself. The way out is
/// [`apply_baseline`] on the response, refused or not. The request is borrowed mutably
/// only because a shared borrow held across the limiter's wait would not be `Send` (a
/// request's body is not `Sync`).
async fn admit(edge: &EdgeState, request: &mut Request) -> Result<IpAddr, Response> {
    let peer = request
        .extensions()
        .get::<PeerAddr>()
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let ip = client_ip::resolve(peer, request.headers(), &edge.trusted_proxies);
    let health = matches!(request.uri().path(), "/healthz" | "/readyz");
    let Some(rule) = edge.per_ip.filter(|_| !health) else {
        return Ok(ip);
    };
    match edge
        .limiter
        .check(&format!("edge:{}", client_ip::bucket_key(ip)), rule)
        .await
    {
        Decision::Allow => Ok(ip),
        Decision::Deny { retry_after_secs } => {
            edge.metrics.rate_limited("address");
            Err(ApiError::from(Refusal::RateLimited {
                limit: RateLimited::Address(rule),
                retry_after_secs,
            })
            .into_response())
        }
    }
}
