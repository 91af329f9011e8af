//! The catalog: datasources, apps and stored queries.
//!
//! `spec` is the YAML/store form and `yaml` reads and writes it; `params` and `template`
//! compile it, and `compile` builds the immutable snapshot the gateway serves. This module
//! does no IO and never opens a secret except to verify it (`compile::verify_secrets`).

pub mod compile;
pub mod http_template;
pub mod params;
pub mod spec;
pub mod template;
pub mod value;
pub mod yaml;
