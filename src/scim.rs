//! SCIM 2.0 provisioning (RFC 7643, RFC 7644; docs/SCIM.md): an identity provider creates,
//! updates, deactivates and deletes Sluice accounts and groups at `/scim/v2/...`, behind
//! the SCIM bearer token (`SLUICE_SCIM_TOKEN`).
//!
//! - [`resource`]: SCIM `User` and `Group` JSON, read into what the store keeps and
//!   rendered back; the discovery documents (`ServiceProviderConfig`, `Schemas`,
//!   `ResourceTypes`).
//! - [`filter`]: the `filter` query parameter (`userName eq "x"`, `externalId eq "x"`,
//!   `displayName eq "x"`); anything else is `invalidFilter`.
//! - [`patch`]: `PATCH` operations (`add`, `replace`, `remove`, with or without a path,
//!   value filters such as `members[value eq "id"]`) applied to a resource's JSON.
//! - [`service`]: the rules over the store, each change audited.
//! - [`routes`]: the HTTP side: token check, SCIM content type, SCIM error bodies.
//!
//! This file holds [`ScimError`], what every part refuses with. `resource`, `filter` and
//! `patch` are pure (no IO, no clock). Never logs a request body, a token or a value of a
//! resource.

pub mod filter;
pub mod patch;
pub mod resource;
pub mod routes;
pub mod service;

/// The most resources one list answers (and the default `count`).
pub const MAX_COUNT: usize = 200;

/// Schema URNs.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Why a SCIM request is refused: the RFC 7644 `scimType` (when it has one) and a message
/// that names what was wrong, never the value itself. `routes` picks the status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScimError {
    /// The filter is not one this server evaluates (400 `invalidFilter`).
    #[error("{0}")]
    InvalidFilter(String),
    /// The body is not a SCIM resource or message (400 `invalidSyntax`).
    #[error("{0}")]
    InvalidSyntax(String),
    /// A value is missing or not acceptable (400 `invalidValue`).
    #[error("{0}")]
    InvalidValue(String),
    /// A PATCH path that cannot be read (400 `invalidPath`).
    #[error("{0}")]
    InvalidPath(String),
    /// A PATCH path whose filter matched nothing where something must match (400 `noTarget`).
    #[error("{0}")]
    NoTarget(String),
    /// An attribute that may not be changed this way (400 `mutability`).
    #[error("{0}")]
    Mutability(String),
    /// A unique value that another resource has (409 `uniqueness`).
    #[error("{0}")]
    Uniqueness(String),
    /// No such resource (404).
    #[error("{0}")]
    NotFound(String),
    /// The store failed (500); the cause is logged, not shown.
    #[error("internal error")]
    Internal,
}

impl ScimError {
    /// The RFC 7644 `scimType`, when the error has one.
    pub fn scim_type(&self) -> Option<&'static str> {
        match self {
            ScimError::InvalidFilter(_) => Some("invalidFilter"),
            ScimError::InvalidSyntax(_) => Some("invalidSyntax"),
            ScimError::InvalidValue(_) => Some("invalidValue"),
            ScimError::InvalidPath(_) => Some("invalidPath"),
            ScimError::NoTarget(_) => Some("noTarget"),
            ScimError::Mutability(_) => Some("mutability"),
            ScimError::Uniqueness(_) => Some("uniqueness"),
            ScimError::NotFound(_) | ScimError::Internal => None,
        }
    }
}
