//! The instance's OpenAPI document: `instance.yaml` (in this folder), embedded at build time
//! and turned into JSON once, with an ETag over the JSON bytes.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// The document as written (YAML).
pub const YAML: &str = include_str!("instance.yaml");

/// The document as served: JSON bytes and their ETag.
pub struct InstanceDocument {
    pub json: Vec<u8>,
    /// A strong ETag (quoted), from a hash of `json`.
    pub etag: String,
}

/// Why the embedded document could not be read (a build with a broken `instance.yaml`;
/// the unit test below keeps that from being released).
#[derive(Debug, thiserror::Error)]
#[error("the embedded OpenAPI document does not parse: {0}")]
pub struct DocumentError(String);

/// The document as a JSON value.
pub fn value() -> Result<serde_json::Value, DocumentError> {
    serde_norway::from_str(YAML).map_err(|e| DocumentError(e.to_string()))
}

static DOCUMENT: LazyLock<Result<InstanceDocument, DocumentError>> = LazyLock::new(|| {
    let json = serde_json::to_vec(&value()?).map_err(|e| DocumentError(e.to_string()))?;
    let etag = etag_of(&json);
    Ok(InstanceDocument { json, etag })
});

/// The served document, converted on first use.
pub fn document() -> Result<&'static InstanceDocument, &'static DocumentError> {
    DOCUMENT.as_ref()
}

/// A strong ETag for `bytes`: the first 16 bytes of their SHA-256, in hex, quoted.
pub fn etag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_document_parses_and_is_openapi_3_1() {
        let doc = document().expect("instance.yaml parses");
        let value: serde_json::Value = serde_json::from_slice(&doc.json).expect("JSON");
        assert_eq!(value["openapi"], "3.1.0");
        assert!(value["paths"].as_object().is_some_and(|p| !p.is_empty()));
        assert!(doc.etag.starts_with('"') && doc.etag.len() == 34);
    }
}
