//! The compilers: SQL templates, HTTP request templates and param schemas.
//!
//! `template` (SQL), `http_template` and `params` compile what the catalog model
//! (`crate::spec`) declares; `compile` turns a whole `CatalogSpec` into the
//! `CompiledCatalog` the gateway serves. Per request they validate params into
//! `statement::ParamValue`s and render a `statement::RenderedSql` / `RenderedHttp`.
//! Pure: no IO, no clock, no secrets; imports only the bottom layer and `policy`'s
//! compilers. Caller input never becomes SQL text here.

pub mod binding;
pub mod compile;
pub mod http_template;
pub mod params;
pub mod row_security;
pub mod template;
