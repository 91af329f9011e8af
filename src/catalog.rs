//! The compilers: SQL templates, HTTP request templates and param schemas, and the
//! validated values they produce.
//!
//! `template` (SQL), `http_template` and `params` compile what the catalog model
//! (`crate::spec`) declares; `compile` turns a whole `CatalogSpec` into the
//! `CompiledCatalog` the gateway serves. Pure: no IO, no clock, no secrets. Caller input
//! never becomes SQL text here.

pub mod compile;
pub mod http_template;
pub mod params;
pub mod template;
pub mod value;
