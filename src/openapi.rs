//! OpenAPI 3.1 documents: the instance's own API ([`instance`], served at
//! `GET /v1/openapi.json`) and one per app ([`app`], served at
//! `GET /v1/apps/{app}/openapi.json`), built from the catalog for one caller.
//!
//! The instance document is written by hand in `openapi/instance.yaml` and embedded in the
//! binary; `tests/it/openapi/routes.rs` walks the router code for every `.route(` and fails when a
//! route is missing from it or it names a path no route serves. Adding a route means adding
//! its path to that one file.
//!
//! Pure: no IO, no clock. Builds documents from data the planes hand in (the catalog's
//! declared params and the result columns the snapshot described); never sees SQL text, a
//! template, a datasource or a credential, so it cannot put one in a document.

pub mod app;
pub mod instance;
