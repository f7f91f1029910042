//! What Harbor's API says about an artifact that follows from its manifest alone: its type,
//! its media type, an index's children and their platforms, an accessory's type, and the
//! attributes shown from an image's config.
//!
//! Stored manifests were validated when pushed, so reading them here is tolerant: a field
//! that is not what it should be is simply not reported.

use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::media_type::{DOCKER_MANIFEST_LIST, OCI_INDEX};

/// Image config media types (OCI, Docker).
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// A Helm chart's config: Harbor's `CHART` artifacts.
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";

/// A platform of an index's child, as the index names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub os_version: Option<String>,
    pub os_features: Vec<String>,
}

/// One manifest an index lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub digest: Digest,
    pub platform: Option<Platform>,
    pub annotations: Option<Map<String, Value>>,
    pub urls: Vec<String>,
}

/// What a stored manifest says about itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ManifestFacts {
    /// An image manifest's config: its digest and media type.
    pub config: Option<(Digest, String)>,
    /// An index's children, in the index's order.
    pub children: Vec<Child>,
}

fn is_index(manifest_media_type: &str) -> bool {
    matches!(manifest_media_type, OCI_INDEX | DOCKER_MANIFEST_LIST)
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Read a stored manifest's config and children.
pub fn facts(manifest_media_type: &str, content: &[u8]) -> ManifestFacts {
    let Ok(value) = serde_json::from_slice::<Value>(content) else {
        return ManifestFacts::default();
    };
    let digest = |d: &Value| string(d, "digest").and_then(|s| s.parse::<Digest>().ok());
    if is_index(manifest_media_type) {
        let children = value
            .get("manifests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|child| {
                Some(Child {
                    digest: digest(child)?,
                    platform: child.get("platform").map(|p| Platform {
                        architecture: string(p, "architecture").unwrap_or_default(),
                        os: string(p, "os").unwrap_or_default(),
                        variant: string(p, "variant"),
                        os_version: string(p, "os.version"),
                        os_features: p
                            .get("os.features")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|f| f.as_str().map(str::to_owned))
                            .collect(),
                    }),
                    annotations: child.get("annotations").and_then(Value::as_object).cloned(),
                    urls: child
                        .get("urls")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|u| u.as_str().map(str::to_owned))
                        .collect(),
                })
            })
            .collect();
        return ManifestFacts {
            config: None,
            children,
        };
    }
    let config = value
        .get("config")
        .and_then(|c| Some((digest(c)?, string(c, "mediaType")?)));
    ManifestFacts {
        config,
        children: Vec::new(),
    }
}

/// Harbor's `media_type` of an artifact: its config's media type, or for an index (no
/// config) the index's own.
pub fn media_type<'a>(manifest_media_type: &'a str, config_media_type: Option<&'a str>) -> &'a str {
    config_media_type.unwrap_or(manifest_media_type)
}

/// Harbor's artifact `type`: `IMAGE` for image configs and indexes, `CHART` for Helm, the
/// `<type>` of a `application/vnd.<vendor>.<type>.config.<version>+json` config (as Harbor's
/// default processor reads it), else `UNKNOWN`.
pub fn kind(manifest_media_type: &str, media_type: &str) -> String {
    if is_index(manifest_media_type) || matches!(media_type, OCI_CONFIG | DOCKER_CONFIG) {
        return "IMAGE".into();
    }
    if media_type == HELM_CONFIG {
        return "CHART".into();
    }
    vendor_config_type(media_type)
        .map(str::to_uppercase)
        .unwrap_or_else(|| "UNKNOWN".into())
}

/// `<type>` of `application/vnd.<vendor>.<type>.config.<version>+json`.
fn vendor_config_type(media_type: &str) -> Option<&str> {
    let rest = media_type.strip_prefix("application/vnd.")?;
    let (_vendor, rest) = rest.split_once('.')?;
    let body = rest.strip_suffix("+json")?;
    let (kind, version) = body.rsplit_once(".config.")?;
    (!kind.is_empty() && !version.contains('.')).then_some(kind)
}

/// Harbor's accessory type of a referrer, from its artifact type.
pub fn accessory_type(artifact_type: Option<&str>) -> &'static str {
    match artifact_type {
        Some("application/vnd.dev.cosign.artifact.sig.v1+json") => "signature.cosign",
        Some("application/vnd.cncf.notary.signature") => "signature.notation",
        Some("application/vnd.goharbor.harbor.sbom.v1") => "harbor.sbom",
        _ => "subject.accessory",
    }
}

/// The attributes Harbor shows for an image (`extra_attrs`), from its config blob:
/// architecture, os, variant, author, created and the runtime `config`.
pub fn image_attributes(config: &[u8]) -> Map<String, Value> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(config) else {
        return Map::new();
    };
    [
        "architecture",
        "os",
        "variant",
        "author",
        "created",
        "config",
    ]
    .into_iter()
    .filter_map(|key| object.get(key).map(|v| (key.to_owned(), v.clone())))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use crate::media_type::{DOCKER_MANIFEST, OCI_MANIFEST};

    fn d(s: &str) -> Digest {
        Digest::of(Algorithm::Sha256, s.as_bytes())
    }

    #[test]
    fn types_follow_harbors_processors() {
        assert_eq!(kind(OCI_MANIFEST, OCI_CONFIG), "IMAGE");
        assert_eq!(kind(DOCKER_MANIFEST, DOCKER_CONFIG), "IMAGE");
        assert_eq!(kind(OCI_INDEX, OCI_INDEX), "IMAGE");
        assert_eq!(kind(OCI_MANIFEST, HELM_CONFIG), "CHART");
        assert_eq!(
            kind(OCI_MANIFEST, "application/vnd.example.sbom.config.v1+json"),
            "SBOM"
        );
        assert_eq!(
            kind(OCI_MANIFEST, "application/vnd.oci.empty.v1+json"),
            "UNKNOWN"
        );
        assert_eq!(kind(OCI_MANIFEST, "application/x.test"), "UNKNOWN");
        assert_eq!(media_type(OCI_INDEX, None), OCI_INDEX);
        assert_eq!(media_type(OCI_MANIFEST, Some(OCI_CONFIG)), OCI_CONFIG);
    }

    #[test]
    fn an_index_lists_its_children_with_platforms() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1}}]}}"#,
            d("a"),
            d("b")
        );
        let facts = facts(OCI_INDEX, body.as_bytes());
        assert_eq!(facts.children.len(), 2);
        assert_eq!(facts.children[0].digest, d("a"));
        let platform = facts.children[0].platform.clone().expect("platform");
        assert_eq!(
            (platform.architecture.as_str(), platform.variant.as_deref()),
            ("arm64", Some("v8"))
        );
        assert!(facts.children[1].platform.is_none());
        assert_eq!(
            super::facts(OCI_INDEX, b"not json"),
            ManifestFacts::default()
        );
    }

    #[test]
    fn an_image_names_its_config_and_its_attributes() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":2}},"layers":[]}}"#,
            d("config")
        );
        assert_eq!(
            facts(OCI_MANIFEST, body.as_bytes()).config,
            Some((d("config"), OCI_CONFIG.to_owned()))
        );
        let attrs = image_attributes(br#"{"architecture":"amd64","os":"linux","rootfs":{}}"#);
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs["os"], "linux");
        assert!(image_attributes(b"[]").is_empty());
    }

    #[test]
    fn accessories_are_typed_as_harbor_does() {
        assert_eq!(
            accessory_type(Some("application/vnd.cncf.notary.signature")),
            "signature.notation"
        );
        assert_eq!(
            accessory_type(Some("application/x.sbom")),
            "subject.accessory"
        );
        assert_eq!(accessory_type(None), "subject.accessory");
    }
}
