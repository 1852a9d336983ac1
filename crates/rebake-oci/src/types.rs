//! OCI JSON documents: descriptors, manifests, indexes and image configs.
//!
//! Every struct keeps fields it does not model in a flattened `extra` map, so a document
//! read from a registry and written back loses nothing. Maps are `BTreeMap`s and empty
//! collections are skipped, so [`to_json_bytes`] of the same value always yields the same
//! bytes — which is what makes manifest digests reproducible.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};

use crate::error::{OciError, Result};
use crate::reference::{OCI_INDEX, OCI_MANIFEST};

/// Fields a document carries that these structs do not model, kept for round-trips.
pub type Extra = BTreeMap<String, serde_json::Value>;

/// Deserialises JSON `null` as the type's default (Docker writes `"Labels": null`).
fn null_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Encodes `value` as compact JSON. Deterministic for the types of this module.
pub fn to_json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| OciError::json("failed to encode oci json", e))
}

/// Decodes an OCI JSON document; `what` names it in the error (`image manifest`…).
pub fn from_json_bytes<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| OciError::json(format!("failed to decode {what}"), e))
}

/// A content descriptor: what a manifest or index points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// `sha256:…` of the referenced content.
    pub digest: String,
    /// Size in bytes of the referenced content.
    pub size: i64,
    /// Free-form annotations.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Platform, set on index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Unmodelled fields (`urls`, `artifactType`…).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Descriptor {
    /// A descriptor with no annotations or platform.
    pub fn new(media_type: impl Into<String>, digest: impl Into<String>, size: i64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest: digest.into(),
            size,
            annotations: BTreeMap::new(),
            platform: None,
            extra: Extra::new(),
        }
    }
}

/// The platform an index entry is built for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in GOARCH terms (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system in GOOS terms (`linux`).
    pub os: String,
    /// CPU variant (`v8`), when relevant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Unmodelled fields (`os.version`, `os.features`…).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Platform {
    /// `os`/`architecture` with no variant.
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Self {
        Platform {
            architecture: architecture.into(),
            os: os.into(),
            variant: None,
            extra: Extra::new(),
        }
    }
}

/// An image manifest (OCI or Docker schema 2; the JSON shape is the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type; should be set (registries use it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// Layer blobs, base first.
    #[serde(default, deserialize_with = "null_default")]
    pub layers: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Unmodelled fields (`subject`, `artifactType`…).
    #[serde(flatten)]
    pub extra: Extra,
}

impl ImageManifest {
    /// An OCI image manifest (`schemaVersion` 2, `mediaType` [`OCI_MANIFEST`]).
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_string()),
            config,
            layers,
            annotations: BTreeMap::new(),
            extra: Extra::new(),
        }
    }
}

/// An image index (OCI index or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// One descriptor per platform manifest (or attestation).
    #[serde(default, deserialize_with = "null_default")]
    pub manifests: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Unmodelled fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ImageIndex {
    /// An OCI index over `manifests`.
    pub fn new(manifests: Vec<Descriptor>) -> Self {
        ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests,
            annotations: BTreeMap::new(),
            extra: Extra::new(),
        }
    }
}

/// The first index entry whose platform is `os`/`arch` (variant ignored).
pub fn select_platform<'a>(index: &'a ImageIndex, os: &str, arch: &str) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|descriptor| {
        descriptor
            .platform
            .as_ref()
            .is_some_and(|platform| platform.os == os && platform.architecture == arch)
    })
}

/// An empty JSON object, the value type of `ExposedPorts` and `Volumes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

/// The image config blob (`application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// CPU architecture (`amd64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// CPU variant (`v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Runtime defaults for containers of this image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RuntimeConfig>,
    /// The layer diff ids.
    pub rootfs: RootFs,
    /// One entry per layer (and per empty step).
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Unmodelled fields (`author`…).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `config` object of an image config, with the capitalised OCI/Docker names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    /// `User`: user (and group) to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `ExposedPorts`: `"80/tcp"` → `{}`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, EmptyObject>,
    /// `Env`: `KEY=value` entries.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `Entrypoint`; `None` means unset (an empty list resets a base image's value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`; `None` means unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `Volumes`: path → `{}`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, EmptyObject>,
    /// `WorkingDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `Labels`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Unmodelled fields (`Healthcheck`, `OnBuild`…).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `sha256:…` of each uncompressed layer tar, base first.
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            type_: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// One `history` entry of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// What produced the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Who produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step produced no layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{OCI_CONFIG, OCI_LAYER_GZIP, sha256_digest};

    #[test]
    fn manifest_bytes_are_deterministic_and_round_trip() {
        let mut manifest = ImageManifest::new(
            Descriptor::new(OCI_CONFIG, sha256_digest(b"c"), 1),
            vec![Descriptor::new(OCI_LAYER_GZIP, sha256_digest(b"l"), 1)],
        );
        manifest.annotations.insert("b".into(), "2".into());
        manifest.annotations.insert("a".into(), "1".into());
        let bytes = to_json_bytes(&manifest).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType""#
        ));
        assert!(text.ends_with(r#""annotations":{"a":"1","b":"2"}}"#), "{text}");
        let back: ImageManifest = from_json_bytes(&bytes, "image manifest").unwrap();
        assert_eq!(back, manifest);
        assert_eq!(to_json_bytes(&back).unwrap(), bytes);
    }

    #[test]
    fn config_keeps_unknown_fields_and_tolerates_nulls() {
        let json = br#"{"architecture":"amd64","os":"linux","author":"me",
            "config":{"Env":["A=1"],"Labels":null,"Cmd":null,"ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Test":["NONE"]}},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]},
            "history":[{"created_by":"x","empty_layer":true}]}"#;
        let config: ImageConfig = from_json_bytes(json, "image config").unwrap();
        let runtime = config.config.as_ref().unwrap();
        assert_eq!(runtime.env, vec!["A=1"]);
        assert!(runtime.labels.is_empty());
        assert_eq!(runtime.cmd, None);
        assert!(runtime.exposed_ports.contains_key("80/tcp"));
        assert!(runtime.extra.contains_key("Healthcheck"));
        assert_eq!(config.extra.get("author"), Some(&serde_json::json!("me")));
        let bytes = to_json_bytes(&config).unwrap();
        let again: ImageConfig = from_json_bytes(&bytes, "image config").unwrap();
        assert_eq!(again, config);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(r#""ExposedPorts":{"80/tcp":{}}"#), "{text}");
        assert!(text.contains(r#""rootfs":{"type":"layers","diff_ids":["sha256:aa"]}"#));
    }

    #[test]
    fn selects_platform_from_index() {
        let mut amd = Descriptor::new(OCI_MANIFEST, sha256_digest(b"amd"), 1);
        amd.platform = Some(Platform::new("linux", "amd64"));
        let mut arm = Descriptor::new(OCI_MANIFEST, sha256_digest(b"arm"), 1);
        arm.platform = Some(Platform::new("linux", "arm64"));
        let attestation = Descriptor::new(OCI_MANIFEST, sha256_digest(b"att"), 1);
        let index = ImageIndex::new(vec![attestation, amd, arm.clone()]);
        assert_eq!(select_platform(&index, "linux", "arm64"), Some(&arm));
        assert_eq!(select_platform(&index, "windows", "amd64"), None);
    }
}
