//! The reqwest resolver every outbound HTTP client uses (HTTP datasources, the ACME client,
//! the audit webhook, the SSO providers): it resolves once through
//! [`resolve_checked`](super::resolve_checked) and hands reqwest only the addresses the
//! egress policy allows, so a name that resolves to a blocked address is never connected to.
//! An IP literal in a URL is not resolved by reqwest: its callers judge those themselves.

use std::net::SocketAddr;
use std::sync::Arc;

use super::EgressPolicy;

/// A reqwest resolver that resolves once and hands back only addresses the policy allows.
pub struct CheckedResolver {
    policy: Arc<EgressPolicy>,
}

impl CheckedResolver {
    pub fn new(policy: Arc<EgressPolicy>) -> CheckedResolver {
        CheckedResolver { policy }
    }
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = super::resolve_checked(&host, 0, &policy).await?;
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}
