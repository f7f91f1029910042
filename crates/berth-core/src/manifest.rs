//! Parsing and validating manifests as they are pushed: OCI image manifest and index, OCI
//! artifacts, Docker schema 2 manifest and manifest list. Schema 1 is refused.
//!
//! Parsing never changes the bytes: the registry stores and serves exactly what was pushed,
//! so the digest a client computed stays true. What comes out of here is what the registry
//! must know about a manifest: its media type, what it references, and its referrer facts.

use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::media_type::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, OCI_INDEX,
    OCI_MANIFEST,
};

/// Largest manifest accepted. The spec asks registries to accept at least 4 MiB.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// What the registry keeps from a manifest besides its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    /// The media type the manifest is served with.
    pub media_type: String,
    /// `artifactType`, or for an image manifest without one, its config's media type: the
    /// value the referrers API reports and filters on.
    pub artifact_type: Option<String>,
    /// The manifest this one refers to (`subject`), which need not exist (spec).
    pub subject: Option<Digest>,
    /// Top-level annotations, reported in referrers listings.
    pub annotations: Option<Map<String, Value>>,
    /// An image manifest's config media type (what Harbor lists as the artifact's
    /// `media_type`).
    pub config_media_type: Option<String>,
    /// Blobs that must exist in the repository: config and layers.
    pub blobs: Vec<Digest>,
    /// Manifests that must exist in the repository: an index's children.
    pub manifests: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "Docker schema 1 manifests are not supported: push with a client that writes schema 2 or OCI manifests"
    )]
    Schema1,
    #[error("manifest invalid: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

/// Strip parameters (`; charset=utf-8`) and surrounding space from a Content-Type.
fn bare_media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Parse and validate a pushed manifest. `content_type` is the request's Content-Type.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<ParsedManifest, ManifestError> {
    let header_type = content_type.map(bare_media_type).filter(|t| !t.is_empty());
    if matches!(header_type, Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED)) {
        return Err(ManifestError::Schema1);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("body is not valid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| invalid("body is not a JSON object"))?;

    match object.get("schemaVersion") {
        Some(v) if v.as_u64() == Some(1) => return Err(ManifestError::Schema1),
        Some(v) if v.as_u64() == Some(2) => {}
        Some(_) => return Err(invalid("schemaVersion must be 2")),
        None => return Err(invalid("schemaVersion is missing")),
    }

    let body_type = match object.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("mediaType must be a string")),
    };
    // Generic types say nothing about which manifest this is; fall back to the body.
    let header_type =
        header_type.filter(|t| !matches!(*t, "application/json" | "application/octet-stream"));
    let media_type = match (header_type, body_type) {
        (Some(h), Some(b)) if h != b => {
            return Err(invalid(format!(
                "Content-Type {h:?} does not match the manifest's mediaType {b:?}"
            )));
        }
        (Some(t), _) | (None, Some(t)) => t.to_owned(),
        // OCI allows mediaType to be omitted; tell the two OCI kinds apart by shape.
        (None, None) if object.contains_key("manifests") => OCI_INDEX.to_owned(),
        (None, None) if object.contains_key("config") => OCI_MANIFEST.to_owned(),
        (None, None) => {
            return Err(invalid(
                "cannot tell the manifest's media type: set Content-Type",
            ));
        }
    };

    let artifact_type = match object.get("artifactType") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("artifactType must be a string")),
    };
    let annotations = match object.get("annotations") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err(invalid("annotations must be an object")),
    };
    let subject = match object.get("subject") {
        None | Some(Value::Null) => None,
        Some(v) => Some(descriptor(v, "subject")?.digest),
    };

    let mut parsed = ParsedManifest {
        media_type,
        artifact_type,
        subject,
        annotations,
        config_media_type: None,
        blobs: Vec::new(),
        manifests: Vec::new(),
    };
    match parsed.media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = descriptor(
                object
                    .get("config")
                    .ok_or_else(|| invalid("config is missing"))?,
                "config",
            )?;
            let layers = object
                .get("layers")
                .ok_or_else(|| invalid("layers is missing"))?
                .as_array()
                .ok_or_else(|| invalid("layers must be an array"))?;
            if parsed.artifact_type.is_none() && parsed.media_type == OCI_MANIFEST {
                parsed.artifact_type = Some(config.media_type.clone());
            }
            parsed.blobs.push(config.digest);
            parsed.config_media_type = Some(config.media_type);
            for (i, layer) in layers.iter().enumerate() {
                let layer = descriptor(layer, &format!("layers[{i}]"))?;
                // Foreign layers (Windows base images) live elsewhere by design.
                if !layer.has_urls {
                    parsed.blobs.push(layer.digest);
                }
            }
        }
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            let manifests = object
                .get("manifests")
                .ok_or_else(|| invalid("manifests is missing"))?
                .as_array()
                .ok_or_else(|| invalid("manifests must be an array"))?;
            for (i, child) in manifests.iter().enumerate() {
                parsed
                    .manifests
                    .push(descriptor(child, &format!("manifests[{i}]"))?.digest);
            }
        }
        other => {
            return Err(invalid(format!(
                "unsupported manifest media type {other:?}"
            )));
        }
    }
    Ok(parsed)
}

struct Descriptor {
    media_type: String,
    digest: Digest,
    has_urls: bool,
}

fn descriptor(value: &Value, field: &str) -> Result<Descriptor, ManifestError> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid(format!("{field} must be an object")))?;
    let media_type = object
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{field}.mediaType is missing")))?
        .to_owned();
    let digest = object
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{field}.digest is missing")))?
        .parse::<Digest>()
        .map_err(|e| invalid(format!("{field}.digest: {e}")))?;
    match object.get("size") {
        Some(v) if v.is_u64() => {}
        _ => {
            return Err(invalid(format!(
                "{field}.size must be a non-negative integer"
            )));
        }
    }
    let has_urls = object
        .get("urls")
        .and_then(Value::as_array)
        .is_some_and(|u| !u.is_empty());
    Ok(Descriptor {
        media_type,
        digest,
        has_urls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn d(s: &str) -> String {
        Digest::of(Algorithm::Sha256, s.as_bytes()).to_string()
    }

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":3}}]{extra}}}"#,
            d("config"),
            d("layer")
        )
    }

    #[test]
    fn image_manifest_lists_config_and_layers() {
        let m = parse(Some(OCI_MANIFEST), image("").as_bytes()).expect("valid");
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(m.config_media_type, m.artifact_type);
        assert!(m.subject.is_none());
    }

    #[test]
    fn artifact_with_subject() {
        let extra = format!(
            r#","artifactType":"application/x.sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":9}}"#,
            d("subject")
        );
        let m = parse(Some(OCI_MANIFEST), image(&extra).as_bytes()).expect("valid");
        assert_eq!(m.artifact_type.as_deref(), Some("application/x.sig"));
        assert_eq!(m.subject.map(|s| s.to_string()), Some(d("subject")));
    }

    #[test]
    fn index_lists_children() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1}}]}}"#,
            d("child")
        );
        let m = parse(Some(OCI_INDEX), body.as_bytes()).expect("valid");
        assert_eq!(m.manifests.len(), 1);
        assert_eq!(m.media_type, OCI_INDEX);
        // Without Content-Type the shape decides.
        assert_eq!(
            parse(None, body.as_bytes()).expect("valid").media_type,
            OCI_INDEX
        );
    }

    #[test]
    fn refuses_bad_manifests() {
        assert_eq!(
            parse(Some(DOCKER_SCHEMA1_SIGNED), b"{}"),
            Err(ManifestError::Schema1)
        );
        assert_eq!(
            parse(None, br#"{"schemaVersion":1,"name":"x"}"#),
            Err(ManifestError::Schema1)
        );
        for bad in [
            "",
            "nope",
            "[]",
            r#"{"schemaVersion":2}"#,
            r#"{"schemaVersion":3,"config":{}}"#,
        ] {
            assert!(
                matches!(
                    parse(Some(OCI_MANIFEST), bad.as_bytes()),
                    Err(ManifestError::Invalid(_))
                ),
                "{bad}"
            );
        }
        // Content-Type and body disagree.
        assert!(parse(Some(DOCKER_MANIFEST), image("").as_bytes()).is_err());
        // Unknown type.
        assert!(parse(Some("text/plain"), br#"{"schemaVersion":2}"#).is_err());
        // Bad descriptor digest.
        let bad = image("").replace(&d("layer"), "sha256:nothex");
        assert!(parse(Some(OCI_MANIFEST), bad.as_bytes()).is_err());
    }
}
