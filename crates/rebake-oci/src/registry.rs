//! Registry client: manifests, blobs, cross-repository mounts, tags.
//!
//! Blob transfer, blob existence, tag listing and bearer-token negotiation go through
//! `oci-client`. Manifest HEAD/GET/PUT and blob mounts are plain HTTP requests on
//! `reqwest` (the same 0.13 release oci-client is built on, so nothing extra is compiled),
//! because oci-client cannot do them the way Rebake needs:
//!
//! - its HEAD (`fetch_manifest_digest`) and GET (`pull_manifest_raw`) do not return the
//!   `Content-Type`, so the media type of a resolved tag would be lost;
//! - `push_manifest_raw` panics (`expect`) when a registry omits `Location` on a push by
//!   digest;
//! - `mount_blob` turns the spec-allowed "202 Accepted, mount refused" answer into an
//!   error and leaves the upload session it opened dangling.
//!
//! The raw requests reuse oci-client for authentication (`Client::auth`, which follows
//! the registry's bearer challenge anonymously) and cache the resulting header briefly.
//! Bearer tokens are scoped to a repository, so they are cached per repository; a registry
//! whose `/v2/` answers without a challenge needs no token for any repository, and is
//! remembered as such (for the same time), so a cascade touching a thousand repositories
//! does not ping `/v2/` for each of them. A `401` forgets both and negotiates again.
//!
//! [`Registry::probe`] (what the ingress's tag poller calls, often, for many tags) has its
//! own, leaner anonymous token flow, because `Client::auth` pings `/v2/` before every token
//! request and the cached header above is kept for 60 s whatever the token's lifetime:
//! polling every 5 minutes through it would cost a ping, a token request and the `HEAD`
//! each time. `probe` instead sends the `HEAD` with the repository's cached token (or none);
//! a `401` with a `Bearer` challenge fetches a token from the challenge's realm (scope
//! `repository:<name>:pull`), kept for its `expires_in`, and the `HEAD` is sent again. Which
//! registries challenge is remembered, so once a token expired the next probe asks for a
//! new one first. An unchanged tag therefore costs one request while the token is valid
//! (always, on a registry without auth) and two (token + `HEAD`) after it expired. Every
//! request `probe` makes is counted per registry ([`Registry::probe_requests`]) so a caller
//! can hold itself to a request budget. A `429` from the registry or its token service is
//! not an error but [`Probe::RateLimited`], with the `Retry-After` it gave
//! ([`parse_retry_after`]: seconds or an HTTP date).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciEnvelope};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest013 as reqwest;
use serde::Deserialize;
use tracing::debug;

use crate::error::{OciError, Result};
use crate::reference::{
    ImageRef, MANIFEST_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST, is_index_media_type, sha256_digest, validate_digest,
    validate_manifest_reference, validate_registry, validate_repository,
};
use crate::types::{ImageIndex, ImageManifest, from_json_bytes};

const USER_AGENT: &str = concat!("rebake-oci/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Anonymous bearer tokens usually live 300 s; re-negotiate well before that.
const TOKEN_TTL: Duration = Duration::from_secs(60);
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
/// Longest registry error body kept in an error message.
const MAX_ERROR_BODY: usize = 2048;
/// Token lifetime assumed when a token service omits `expires_in` (the distribution token
/// spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A probe token is dropped this long (at most) before it expires, so it is never sent
/// stale.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// What one [`Registry::probe`] of a tag found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The tag exists.
    Found {
        /// `sha256:…` of the manifest (or index) it points at.
        digest: String,
        /// Media type of that manifest (or index).
        media_type: String,
    },
    /// The registry does not know the tag (or the repository).
    NotFound,
    /// The registry or its token service answered `429 Too Many Requests`.
    RateLimited {
        /// The `Retry-After` it sent, when it sent a readable one.
        retry_after: Option<Duration>,
    },
}

/// What a tag or digest currently points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `sha256:…` of the manifest (or index).
    pub digest: String,
    /// Media type of the manifest (or index).
    pub media_type: String,
}

/// A manifest (or index) exactly as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    /// The manifest bytes; their sha256 is `digest`.
    pub bytes: Bytes,
    /// The manifest's media type (from its `mediaType` field, else the `Content-Type`,
    /// else inferred from its shape).
    pub media_type: String,
    /// `sha256:…` of `bytes`.
    pub digest: String,
}

impl RawManifest {
    /// True for an OCI index or Docker manifest list.
    pub fn is_index(&self) -> bool {
        is_index_media_type(&self.media_type)
    }

    /// Decodes the bytes as an image manifest.
    pub fn to_manifest(&self) -> Result<ImageManifest> {
        from_json_bytes(&self.bytes, "image manifest")
    }

    /// Decodes the bytes as an image index.
    pub fn to_index(&self) -> Result<ImageIndex> {
        from_json_bytes(&self.bytes, "image index")
    }
}

/// Registry client. Anonymous; `https` with rustls except for the configured plain-http
/// hosts. Cheap to clone: clones share connections and cached tokens.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    oci: oci_client::Client,
    http: reqwest::Client,
    plain_http_hosts: Vec<String>,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    /// Registries whose `/v2/` answered without a challenge, and when it did.
    unchallenged: Mutex<HashMap<String, Instant>>,
    probes: Mutex<ProbeState>,
}

/// [`Registry::probe`]'s own authentication state and request counts.
#[derive(Default)]
struct ProbeState {
    /// Registries known to answer with a bearer challenge, and what it said.
    challenges: HashMap<String, BearerChallenge>,
    /// Pull tokens by (registry, repository).
    tokens: HashMap<(String, String), ProbeToken>,
    /// Requests made by `probe`, per registry (token requests included).
    requests: HashMap<String, u64>,
}

struct ProbeToken {
    authorization: String,
    /// When to stop using it (a margin before it really expires).
    usable_until: Instant,
}

/// The parts of a `WWW-Authenticate: Bearer …` challenge an anonymous token request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

/// A probe request's answer: the response, or a rate limit (registry or token service).
enum ProbeAnswer {
    Response(reqwest::Response),
    RateLimited(Option<Duration>),
}

/// A token request's answer.
enum TokenAnswer {
    Authorization(String),
    RateLimited(Option<Duration>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    registry: String,
    repository: String,
    push: bool,
}

struct CachedToken {
    authorization: Option<String>,
    fetched: Instant,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("plain_http_hosts", &self.inner.plain_http_hosts)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client that talks plain HTTP to `plain_http_hosts` (`host:port`, exactly as in
    /// image references) and HTTPS to everything else.
    ///
    /// # Panics
    ///
    /// Like `reqwest::Client::new`, when the TLS backend cannot be initialised; use
    /// [`Registry::try_new`] to get an error instead.
    pub fn new(plain_http_hosts: Vec<String>) -> Self {
        Self::try_new(plain_http_hosts).expect("the rustls http client can be initialised")
    }

    /// Like [`Registry::new`], returning an error when the HTTP client cannot be built.
    pub fn try_new(plain_http_hosts: Vec<String>) -> Result<Self> {
        let setup_error = |message: String| OciError::Protocol {
            registry: "*".to_string(),
            operation: "client setup".to_string(),
            message,
        };
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain_http_hosts.clone()),
            use_monolithic_push: true,
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let oci = oci_client::Client::try_from(config).map_err(|e| setup_error(e.to_string()))?;
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| setup_error(error_chain(&e)))?;
        Ok(Registry {
            inner: Arc::new(Inner {
                oci,
                http,
                plain_http_hosts,
                tokens: Mutex::new(HashMap::new()),
                unchallenged: Mutex::new(HashMap::new()),
                probes: Mutex::new(ProbeState::default()),
            }),
        })
    }

    /// What `r` (tag or digest) points at now, using a `HEAD` request (falls back to `GET`
    /// when the registry omits `Docker-Content-Digest` or a usable `Content-Type`).
    /// `Ok(None)` when the manifest or repository does not exist.
    pub async fn resolve(&self, r: &ImageRef) -> Result<Option<Resolved>> {
        let (registry, repository, reference) = (&r.registry, &r.repository, r.reference());
        validate_target(registry, repository)?;
        validate_manifest_reference(reference)?;
        let operation = format!("resolve {r}");
        let url = self.manifest_url(registry, repository, reference);
        let accept = MANIFEST_MEDIA_TYPES.join(", ");
        let response = self
            .send(registry, repository, false, &operation, |http| {
                http.head(&url).header(ACCEPT, &accept)
            })
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(response_error(registry, &operation, response).await);
        }
        let header_digest = header_digest(response.headers());
        let media_type = content_type(response.headers()).filter(|t| t.starts_with("application/vnd."));
        if let (Some(digest), Some(media_type)) = (header_digest, media_type) {
            if let Some(expected) = r.digest.as_ref().filter(|expected| **expected != digest) {
                return Err(OciError::DigestMismatch {
                    what: format!("manifest {r}"),
                    expected: expected.clone(),
                    actual: digest,
                });
            }
            return Ok(Some(Resolved { digest, media_type }));
        }
        debug!(reference = %r, "head answer lacks digest or media type, falling back to get");
        match self.get_manifest(registry, repository, reference).await {
            Ok(manifest) => Ok(Some(Resolved {
                digest: manifest.digest,
                media_type: manifest.media_type,
            })),
            Err(OciError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Fetches a manifest or index by tag or digest. When `reference` is a digest the bytes
    /// are verified against it; a `Docker-Content-Digest` answer is always checked.
    pub async fn get_manifest(&self, registry: &str, repository: &str, reference: &str) -> Result<RawManifest> {
        validate_target(registry, repository)?;
        validate_manifest_reference(reference)?;
        let shown = display_ref(registry, repository, reference);
        let operation = format!("get manifest {shown}");
        let url = self.manifest_url(registry, repository, reference);
        let accept = MANIFEST_MEDIA_TYPES.join(", ");
        let response = self
            .send(registry, repository, false, &operation, |http| {
                http.get(&url).header(ACCEPT, &accept)
            })
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(OciError::NotFound {
                kind: "manifest",
                reference: shown,
            });
        }
        if !status.is_success() {
            return Err(response_error(registry, &operation, response).await);
        }
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(registry, &operation, &e))?;
        let digest = sha256_digest(&bytes);
        let announced = reference
            .contains(':')
            .then(|| reference.to_string())
            .or_else(|| header_digest(&headers));
        if let Some(expected) = announced.filter(|expected| *expected != digest) {
            return Err(OciError::DigestMismatch {
                what: format!("manifest {shown}"),
                expected,
                actual: digest,
            });
        }
        let media_type = manifest_media_type(&bytes, content_type(&headers)).map_err(|message| OciError::Protocol {
            registry: registry.to_string(),
            operation: operation.clone(),
            message,
        })?;
        Ok(RawManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Uploads a manifest under a tag or its digest; returns its digest. Pushing under a
    /// digest that does not match the bytes is refused before any request is made.
    pub async fn put_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        validate_target(registry, repository)?;
        validate_manifest_reference(reference)?;
        let shown = display_ref(registry, repository, reference);
        let digest = sha256_digest(bytes);
        if reference.contains(':') && reference != digest {
            return Err(OciError::DigestMismatch {
                what: format!("manifest pushed as {shown}"),
                expected: reference.to_string(),
                actual: digest,
            });
        }
        let operation = format!("put manifest {shown}");
        let url = self.manifest_url(registry, repository, reference);
        let body = Bytes::copy_from_slice(bytes);
        let response = self
            .send(registry, repository, true, &operation, |http| {
                http.put(&url).header(CONTENT_TYPE, media_type).body(body.clone())
            })
            .await?;
        if !response.status().is_success() {
            return Err(response_error(registry, &operation, response).await);
        }
        let announced = header_digest(response.headers());
        if let Some(announced) = announced.filter(|announced| *announced != digest) {
            return Err(OciError::DigestMismatch {
                what: format!("manifest {shown} as stored by the registry"),
                expected: digest,
                actual: announced,
            });
        }
        debug!(manifest = %shown, %digest, "pushed manifest");
        Ok(digest)
    }

    /// Downloads a blob and verifies its sha256.
    pub async fn get_blob(&self, registry: &str, repository: &str, digest: &str) -> Result<Bytes> {
        validate_target(registry, repository)?;
        validate_digest(digest)?;
        let shown = display_ref(registry, repository, digest);
        let operation = format!("get blob {shown}");
        let url = self.blob_url(registry, repository, digest);
        // Registries may redirect blob reads (to object storage); reqwest follows, and drops
        // the Authorization header when the redirect leaves the registry's host.
        let response = self
            .send(registry, repository, false, &operation, |http| http.get(&url))
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(OciError::NotFound {
                kind: "blob",
                reference: shown,
            });
        }
        if !status.is_success() {
            return Err(response_error(registry, &operation, response).await);
        }
        let out = response
            .bytes()
            .await
            .map_err(|e| transport_error(registry, &operation, &e))?;
        let actual = sha256_digest(&out);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                what: format!("blob {shown}"),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(out)
    }

    /// True when the repository has the blob.
    pub async fn blob_exists(&self, registry: &str, repository: &str, digest: &str) -> Result<bool> {
        validate_target(registry, repository)?;
        validate_digest(digest)?;
        let operation = format!("check blob {}", display_ref(registry, repository, digest));
        let url = self.blob_url(registry, repository, digest);
        let response = self
            .send(registry, repository, false, &operation, |http| http.head(&url))
            .await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(response_error(registry, &operation, response).await),
        }
    }

    /// Uploads a blob (monolithic upload) unless the repository already has it; returns
    /// its digest. Empty blobs are refused.
    pub async fn push_blob(&self, registry: &str, repository: &str, bytes: Bytes) -> Result<String> {
        validate_target(registry, repository)?;
        let digest = sha256_digest(&bytes);
        if bytes.is_empty() {
            return Err(OciError::invalid_reference(
                &display_ref(registry, repository, &digest),
                "cannot push an empty blob",
            ));
        }
        if self.blob_exists(registry, repository, &digest).await? {
            debug!(registry, repository, %digest, "blob already present");
            return Ok(digest);
        }
        self.upload(registry, repository, bytes, &digest).await?;
        Ok(digest)
    }

    /// Uploads a blob without first asking whether the repository has it: one round trip
    /// fewer, for content that was just made (a signature, an attestation) and so cannot be
    /// there yet. Uploading a blob the registry holds is harmless. Returns its digest.
    pub async fn push_new_blob(&self, registry: &str, repository: &str, bytes: Bytes) -> Result<String> {
        validate_target(registry, repository)?;
        let digest = sha256_digest(&bytes);
        if bytes.is_empty() {
            return Err(OciError::invalid_reference(
                &display_ref(registry, repository, &digest),
                "cannot push an empty blob",
            ));
        }
        self.upload(registry, repository, bytes, &digest).await?;
        Ok(digest)
    }

    /// `POST /v2/<repository>/blobs/uploads/` then `PUT <location>&digest=<digest>` with
    /// the whole blob (the distribution spec's monolithic upload).
    async fn upload(&self, registry: &str, repository: &str, bytes: Bytes, digest: &str) -> Result<()> {
        let operation = format!("push blob {}", display_ref(registry, repository, digest));
        let base = self.base_url(registry);
        let start_url = format!("{base}/v2/{repository}/blobs/uploads/");
        let response = self
            .send(registry, repository, true, &operation, |http| {
                http.post(&start_url).header(reqwest::header::CONTENT_LENGTH, 0)
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(response_error(registry, &operation, response).await);
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| OciError::Protocol {
                registry: registry.to_string(),
                operation: operation.clone(),
                message: "upload started without a Location header".to_string(),
            })?;
        let (url, same_host) = upload_url(&base, location);
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}digest={digest}");
        let put = |http: &reqwest::Client| {
            http.put(&url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(bytes.clone())
        };
        let response = if same_host {
            self.send(registry, repository, true, &operation, put).await?
        } else {
            // Credentials never leave the registry's host (CVE-2020-15157).
            put(&self.inner.http)
                .send()
                .await
                .map_err(|e| transport_error(registry, &operation, &e))?
        };
        if response.status() != StatusCode::CREATED {
            return Err(response_error(registry, &operation, response).await);
        }
        debug!(registry, repository, %digest, "pushed blob");
        Ok(())
    }

    /// Makes `digest` available in the destination repository. Nothing happens when it is
    /// already there. Within one registry a cross-repository mount is tried first; when
    /// the registry refuses it (202) the blob is pulled and pushed. Across registries the
    /// blob is always pulled and pushed (held in memory).
    pub async fn copy_blob(
        &self,
        from_registry: &str,
        from_repository: &str,
        to_registry: &str,
        to_repository: &str,
        digest: &str,
    ) -> Result<()> {
        validate_target(from_registry, from_repository)?;
        validate_target(to_registry, to_repository)?;
        validate_digest(digest)?;
        if self.blob_exists(to_registry, to_repository, digest).await? {
            return Ok(());
        }
        if from_registry == to_registry
            && self
                .mount_blob(to_registry, from_repository, to_repository, digest)
                .await?
        {
            return Ok(());
        }
        let bytes = self.get_blob(from_registry, from_repository, digest).await?;
        self.push_blob(to_registry, to_repository, bytes).await?;
        Ok(())
    }

    /// Lists the tags of a repository, sorted. [`OciError::NotFound`] when the repository
    /// does not exist.
    pub async fn list_tags(&self, registry: &str, repository: &str) -> Result<Vec<String>> {
        validate_target(registry, repository)?;
        let shown = format!("{registry}/{repository}");
        let operation = format!("list tags of {shown}");
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let base = self.base_url(registry);
        let mut url = format!("{base}/v2/{repository}/tags/list");
        let mut tags = Vec::new();
        // Registries that page the list say where the next page is in a `Link` header;
        // only pages on the registry's own host are followed.
        for _ in 0..MAX_TAG_PAGES {
            let response = self
                .send(registry, repository, false, &operation, |http| http.get(&url))
                .await?;
            let status = response.status();
            if status == StatusCode::NOT_FOUND {
                return Err(OciError::NotFound {
                    kind: "repository",
                    reference: shown,
                });
            }
            if !status.is_success() {
                return Err(response_error(registry, &operation, response).await);
            }
            let next = next_link(response.headers()).and_then(|link| match upload_url(&base, &link) {
                (url, true) => Some(url),
                (_, false) => None,
            });
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_error(registry, &operation, &e))?;
            let page: TagList = serde_json::from_slice(&body).map_err(|e| OciError::Protocol {
                registry: registry.to_string(),
                operation: operation.clone(),
                message: format!("tag list is not json: {e}"),
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// The OCI 1.1 referrers of `digest` in `registry/repository`
    /// (`GET /v2/<repository>/referrers/<digest>`): an index of the manifests whose
    /// `subject` is `digest` (empty when there are none).
    ///
    /// `Ok(None)` when the registry does not implement the referrers API: it answers `404`
    /// (distribution 2.8 does, for a route it does not know). A registry that implements it
    /// answers `200` even when nothing refers to `digest`.
    pub async fn referrers(&self, registry: &str, repository: &str, digest: &str) -> Result<Option<ImageIndex>> {
        validate_target(registry, repository)?;
        validate_digest(digest)?;
        let operation = format!("list referrers of {}", display_ref(registry, repository, digest));
        let url = format!("{}/v2/{repository}/referrers/{digest}", self.base_url(registry));
        let response = self
            .send(registry, repository, false, &operation, |http| {
                http.get(&url).header(ACCEPT, OCI_INDEX)
            })
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(response_error(registry, &operation, response).await);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(registry, &operation, &e))?;
        Ok(Some(from_json_bytes(&bytes, "referrers index")?))
    }

    /// One probe request: the successful answer, or the [`Probe`] its status already
    /// decides (`429`: rate limited, `404`: not found).
    async fn probe_step(
        &self,
        registry: &str,
        repository: &str,
        operation: &str,
        method: reqwest::Method,
        url: &str,
    ) -> Result<std::result::Result<reqwest::Response, Probe>> {
        let response = match self.probe_request(registry, repository, operation, method, url).await? {
            ProbeAnswer::Response(response) => response,
            ProbeAnswer::RateLimited(retry_after) => return Ok(Err(Probe::RateLimited { retry_after })),
        };
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(Err(Probe::NotFound));
        }
        if !status.is_success() {
            return Err(response_error(registry, operation, response).await);
        }
        Ok(Ok(response))
    }

    /// Polls what the tag (or digest) `r` points at with one `HEAD` on its manifest (the
    /// [`MANIFEST_MEDIA_TYPES`] `Accept` list, digest from `Docker-Content-Digest`),
    /// authenticating anonymously when the registry challenges (see the module docs). Falls
    /// back to a `GET` only when the registry's `HEAD` answer lacks the digest or a
    /// manifest media type. Never lists tags.
    ///
    /// A `429` from the registry or its token service is `Ok(Probe::RateLimited)`, not an
    /// error; other failures are errors as for [`Registry::resolve`]. Every request made is
    /// added to [`Registry::probe_requests`] for `r.registry`.
    pub async fn probe(&self, r: &ImageRef) -> Result<Probe> {
        let (registry, repository, reference) = (&r.registry, &r.repository, r.reference());
        validate_target(registry, repository)?;
        validate_manifest_reference(reference)?;
        let operation = format!("probe {r}");
        let url = self.manifest_url(registry, repository, reference);
        let response = match self
            .probe_step(registry, repository, &operation, reqwest::Method::HEAD, &url)
            .await?
        {
            Ok(response) => response,
            Err(decided) => return Ok(decided),
        };
        let announced = header_digest(response.headers());
        let media_type = content_type(response.headers()).filter(|t| t.starts_with("application/vnd."));
        let (digest, media_type) = match (announced, media_type) {
            (Some(digest), Some(media_type)) => (digest, media_type),
            _ => {
                debug!(reference = %r, "head answer lacks digest or media type, probing with get");
                let response = match self
                    .probe_step(registry, repository, &operation, reqwest::Method::GET, &url)
                    .await?
                {
                    Ok(response) => response,
                    Err(decided) => return Ok(decided),
                };
                let headers = response.headers().clone();
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| transport_error(registry, &operation, &e))?;
                let digest = sha256_digest(&bytes);
                if let Some(announced) = header_digest(&headers).filter(|announced| *announced != digest) {
                    return Err(OciError::DigestMismatch {
                        what: format!("manifest {r}"),
                        expected: announced,
                        actual: digest,
                    });
                }
                let media_type =
                    manifest_media_type(&bytes, content_type(&headers)).map_err(|message| OciError::Protocol {
                        registry: registry.to_string(),
                        operation: operation.clone(),
                        message,
                    })?;
                (digest, media_type)
            }
        };
        if let Some(expected) = r.digest.as_ref().filter(|expected| **expected != digest) {
            return Err(OciError::DigestMismatch {
                what: format!("manifest {r}"),
                expected: expected.clone(),
                actual: digest,
            });
        }
        Ok(Probe::Found { digest, media_type })
    }

    /// How many HTTP requests [`Registry::probe`] has made for `registry` (as image
    /// references write it) since this client was created, token requests included. Clones
    /// share the count.
    pub fn probe_requests(&self, registry: &str) -> u64 {
        self.probe_state().requests.get(registry).copied().unwrap_or(0)
    }

    // === internals ===

    fn probe_state(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        // Every update leaves the state complete; keep using it after a panic elsewhere.
        self.inner
            .probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count_probe_request(&self, registry: &str) {
        *self.probe_state().requests.entry(registry.to_string()).or_default() += 1;
    }

    /// One probe request with the repository's pull token: a fresh cached one, else a new
    /// one when the registry is known to challenge, else none; a `401` bearer challenge
    /// fetches a token and sends the request once more. `429`s become
    /// [`ProbeAnswer::RateLimited`]; every other answer is returned as it is.
    async fn probe_request(
        &self,
        registry: &str,
        repository: &str,
        operation: &str,
        method: reqwest::Method,
        url: &str,
    ) -> Result<ProbeAnswer> {
        let key = (registry.to_string(), repository.to_string());
        let (mut authorization, known_challenge) = {
            let state = self.probe_state();
            let token = state
                .tokens
                .get(&key)
                .filter(|token| token.usable_until > Instant::now())
                .map(|token| token.authorization.clone());
            (token, state.challenges.get(registry).cloned())
        };
        if authorization.is_none()
            && let Some(challenge) = known_challenge
        {
            match self.probe_token(registry, repository, operation, &challenge).await? {
                TokenAnswer::Authorization(value) => authorization = Some(value),
                TokenAnswer::RateLimited(retry_after) => return Ok(ProbeAnswer::RateLimited(retry_after)),
            }
        }
        let accept = MANIFEST_MEDIA_TYPES.join(", ");
        let mut challenged = false;
        loop {
            let mut request = self.inner.http.request(method.clone(), url).header(ACCEPT, &accept);
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value);
            }
            self.count_probe_request(registry);
            let response = request
                .send()
                .await
                .map_err(|e| transport_error(registry, operation, &e))?;
            match response.status() {
                StatusCode::TOO_MANY_REQUESTS => {
                    return Ok(ProbeAnswer::RateLimited(retry_after(response.headers())));
                }
                StatusCode::UNAUTHORIZED if !challenged => {
                    challenged = true;
                    let Some(challenge) = bearer_challenge(response.headers()) else {
                        // Basic or no challenge: nothing an anonymous client can answer.
                        return Ok(ProbeAnswer::Response(response));
                    };
                    {
                        let mut state = self.probe_state();
                        state.tokens.remove(&key);
                        state.challenges.insert(registry.to_string(), challenge.clone());
                    }
                    match self.probe_token(registry, repository, operation, &challenge).await? {
                        TokenAnswer::Authorization(value) => authorization = Some(value),
                        TokenAnswer::RateLimited(retry_after) => return Ok(ProbeAnswer::RateLimited(retry_after)),
                    }
                }
                _ => return Ok(ProbeAnswer::Response(response)),
            }
        }
    }

    /// Fetches an anonymous pull token for `registry/repository` from the challenge's realm
    /// and caches it for its lifetime (less a margin).
    async fn probe_token(
        &self,
        registry: &str,
        repository: &str,
        operation: &str,
        challenge: &BearerChallenge,
    ) -> Result<TokenAnswer> {
        #[derive(Deserialize)]
        struct TokenBody {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let operation = format!("token for {operation}");
        let protocol_error = |message: String| OciError::Protocol {
            registry: registry.to_string(),
            operation: operation.clone(),
            message,
        };
        let mut url = reqwest::Url::parse(&challenge.realm)
            .map_err(|e| protocol_error(format!("token realm {:?} is not a url: {e}", challenge.realm)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(protocol_error(format!(
                "token realm {:?} is not http(s)",
                challenge.realm
            )));
        }
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("scope", &format!("repository:{repository}:pull"));
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
        }
        self.count_probe_request(registry);
        let response = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| transport_error(registry, &operation, &e))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Ok(TokenAnswer::RateLimited(retry_after(response.headers())));
        }
        if !status.is_success() {
            return Err(response_error(registry, &operation, response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(registry, &operation, &e))?;
        let parsed: TokenBody = serde_json::from_slice(&body)
            .map_err(|e| protocol_error(format!("token answer is not a token json object: {e}")))?;
        let token = parsed
            .token
            .filter(|token| !token.is_empty())
            .or(parsed.access_token.filter(|token| !token.is_empty()))
            .ok_or_else(|| protocol_error("token answer has no token".to_string()))?;
        let authorization = format!("Bearer {token}");
        let lifetime = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        self.probe_state().tokens.insert(
            (registry.to_string(), repository.to_string()),
            ProbeToken {
                authorization: authorization.clone(),
                usable_until: Instant::now() + token_usable_for(lifetime),
            },
        );
        Ok(TokenAnswer::Authorization(authorization))
    }

    /// Tries `POST /v2/<to>/blobs/uploads/?mount=<digest>&from=<from>`: `Ok(true)` when
    /// mounted, `Ok(false)` when the registry opened an upload instead (which is cancelled).
    async fn mount_blob(
        &self,
        registry: &str,
        from_repository: &str,
        to_repository: &str,
        digest: &str,
    ) -> Result<bool> {
        let operation = format!(
            "mount blob {digest} from {from_repository} into {}",
            display_ref(registry, to_repository, digest)
        );
        let url = format!(
            "{}/v2/{to_repository}/blobs/uploads/?mount={digest}&from={from_repository}",
            self.base_url(registry)
        );
        let response = self
            .send(registry, to_repository, true, &operation, |http| {
                http.post(&url).header(reqwest::header::CONTENT_LENGTH, 0)
            })
            .await?;
        match response.status() {
            StatusCode::CREATED => {
                debug!(registry, from_repository, to_repository, digest, "mounted blob");
                Ok(true)
            }
            StatusCode::ACCEPTED => {
                debug!(
                    registry,
                    from_repository, to_repository, digest, "mount refused, copying"
                );
                if let Some(location) = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                    self.cancel_upload(registry, to_repository, location).await;
                }
                Ok(false)
            }
            _ => Err(response_error(registry, &operation, response).await),
        }
    }

    /// Best-effort `DELETE` of an upload session the registry opened for a refused mount.
    /// Only same-host locations are cancelled, so credentials never leave the registry.
    async fn cancel_upload(&self, registry: &str, repository: &str, location: &str) {
        let base = self.base_url(registry);
        let url = if location.starts_with('/') {
            format!("{base}{location}")
        } else if location.starts_with(&format!("{base}/")) {
            location.to_string()
        } else {
            debug!(registry, location, "not cancelling an upload on another host");
            return;
        };
        let result = self
            .send(registry, repository, true, "cancel upload", |http| http.delete(&url))
            .await;
        if let Err(error) = result {
            debug!(registry, %error, "failed to cancel upload session");
        }
    }

    /// `scheme://host` of a registry (`docker.io` is served by `index.docker.io`).
    fn base_url(&self, registry: &str) -> String {
        let host = if registry == "docker.io" {
            "index.docker.io"
        } else {
            registry
        };
        let plain = self.inner.plain_http_hosts.iter().any(|h| h == registry || h == host);
        let scheme = if plain { "http" } else { "https" };
        format!("{scheme}://{host}")
    }

    fn blob_url(&self, registry: &str, repository: &str, digest: &str) -> String {
        format!("{}/v2/{repository}/blobs/{digest}", self.base_url(registry))
    }

    fn manifest_url(&self, registry: &str, repository: &str, reference: &str) -> String {
        format!("{}/v2/{repository}/manifests/{reference}", self.base_url(registry))
    }

    /// The `Authorization` value for a repository, from cache or a fresh (anonymous)
    /// bearer negotiation; `None` when the registry does not challenge.
    async fn authorization(
        &self,
        registry: &str,
        repository: &str,
        push: bool,
        operation: &str,
    ) -> Result<Option<String>> {
        if self
            .unchallenged()
            .get(registry)
            .is_some_and(|since| since.elapsed() < TOKEN_TTL)
        {
            return Ok(None);
        }
        let key = TokenKey {
            registry: registry.to_string(),
            repository: repository.to_string(),
            push,
        };
        let cached = self
            .tokens()
            .get(&key)
            .filter(|cached| cached.fetched.elapsed() < TOKEN_TTL)
            .map(|cached| cached.authorization.clone());
        if let Some(authorization) = cached {
            return Ok(authorization);
        }
        let reference = Reference::with_tag(registry.to_string(), repository.to_string(), "latest".to_string());
        let op = if push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        let token = self
            .inner
            .oci
            .auth(&reference, &RegistryAuth::Anonymous, op)
            .await
            .map_err(|e| client_error(registry, operation, None, e))?;
        let Some(token) = token else {
            // No bearer challenge: anonymous requests go without a header to every repository.
            self.unchallenged().insert(registry.to_string(), Instant::now());
            return Ok(None);
        };
        let authorization = Some(format!("Bearer {token}"));
        self.tokens().insert(
            key,
            CachedToken {
                authorization: authorization.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(authorization)
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, CachedToken>> {
        // A poisoned cache only ever holds complete entries; keep using it.
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn unchallenged(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.inner
            .unchallenged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends a request with the repository's authorization; on 401 re-negotiates once.
    async fn send(
        &self,
        registry: &str,
        repository: &str,
        push: bool,
        operation: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut retried = false;
        loop {
            let authorization = self.authorization(registry, repository, push, operation).await?;
            let mut request = build(&self.inner.http);
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value);
            }
            let response = request
                .send()
                .await
                .map_err(|e| transport_error(registry, operation, &e))?;
            if response.status() == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                self.unchallenged().remove(registry);
                self.tokens().remove(&TokenKey {
                    registry: registry.to_string(),
                    repository: repository.to_string(),
                    push,
                });
                continue;
            }
            return Ok(response);
        }
    }
}

/// How many pages of a paged tag list are read at most.
const MAX_TAG_PAGES: usize = 1000;

/// The target of a `Link: <url>; rel="next"` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find(|link| link.contains("rel=\"next\"") || link.contains("rel=next"))
        .and_then(|link| {
            let start = link.find('<')? + 1;
            let end = link[start..].find('>')? + start;
            Some(link[start..end].to_string())
        })
}

/// The absolute URL of an upload `location` (relative to the registry's `base` or
/// absolute) and whether it is on the registry's own host.
fn upload_url(base: &str, location: &str) -> (String, bool) {
    if location.starts_with('/') {
        (format!("{base}{location}"), true)
    } else {
        let same_host = location.starts_with(&format!("{base}/"));
        (location.to_string(), same_host)
    }
}

/// How long a token that lives `lifetime` is used: until a margin (a fifth of its life, at
/// most [`TOKEN_EXPIRY_MARGIN`]) before it expires.
fn token_usable_for(lifetime: Duration) -> Duration {
    lifetime.saturating_sub((lifetime / 5).min(TOKEN_EXPIRY_MARGIN))
}

/// Parses a `Retry-After` value: delay-seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015
/// 07:28:00 GMT`, the delay being from `now`; a date in the past is no delay). `None` when
/// it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()))
}

/// The first `Bearer` challenge among the `WWW-Authenticate` headers.
fn bearer_challenge(headers: &HeaderMap) -> Option<BearerChallenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(parse_bearer_challenge)
}

/// `Bearer realm="…",service="…",scope="…"` → realm and service.
fn parse_bearer_challenge(value: &str) -> Option<BearerChallenge> {
    let value = value.trim_start();
    let (scheme, params) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_auth_params(params);
    let realm = params.get("realm").filter(|realm| !realm.is_empty())?.clone();
    Some(BearerChallenge {
        realm,
        service: params.get("service").filter(|service| !service.is_empty()).cloned(),
    })
}

/// `key=value` pairs separated by commas; values may be quoted strings (with `\` escapes
/// and commas inside). Keys are lowercased.
fn parse_auth_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace() || *c == ',').is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',') {
            key.push(c);
        }
        if key.trim().is_empty() && chars.peek().is_none() {
            return params;
        }
        if chars.next_if_eq(&'=').is_none() {
            // A bare token (no value): skip it.
            continue;
        }
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    other => value.push(other),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
            value = value.trim().to_string();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
}

fn validate_target(registry: &str, repository: &str) -> Result<()> {
    validate_registry(registry)?;
    validate_repository(repository)
}

/// `registry/repository:tag` or `registry/repository@sha256:…`.
fn display_ref(registry: &str, repository: &str, reference: &str) -> String {
    let separator = if reference.contains(':') { '@' } else { ':' };
    format!("{registry}/{repository}{separator}{reference}")
}

fn header_digest(headers: &HeaderMap) -> Option<String> {
    headers
        .get(DOCKER_CONTENT_DIGEST)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|digest| validate_digest(digest).is_ok())
        .map(str::to_string)
}

/// The `Content-Type` without parameters.
fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or(value).trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Media type of a manifest body: its `mediaType`, else a `application/vnd.*`
/// Content-Type, else OCI index or manifest by shape.
fn manifest_media_type(bytes: &[u8], content_type: Option<String>) -> std::result::Result<String, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    let shape: Shape = serde_json::from_slice(bytes).map_err(|e| format!("manifest is not a json object: {e}"))?;
    if let Some(media_type) = shape.media_type.filter(|t| !t.is_empty()) {
        return Ok(media_type);
    }
    if let Some(content_type) = content_type.filter(|t| t.starts_with("application/vnd.")) {
        return Ok(content_type);
    }
    Ok(if shape.manifests.is_some() {
        OCI_INDEX.to_string()
    } else {
        OCI_MANIFEST.to_string()
    })
}

/// Text of an error and all its sources, `outer: inner: innermost`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn transport_error(registry: &str, operation: &str, error: &reqwest::Error) -> OciError {
    if error.is_builder() {
        return OciError::Protocol {
            registry: registry.to_string(),
            operation: operation.to_string(),
            message: error_chain(error),
        };
    }
    OciError::Unavailable {
        registry: registry.to_string(),
        operation: operation.to_string(),
        message: error_chain(error),
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Turns a non-success response into [`OciError::Registry`], parsing the distribution
/// error envelope when there is one.
async fn response_error(registry: &str, operation: &str, response: reqwest::Response) -> OciError {
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(parsed) if !parsed.errors.is_empty() => {
            let code = Some(parsed.errors[0].code.clone()).filter(|c| !c.is_empty());
            let message = parsed
                .errors
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            (code, message)
        }
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]);
            (None, text.trim().to_string())
        }
    };
    OciError::Registry {
        registry: registry.to_string(),
        operation: operation.to_string(),
        status: Some(status),
        code,
        message,
    }
}

fn envelope_code_and_message(envelope: &OciEnvelope) -> (Option<String>, String) {
    let code = envelope.errors.first().and_then(|e| {
        serde_json::to_value(&e.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    });
    let message = envelope
        .errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    (code, message)
}

/// Maps an oci-client error; `not_found` names what a 404 / `*_UNKNOWN` means.
fn client_error(
    registry: &str,
    operation: &str,
    not_found: Option<(&'static str, &str)>,
    error: OciDistributionError,
) -> OciError {
    let not_found_error = not_found.map(|(kind, reference)| OciError::NotFound {
        kind,
        reference: reference.to_string(),
    });
    let registry_error = |status: Option<u16>, code: Option<String>, message: String| OciError::Registry {
        registry: registry.to_string(),
        operation: operation.to_string(),
        status,
        code,
        message,
    };
    match error {
        OciDistributionError::RegistryError { envelope, .. } => {
            let (code, message) = envelope_code_and_message(&envelope);
            let unknown = matches!(
                code.as_deref(),
                Some("BLOB_UNKNOWN" | "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "NOT_FOUND")
            );
            match not_found_error {
                Some(not_found) if unknown => not_found,
                _ => {
                    // Envelopes come without the status; recover it for the codes that matter.
                    let status = match code.as_deref() {
                        Some("UNAUTHORIZED") => Some(401),
                        Some("DENIED") => Some(403),
                        Some("TOOMANYREQUESTS") => Some(429),
                        _ => None,
                    };
                    registry_error(status, code, message)
                }
            }
        }
        OciDistributionError::ServerError { code, message, .. } => match not_found_error {
            Some(not_found) if code == 404 => not_found,
            _ => {
                let (error_code, text) = match serde_json::from_str::<OciEnvelope>(&message) {
                    Ok(envelope) => envelope_code_and_message(&envelope),
                    Err(_) => (None, message.chars().take(MAX_ERROR_BODY).collect()),
                };
                registry_error(Some(code), error_code, text)
            }
        },
        OciDistributionError::UnauthorizedError { .. } => registry_error(
            Some(401),
            Some("UNAUTHORIZED".to_string()),
            "authentication required".to_string(),
        ),
        OciDistributionError::AuthenticationFailure(reason) => {
            registry_error(None, None, format!("token request failed: {reason}"))
        }
        OciDistributionError::RequestError(error) => match error.status() {
            Some(status) => match not_found_error {
                Some(not_found) if status == StatusCode::NOT_FOUND => not_found,
                _ => registry_error(Some(status.as_u16()), None, error_chain(&error)),
            },
            None => transport_error(registry, operation, &error),
        },
        OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) => {
            OciError::DigestMismatch {
                what: operation.to_string(),
                expected,
                actual,
            }
        }
        OciDistributionError::IoError(error) => OciError::Unavailable {
            registry: registry.to_string(),
            operation: operation.to_string(),
            message: error_chain(&error),
        },
        other => OciError::Protocol {
            registry: registry.to_string(),
            operation: operation.to_string(),
            message: error_chain(&other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_detection() {
        let with_type = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(
            manifest_media_type(with_type, Some(OCI_MANIFEST.into())).unwrap(),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        let bare_index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(manifest_media_type(bare_index, None).unwrap(), OCI_INDEX);
        assert_eq!(
            manifest_media_type(bare_index, Some("application/json".into())).unwrap(),
            OCI_INDEX
        );
        let bare_manifest = br#"{"schemaVersion":2,"config":{}}"#;
        assert_eq!(manifest_media_type(bare_manifest, None).unwrap(), OCI_MANIFEST);
        assert!(manifest_media_type(b"nope", None).is_err());
    }

    #[test]
    fn urls_and_schemes() {
        let registry = Registry::new(vec!["127.0.0.1:5000".to_string()]);
        assert_eq!(registry.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(registry.base_url("ghcr.io"), "https://ghcr.io");
        assert_eq!(registry.base_url("docker.io"), "https://index.docker.io");
        assert_eq!(
            registry.manifest_url("127.0.0.1:5000", "apps/app", "v1"),
            "http://127.0.0.1:5000/v2/apps/app/manifests/v1"
        );
    }

    #[test]
    fn client_errors_are_classified() {
        let envelope: OciEnvelope =
            serde_json::from_str(r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#)
                .unwrap();
        let error = client_error(
            "r",
            "get blob",
            Some(("blob", "r/x@sha256:1")),
            OciDistributionError::RegistryError {
                envelope,
                url: "u".into(),
            },
        );
        assert!(error.is_not_found(), "{error}");

        let error = client_error(
            "r",
            "push blob",
            None,
            OciDistributionError::ServerError {
                code: 503,
                url: "u".into(),
                message: "busy".into(),
            },
        );
        assert!(error.is_transient(), "{error}");

        let envelope: OciEnvelope =
            serde_json::from_str(r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#).unwrap();
        let error = client_error(
            "r",
            "get blob",
            Some(("blob", "x")),
            OciDistributionError::RegistryError {
                envelope,
                url: "u".into(),
            },
        );
        assert!(error.is_transient(), "{error}");
        assert!(!error.is_not_found());
    }

    #[tokio::test]
    async fn invalid_inputs_fail_before_any_request() {
        let registry = Registry::new(Vec::new());
        let error = registry
            .get_manifest("example.com", "Bad/Repo", "v1")
            .await
            .unwrap_err();
        assert!(matches!(error, OciError::InvalidReference { .. }), "{error}");
        let error = registry
            .get_blob("example.com", "repo", "sha256:short")
            .await
            .unwrap_err();
        assert!(matches!(error, OciError::InvalidReference { .. }), "{error}");
        let error = registry
            .put_manifest("example.com", "repo", &sha256_digest(b"other"), b"{}", OCI_MANIFEST)
            .await
            .unwrap_err();
        assert!(matches!(error, OciError::DigestMismatch { .. }), "{error}");
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        // Port 1 on loopback is essentially never listening.
        let registry = Registry::new(vec!["127.0.0.1:1".to_string()]);
        let image = ImageRef::parse("127.0.0.1:1/repo:tag").unwrap();
        let error = registry.resolve(&image).await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        let error = registry
            .blob_exists("127.0.0.1:1", "repo", &sha256_digest(b"x"))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
    }

    // === probe ===

    /// One request a fake registry saw.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        /// Path and query.
        target: String,
        authorization: Option<String>,
        accept: Option<String>,
    }

    type Answer = Box<dyn Fn(&Seen) -> String + Send + Sync>;

    /// A tiny HTTP/1.1 server on loopback: each request is recorded and answered with the
    /// raw response `answer` returns (one request per connection).
    async fn fake_registry(answer: Answer) -> (String, Arc<Mutex<Vec<Seen>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let answer = answer.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buffer).to_string();
                    let mut lines = head.split("\r\n");
                    let mut first = lines.next().unwrap_or_default().split(' ');
                    let method = first.next().unwrap_or_default().to_string();
                    let target = first.next().unwrap_or_default().to_string();
                    let header = |name: &str| {
                        head.split("\r\n").skip(1).find_map(|line| {
                            let (key, value) = line.split_once(':')?;
                            key.eq_ignore_ascii_case(name).then(|| value.trim().to_string())
                        })
                    };
                    let request = Seen {
                        method,
                        target,
                        authorization: header("authorization"),
                        accept: header("accept"),
                    };
                    let response = answer(&request);
                    log.lock().unwrap().push(request);
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        (host, seen)
    }

    fn http(status: &str, headers: &[(&str, String)], body: &str) -> String {
        let mut text = format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(body);
        text
    }

    const MANIFEST: &str =
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;

    fn manifest_found() -> String {
        http(
            "200 OK",
            &[
                ("Docker-Content-Digest", sha256_digest(MANIFEST.as_bytes())),
                ("Content-Type", OCI_MANIFEST.to_string()),
            ],
            "",
        )
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past is no delay"
        );
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("99999999999999999999999", now), None);
    }

    #[test]
    fn bearer_challenges_are_parsed() {
        let challenge = parse_bearer_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            challenge,
            BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            }
        );
        let challenge = parse_bearer_challenge(r#"bearer  Realm=http://h/t , error="invalid_token""#).unwrap();
        assert_eq!(challenge.realm, "http://h/t");
        assert_eq!(challenge.service, None);
        let escaped = parse_bearer_challenge(r#"Bearer realm="http://h/t\"x",service="a,b""#).unwrap();
        assert_eq!(escaped.realm, "http://h/t\"x");
        assert_eq!(escaped.service.as_deref(), Some("a,b"));
        assert_eq!(parse_bearer_challenge(r#"Basic realm="registry""#), None);
        assert_eq!(parse_bearer_challenge(r#"Bearer service="x""#), None, "no realm");
        assert_eq!(parse_bearer_challenge("Bearer"), None);
    }

    #[test]
    fn tokens_are_dropped_before_they_expire() {
        assert_eq!(token_usable_for(Duration::from_secs(300)), Duration::from_secs(270));
        assert_eq!(token_usable_for(Duration::from_secs(60)), Duration::from_secs(48));
        assert_eq!(token_usable_for(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn an_open_registry_is_pinged_once_not_once_per_repository() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let challenging = Arc::new(AtomicBool::new(false));
        let realm_host = Arc::new(Mutex::new(String::new()));
        let (host, seen) = fake_registry(Box::new({
            let challenging = challenging.clone();
            let realm_host = realm_host.clone();
            move |request| {
                if request.target.starts_with("/token") {
                    return http("200 OK", &[], r#"{"token":"tok","expires_in":300}"#);
                }
                if challenging.load(Ordering::SeqCst) && request.authorization.as_deref() != Some("Bearer tok") {
                    let realm = realm_host.lock().unwrap().clone();
                    return http(
                        "401 Unauthorized",
                        &[(
                            "WWW-Authenticate",
                            format!(r#"Bearer realm="http://{realm}/token",service="fake""#),
                        )],
                        "",
                    );
                }
                match request.target.as_str() {
                    "/v2/" => http("200 OK", &[], "{}"),
                    target if target.ends_with("/manifests/v1") => manifest_found(),
                    _ => http("404 Not Found", &[], ""),
                }
            }
        }))
        .await;
        *realm_host.lock().unwrap() = host.clone();
        let registry = Registry::new(vec![host.clone()]);
        for repository in ["a", "b", "c/d"] {
            let found = registry
                .resolve(&ImageRef::parse(&format!("{host}/{repository}:v1")).unwrap())
                .await
                .unwrap();
            assert!(found.is_some(), "{repository}");
        }
        let shape = |seen: &[Seen]| -> Vec<(String, String, bool)> {
            seen.iter()
                .map(|request| {
                    let path = request.target.split('?').next().unwrap_or_default().to_string();
                    (request.method.clone(), path, request.authorization.is_some())
                })
                .collect()
        };
        // Asserts what the registry saw since the last call, and forgets it.
        let assert_seen = |rows: &[(&str, &str, bool)]| {
            let expected: Vec<(String, String, bool)> = rows
                .iter()
                .map(|(method, path, auth)| (method.to_string(), path.to_string(), *auth))
                .collect();
            let mut seen = seen.lock().unwrap();
            assert_eq!(shape(&seen), expected);
            seen.clear();
        };
        assert_seen(&[
            ("GET", "/v2/", false),
            ("HEAD", "/v2/a/manifests/v1", false),
            ("HEAD", "/v2/b/manifests/v1", false),
            ("HEAD", "/v2/c/d/manifests/v1", false),
        ]);

        // The registry starts to require tokens: the 401 makes the client negotiate again.
        challenging.store(true, Ordering::SeqCst);
        let found = registry
            .resolve(&ImageRef::parse(&format!("{host}/a:v1")).unwrap())
            .await
            .unwrap();
        assert!(found.is_some());
        assert_seen(&[
            ("HEAD", "/v2/a/manifests/v1", false),
            ("GET", "/v2/", false),
            ("GET", "/token", false),
            ("HEAD", "/v2/a/manifests/v1", true),
        ]);
    }

    #[tokio::test]
    async fn probe_of_an_open_registry_costs_one_head() {
        let (host, seen) = fake_registry(Box::new(|request| match request.target.as_str() {
            "/v2/repo/manifests/v1" => manifest_found(),
            _ => http(
                "404 Not Found",
                &[],
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#,
            ),
        }))
        .await;
        let registry = Registry::new(vec![host.clone()]);
        let found = registry
            .probe(&ImageRef::parse(&format!("{host}/repo:v1")).unwrap())
            .await
            .unwrap();
        assert_eq!(
            found,
            Probe::Found {
                digest: sha256_digest(MANIFEST.as_bytes()),
                media_type: OCI_MANIFEST.into()
            }
        );
        assert_eq!(registry.probe_requests(&host), 1);
        let missing = registry
            .probe(&ImageRef::parse(&format!("{host}/repo:v2")).unwrap())
            .await
            .unwrap();
        assert_eq!(missing, Probe::NotFound);
        assert_eq!(registry.probe_requests(&host), 2);
        assert_eq!(registry.probe_requests("other:5000"), 0);
        let seen = seen.lock().unwrap().clone();
        assert!(seen.iter().all(|request| request.method == "HEAD"), "{seen:?}");
        assert!(seen.iter().all(|request| request.authorization.is_none()), "{seen:?}");
        assert_eq!(
            seen[0].accept.as_deref(),
            Some(MANIFEST_MEDIA_TYPES.join(", ").as_str())
        );
    }

    #[tokio::test]
    async fn probe_reports_rate_limits() {
        let (host, _seen) = fake_registry(Box::new(|request| match request.target.as_str() {
            "/v2/seconds/manifests/v1" => http("429 Too Many Requests", &[("Retry-After", "7".into())], ""),
            "/v2/date/manifests/v1" => {
                let when = SystemTime::now() + Duration::from_secs(3600);
                http(
                    "429 Too Many Requests",
                    &[("Retry-After", httpdate::fmt_http_date(when))],
                    "",
                )
            }
            _ => http("429 Too Many Requests", &[], ""),
        }))
        .await;
        let registry = Registry::new(vec![host.clone()]);
        let probe = |path: &str| ImageRef::parse(&format!("{host}/{path}:v1")).unwrap();
        assert_eq!(
            registry.probe(&probe("seconds")).await.unwrap(),
            Probe::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let Probe::RateLimited {
            retry_after: Some(delay),
        } = registry.probe(&probe("date")).await.unwrap()
        else {
            panic!("expected a rate limit with a delay");
        };
        assert!(
            delay > Duration::from_secs(3500) && delay <= Duration::from_secs(3600),
            "{delay:?}"
        );
        assert_eq!(
            registry.probe(&probe("bare")).await.unwrap(),
            Probe::RateLimited { retry_after: None }
        );
        assert_eq!(registry.probe_requests(&host), 3);
    }

    #[tokio::test]
    async fn probe_follows_anonymous_bearer_challenges_and_reuses_tokens() {
        let realm_host = Arc::new(Mutex::new(String::new()));
        let realm = realm_host.clone();
        let (host, seen) = fake_registry(Box::new(move |request| {
            if request.target.starts_with("/token?") {
                let scope = if request.target.contains("scope=repository%3Aone%3Apull") {
                    "one"
                } else {
                    "two"
                };
                return http(
                    "200 OK",
                    &[("Content-Type", "application/json".into())],
                    &format!(r#"{{"token":"tok-{scope}","expires_in":300}}"#),
                );
            }
            let repository = request.target.split('/').nth(2).unwrap_or_default();
            if request.authorization.as_deref() == Some(&format!("Bearer tok-{repository}")) {
                return manifest_found();
            }
            let realm = realm.lock().unwrap().clone();
            http(
                "401 Unauthorized",
                &[(
                    "WWW-Authenticate",
                    format!(
                        r#"Bearer realm="http://{realm}/token",service="fake",scope="repository:{repository}:pull""#
                    ),
                )],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
        }))
        .await;
        *realm_host.lock().unwrap() = host.clone();
        let registry = Registry::new(vec![host.clone()]);
        let one = ImageRef::parse(&format!("{host}/one:v1")).unwrap();
        let two = ImageRef::parse(&format!("{host}/two:v1")).unwrap();

        // First contact: HEAD (401), token, HEAD.
        assert!(matches!(registry.probe(&one).await.unwrap(), Probe::Found { .. }));
        assert_eq!(registry.probe_requests(&host), 3);
        // The token is reused: one HEAD.
        assert!(matches!(registry.probe(&one).await.unwrap(), Probe::Found { .. }));
        assert_eq!(registry.probe_requests(&host), 4);
        // The registry is known to challenge: another repository asks for its token first.
        assert!(matches!(registry.probe(&two).await.unwrap(), Probe::Found { .. }));
        assert_eq!(registry.probe_requests(&host), 6);

        let seen = seen.lock().unwrap().clone();
        let shape: Vec<(String, bool)> = seen
            .iter()
            .map(|request| (request.method.clone(), request.authorization.is_some()))
            .collect();
        let expected: Vec<(String, bool)> = [
            ("HEAD", false),
            ("GET", false),
            ("HEAD", true),
            ("HEAD", true),
            ("GET", false),
            ("HEAD", true),
        ]
        .into_iter()
        .map(|(method, auth)| (method.to_string(), auth))
        .collect();
        assert_eq!(shape, expected, "{seen:?}");
        assert!(seen[1].target.contains("service=fake"), "{:?}", seen[1]);
        assert!(
            !seen.iter().any(|request| request.target == "/v2/"),
            "probes never ping /v2/"
        );
    }

    #[tokio::test]
    async fn probe_reports_a_rate_limited_token_service() {
        let realm_host = Arc::new(Mutex::new(String::new()));
        let realm = realm_host.clone();
        let (host, _seen) = fake_registry(Box::new(move |request| {
            if request.target.starts_with("/token") {
                return http("429 Too Many Requests", &[("Retry-After", "30".into())], "");
            }
            let realm = realm.lock().unwrap().clone();
            http(
                "401 Unauthorized",
                &[("WWW-Authenticate", format!(r#"Bearer realm="http://{realm}/token""#))],
                "",
            )
        }))
        .await;
        *realm_host.lock().unwrap() = host.clone();
        let registry = Registry::new(vec![host.clone()]);
        let probe = registry
            .probe(&ImageRef::parse(&format!("{host}/repo:v1")).unwrap())
            .await
            .unwrap();
        assert_eq!(
            probe,
            Probe::RateLimited {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(registry.probe_requests(&host), 2);
    }

    #[tokio::test]
    async fn probe_without_a_usable_challenge_is_an_error() {
        let (host, _seen) = fake_registry(Box::new(|_| {
            http(
                "401 Unauthorized",
                &[("WWW-Authenticate", r#"Basic realm="r""#.into())],
                "",
            )
        }))
        .await;
        let registry = Registry::new(vec![host.clone()]);
        let error = registry
            .probe(&ImageRef::parse(&format!("{host}/repo:v1")).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(error, OciError::Registry { status: Some(401), .. }), "{error}");
        assert_eq!(registry.probe_requests(&host), 1);
    }

    #[tokio::test]
    async fn probe_falls_back_to_get_when_head_lacks_the_digest() {
        let (host, seen) = fake_registry(Box::new(|request| {
            if request.method == "HEAD" {
                http("200 OK", &[("Content-Type", "application/json".into())], "")
            } else {
                http("200 OK", &[("Content-Type", "application/json".into())], MANIFEST)
            }
        }))
        .await;
        let registry = Registry::new(vec![host.clone()]);
        let probe = registry
            .probe(&ImageRef::parse(&format!("{host}/repo:v1")).unwrap())
            .await
            .unwrap();
        assert_eq!(
            probe,
            Probe::Found {
                digest: sha256_digest(MANIFEST.as_bytes()),
                media_type: OCI_MANIFEST.into()
            }
        );
        let methods: Vec<String> = seen.lock().unwrap().iter().map(|r| r.method.clone()).collect();
        assert_eq!(methods, ["HEAD", "GET"]);
        assert_eq!(registry.probe_requests(&host), 2);
    }

    #[tokio::test]
    async fn probe_server_errors_are_transient() {
        let (host, _seen) = fake_registry(Box::new(|_| http("503 Service Unavailable", &[], "busy"))).await;
        let registry = Registry::new(vec![host.clone()]);
        let error = registry
            .probe(&ImageRef::parse(&format!("{host}/repo:v1")).unwrap())
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
    }
}
