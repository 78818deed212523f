//! The OCI image-spec 1.1 documents Ingot writes and reads: descriptors, image manifests
//! (artifacts) and indexes, with the field order of the spec, so the bytes, and so the digests,
//! follow from the content alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An image manifest.
pub const MANIFEST_MEDIA: &str = "application/vnd.oci.image.manifest.v1+json";
/// An image index.
pub const INDEX_MEDIA: &str = "application/vnd.oci.image.index.v1+json";
/// The empty config of an artifact.
pub const EMPTY_MEDIA: &str = "application/vnd.oci.empty.v1+json";
/// The empty config's bytes.
pub const EMPTY_BLOB: &[u8] = b"{}";
/// Layer annotation naming the file.
pub const TITLE: &str = "org.opencontainers.image.title";
/// Manifest annotation: when it was made.
pub const CREATED: &str = "org.opencontainers.image.created";
/// Manifest annotation: the version.
pub const VERSION: &str = "org.opencontainers.image.version";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Artifact type (referrers and index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Platform (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor of these bytes.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest: format!("sha256:{}", crate::base::fsx::sha256_hex(bytes)),
            size: bytes.len() as u64,
            artifact_type: None,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }

    /// The `org.opencontainers.image.title` annotation.
    pub fn title(&self) -> Option<&str> {
        self.annotations.get(TITLE).map(String::as_str)
    }
}

/// An index entry's platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// GOARCH name.
    pub architecture: String,
    /// `linux`.
    pub os: String,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// 2.
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA`].
    pub media_type: String,
    /// What kind of artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config (the empty one for artifacts).
    pub config: Descriptor,
    /// The files.
    pub layers: Vec<Descriptor>,
    /// The manifest this one is about (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// 2.
    pub schema_version: u32,
    /// [`INDEX_MEDIA`].
    #[serde(default)]
    pub media_type: String,
    /// What kind of artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Entries.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// An empty index (the referrers fallback starts as one).
    pub fn empty() -> Self {
        Index {
            schema_version: 2,
            media_type: INDEX_MEDIA.to_string(),
            artifact_type: None,
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }
}

/// The empty config descriptor.
pub fn empty_config() -> Descriptor {
    Descriptor::of(EMPTY_MEDIA, EMPTY_BLOB)
}

/// JSON bytes of a document (serde's field order is the struct's: fixed).
pub fn to_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_config_has_the_specs_digest() {
        assert_eq!(
            empty_config().digest,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(empty_config().size, 2);
    }
}
