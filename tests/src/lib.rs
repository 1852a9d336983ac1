//! The end-to-end sandbox: a real `nats-server`, a real `docker-registry` whose
//! notifications point at the ingress under test, a local Git repository, a signing key, a
//! catalog, and every Rebake service started in-process through `rebake::start` (the same
//! code path as `rebake up`). Scenarios live in `tests/`.
#![forbid(unsafe_code)]

/// The allocator of the `rebake` binary, so that services run in-process (tests, benches)
/// allocate as they do in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod bench;
pub mod debfeed;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use rebake_bus::{Bus, Kv};
use rebake_events::{
    Bucket, ImageName, Names,
    state::{BuildRecord, ImageState},
};
use rebake_oci::{
    Descriptor, ImageConfig, ImageManifest, LayerEntry, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Registry,
    RuntimeConfig, build_layer, to_json_bytes,
};
use rebake_testkit::{NatsServer, Notifications, RegistryServer, free_port};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Token the registry sends with its notifications.
pub const REGISTRY_TOKEN: &str = "registry-notify-token";
/// GitHub webhook secret.
pub const GITHUB_SECRET: &str = "github-webhook-secret";

/// A running Rebake with its own servers.
pub struct Sandbox {
    /// NATS.
    pub nats: NatsServer,
    /// The registry.
    pub registry_server: RegistryServer,
    /// Registry client.
    pub registry: Registry,
    /// `127.0.0.1:<port>` of the registry.
    pub host: String,
    /// Ingress base URL.
    pub ingress_url: String,
    /// Control endpoint.
    pub control_url: String,
    /// `GET /metrics` URL of the process registry.
    pub metrics_url: Option<String>,
    /// Bus connection for assertions.
    pub bus: Bus,
    /// Work directory (git repo, keys, catalog, config).
    pub dir: tempfile::TempDir,
    /// The app's Git repository.
    pub git_dir: PathBuf,
    /// Public key PEM path.
    pub public_key: PathBuf,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

use rebake_testkit::run_in as run;

/// Runs `program` in `dir` and returns its stdout; a failure carries its stderr.
pub fn tool(dir: &Path, program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("failed to run {program}"))?;
    if !output.status.success() {
        bail!("{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}

/// Pushes a linux/amd64 image made of `layers` (base first; fixed timestamps) with `runtime`
/// as its config to `host/repository:tag` with Rebake's own OCI code; returns its digest.
pub async fn push_image(
    registry: &Registry,
    host: &str,
    repository: &str,
    tag: &str,
    layers: Vec<Vec<LayerEntry>>,
    runtime: RuntimeConfig,
) -> Result<String> {
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for entries in layers {
        let layer = build_layer(entries, 1_700_000_000)?;
        registry.push_blob(host, repository, layer.compressed.clone()).await?;
        diff_ids.push(layer.diff_id.clone());
        descriptors.push(Descriptor::new(OCI_LAYER_GZIP, layer.digest.clone(), layer.size));
    }
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        config: Some(runtime),
        rootfs: rebake_oci::RootFs {
            diff_ids,
            ..Default::default()
        },
        ..Default::default()
    };
    let config_bytes = to_json_bytes(&config)?;
    let config_digest = registry
        .push_blob(host, repository, config_bytes.clone().into())
        .await?;
    let mut manifest = ImageManifest::new(
        Descriptor::new(OCI_CONFIG, config_digest, config_bytes.len() as i64),
        descriptors,
    );
    manifest.media_type = Some(OCI_MANIFEST.into());
    let bytes = to_json_bytes(&manifest)?;
    Ok(registry
        .put_manifest(host, repository, tag, &bytes, OCI_MANIFEST)
        .await?)
}

/// How a sandbox differs from the default.
#[derive(Debug, Clone)]
pub struct Options {
    /// Whether the registry notifies the ingress (off: only the resync sees changes).
    pub notifications: bool,
    /// The resolver's resync interval.
    pub resync_interval: String,
    /// Whether the catalog has the default `app` and `child` images.
    pub default_images: bool,
    /// More catalog files: (file name, YAML); `{host}` is replaced by the registry host and
    /// `{git}` by the path of the sandbox's Git repository (`Sandbox::git_dir`).
    pub images: Vec<(String, String)>,
    /// The `feeds:` section (YAML, already indented by two spaces), if any.
    pub feeds: String,
    /// How often the ingress polls feeds.
    pub feed_poll_interval: String,
    /// The `scanner:` section's keys (YAML, already indented by two spaces), if any.
    pub scanner: String,
    /// More `ingress:` keys (YAML, indented by two spaces), e.g. `sources:` or `poll:`;
    /// `{host}` is replaced by the registry host.
    pub ingress: String,
    /// More `control:` keys (YAML, indented by two spaces), e.g. `tokens:`.
    pub control: String,
    /// More top-level keys (YAML), e.g. `telemetry:`.
    pub extra: String,
    /// More `registries:` keys (YAML, indented by two spaces), e.g. `verify:`; `{host}` is
    /// replaced by the registry host.
    pub registries: String,
    /// The `signer:` section's keys (YAML, indented by two spaces) instead of the sandbox's
    /// own unencrypted key (`Sandbox::public_key` is then not the signing key's).
    pub signer: Option<String>,
    /// `builder.workers` (concurrent builds), default 2.
    pub builder_workers: usize,
    /// The services to start (default: all of them, as `rebake up` does).
    pub services: Vec<rebake::Service>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            notifications: true,
            resync_interval: "5m".to_string(),
            default_images: true,
            images: Vec::new(),
            feeds: String::new(),
            feed_poll_interval: "5m".to_string(),
            scanner: String::new(),
            ingress: String::new(),
            control: String::new(),
            extra: String::new(),
            registries: String::new(),
            signer: None,
            builder_workers: 2,
            services: rebake::Service::ALL.to_vec(),
        }
    }
}

impl Sandbox {
    /// Starts everything. `prefix` keeps this sandbox's subjects apart.
    pub async fn start(prefix: &str) -> Result<Sandbox> {
        Self::start_with(prefix, Options::default()).await
    }

    /// Starts everything with `options`.
    pub async fn start_with(prefix: &str, options: Options) -> Result<Sandbox> {
        rebake_testkit::init_test_tracing();
        let dir = tempfile::tempdir()?;
        let nats = NatsServer::start().await?;
        let ingress_port = free_port();
        let control_port = free_port();
        let notifications = options.notifications.then(|| Notifications {
            url: format!("http://127.0.0.1:{ingress_port}/v1/hooks/registry/distribution"),
            token: REGISTRY_TOKEN.to_string(),
        });
        let registry_server = RegistryServer::start(notifications).await?;
        let host = registry_server.host();

        // Git source.
        let git_dir = dir.path().join("app-src");
        std::fs::create_dir_all(git_dir.join("site"))?;
        run(&git_dir, "git", &["init", "--quiet", "--initial-branch=main"])?;
        std::fs::write(git_dir.join("site/index.html"), "<h1>v1</h1>\n")?;
        std::fs::write(git_dir.join("site/run.sh"), "#!/bin/sh\necho hi\n")?;
        run(&git_dir, "chmod", &["+x", "site/run.sh"])?;
        run(&git_dir, "git", &["add", "."])?;
        run(&git_dir, "git", &["commit", "--quiet", "-m", "v1"])?;

        // Signing key.
        let key = dir.path().join("cosign.key");
        let public_key = dir.path().join("cosign.pub");
        let ec = run(
            dir.path(),
            "openssl",
            &["ecparam", "-genkey", "-name", "prime256v1", "-noout"],
        )?;
        std::fs::write(dir.path().join("ec.pem"), format!("{ec}\n"))?;
        run(
            dir.path(),
            "openssl",
            &["pkcs8", "-topk8", "-nocrypt", "-in", "ec.pem", "-out", "cosign.key"],
        )?;
        run(
            dir.path(),
            "openssl",
            &["ec", "-in", "cosign.key", "-pubout", "-out", "cosign.pub"],
        )?;

        // Catalog.
        let catalog = dir.path().join("images");
        std::fs::create_dir_all(&catalog)?;
        for (file, yaml) in &options.images {
            let yaml = yaml
                .replace("{host}", &host)
                .replace("{git}", &git_dir.display().to_string());
            std::fs::write(catalog.join(file), yaml)?;
        }
        if options.default_images {
            std::fs::write(
                catalog.join("app.yaml"),
                format!(
                    "name: app\nbase: {host}/base:v1\nsources:\n  - url: {git}\n    ref: main\n    path: site\n    dest: /srv/www\n    repo: github.com/octo/app\nconfig:\n  env: {{ MODE: prod }}\n  entrypoint: [/srv/www/run.sh]\n  user: \"1000\"\n  labels: {{ team: web }}\npublish:\n  repository: {host}/apps/app\n  tags: [latest, stable]\n",
                    git = git_dir.display()
                ),
            )?;
            std::fs::write(
                catalog.join("child.yaml"),
                format!(
                    "name: child\nbase: {host}/apps/app:latest\nconfig:\n  cmd: [--verbose]\npublish:\n  repository: {host}/apps/child\n"
                ),
            )?;
        }

        let config_text = format!(
            "version: 1\nnats:\n  url: {nats}\n  prefix: {prefix}\nregistries:\n  plain_http: [\"{host}\"]\n{registries}catalog:\n  dir: {catalog}\nqueues:\n  ack_wait: 10s\n  max_deliver: 3\ningress:\n  listen: 127.0.0.1:{ingress_port}\n  feed_poll_interval: {poll}\n  distribution:\n    token: {{ value: {REGISTRY_TOKEN} }}\n  github:\n    secret: {{ env: TEST_GITHUB_SECRET }}\n{ingress}resolver:\n  resync_interval: {resync}\nbuilder:\n  workers: {workers}\n  work_dir: {work}\nsigner:\n{signer}control:\n  listen: 127.0.0.1:{control_port}\n{control}metrics:\n  listen: 127.0.0.1:0\nshutdown_grace: 5s\n{feeds}{scanner}{extra}",
            control = options.control,
            workers = options.builder_workers,
            extra = options.extra,
            nats = nats.url(),
            ingress = options.ingress.replace("{host}", &host),
            catalog = catalog.display(),
            work = dir.path().join("work").display(),
            registries = options.registries.replace("{host}", &host),
            signer = options
                .signer
                .clone()
                .unwrap_or_else(|| format!("  key: {{ file: {} }}\n", key.display())),
            resync = options.resync_interval,
            poll = options.feed_poll_interval,
            scanner = if options.scanner.is_empty() {
                String::new()
            } else {
                format!("scanner:\n{}", options.scanner)
            },
            feeds = if options.feeds.is_empty() {
                String::new()
            } else {
                format!("feeds:\n{}", options.feeds)
            },
        );
        let config_path = dir.path().join("rebake.yaml");
        std::fs::write(&config_path, &config_text)?;
        let env: HashMap<String, String> = [("TEST_GITHUB_SECRET".to_string(), GITHUB_SECRET.to_string())].into();
        let config = rebake_config::Config::load(&config_path, &env)?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let started = rebake::start(&options.services, &config, &env, shutdown.clone(), tracker.clone()).await?;
        let bus = Bus::connect(&nats.url(), Names::new(prefix)?, "test", Duration::from_secs(10), 3).await?;
        Ok(Sandbox {
            registry: Registry::try_new(vec![host.clone()])?,
            nats,
            registry_server,
            host,
            ingress_url: format!("http://127.0.0.1:{ingress_port}"),
            control_url: format!("http://127.0.0.1:{control_port}"),
            metrics_url: started.metrics.map(|address| format!("http://{address}/metrics")),
            bus,
            git_dir,
            public_key,
            dir,
            shutdown,
            tracker,
        })
    }

    /// Stops the services (graceful).
    pub async fn stop(&self) {
        self.shutdown.cancel();
        rebake_runtime::drain(&self.tracker, Duration::from_secs(10)).await;
    }

    /// Pushes a base image `base:<tag>` whose single layer holds `/etc/base-release` = `release`.
    /// Returns its digest. Uses Rebake's own OCI code.
    pub async fn push_base(&self, tag: &str, release: &str) -> Result<String> {
        let layer = vec![
            LayerEntry::file("etc/base-release", 0o644, release.as_bytes().to_vec()),
            LayerEntry::file("bin/tool", 0o755, format!("#!/bin/sh\necho {release}\n").into_bytes()),
        ];
        let runtime = RuntimeConfig {
            env: vec!["PATH=/usr/bin:/bin".into(), "MODE=dev".into()],
            cmd: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        };
        push_image(&self.registry, &self.host, "base", tag, vec![layer], runtime).await
    }

    /// Commits a change to the app's source; returns the new commit.
    pub fn commit_source(&self, content: &str) -> Result<String> {
        std::fs::write(self.git_dir.join("site/index.html"), content)?;
        run(&self.git_dir, "git", &["commit", "--quiet", "-am", "change"])?;
        run(&self.git_dir, "git", &["rev-parse", "HEAD"])
    }

    /// Commits `content` at `path` (relative to the repository) on `main`; returns the commit.
    pub fn commit_file(&self, path: &str, content: &str) -> Result<String> {
        let full = self.git_dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&full, content)?;
        run(&self.git_dir, "git", &["add", path])?;
        run(
            &self.git_dir,
            "git",
            &["commit", "--quiet", "-m", &format!("change {path}")],
        )?;
        run(&self.git_dir, "git", &["rev-parse", "HEAD"])
    }

    /// The commit `main` points at.
    pub fn head(&self) -> Result<String> {
        run(&self.git_dir, "git", &["rev-parse", "HEAD"])
    }

    /// A GitHub-format push event for the app's repository, and its signature header.
    pub fn github_push(&self, before: &str, after: &str, secret: &str) -> (Vec<u8>, String) {
        github_push_event("octo/app", before, after, secret)
    }

    /// Sends a GitHub push webhook; returns the HTTP status.
    pub async fn send_github(&self, body: Vec<u8>, signature: &str, delivery: &str) -> Result<u16> {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/hooks/git/github", self.ingress_url))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    /// The state of `image`.
    pub async fn image_state(&self, image: &str) -> Result<Option<ImageState>> {
        let kv: Kv = self.bus.kv(Bucket::Images).await?;
        Ok(kv.get(&ImageName::new(image)?.kv_key()).await?)
    }

    /// The published digest of `image`, if any.
    pub async fn published_digest(&self, image: &str) -> Result<Option<String>> {
        Ok(self
            .image_state(image)
            .await?
            .and_then(|state| state.published.map(|p| p.digest)))
    }

    /// Every build record of `image`.
    pub async fn builds_of(&self, image: &str) -> Result<Vec<BuildRecord>> {
        let kv: Kv = self.bus.kv(Bucket::Builds).await?;
        let mut builds: Vec<BuildRecord> = kv
            .values::<serde_json::Value>()
            .await?
            .into_iter()
            // Build records are keyed by build id; `<id>.files`, `<id>.scan`, ... are documents about them.
            .filter(|(key, _)| !key.contains('.'))
            .filter_map(|(_, value)| serde_json::from_value::<BuildRecord>(value).ok())
            .filter(|record| record.image == image)
            .collect();
        builds.sort_by_key(|record| record.requested_at_ms);
        Ok(builds)
    }

    /// Waits until `image` is published with a digest other than `previous`; returns it.
    pub async fn wait_published(&self, image: &str, previous: Option<&str>) -> Result<String> {
        let deadline = tokio::time::Instant::now() + rebake_testkit::patience();
        loop {
            if let Some(digest) = self.published_digest(image).await?
                && Some(digest.as_str()) != previous
            {
                return Ok(digest);
            }
            if tokio::time::Instant::now() > deadline {
                let state = self.image_state(image).await?;
                bail!("{image} was not published (previous {previous:?}); state: {state:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the app and then its child are published on top of `base` (each for the
    /// first time), checking each one's base digest annotation; returns their digests.
    pub async fn wait_first_cascade(&self, base: &str) -> Result<(String, String)> {
        let app = self.wait_published("app", None).await?;
        let child = self.wait_published("child", None).await?;
        let app_base =
            self.manifest("apps/app", &app).await?.annotations["org.opencontainers.image.base.digest"].clone();
        anyhow::ensure!(app_base == base, "app is built on {app_base}, not {base}");
        let child_base =
            self.manifest("apps/child", &child).await?.annotations["org.opencontainers.image.base.digest"].clone();
        anyhow::ensure!(child_base == app, "child is built on {child_base}, not the app's {app}");
        Ok((app, child))
    }

    /// Reads the published manifest of `repository:reference`.
    pub async fn manifest(&self, repository: &str, reference: &str) -> Result<ImageManifest> {
        Ok(self
            .registry
            .get_manifest(&self.host, repository, reference)
            .await?
            .to_manifest()?)
    }
}

/// Generates an ECDSA P-256 key pair with openssl in `dir`: `<name>.key` (PKCS#8 PEM) and
/// `<name>.pub` (PEM `PUBLIC KEY`). Returns their paths.
pub fn generate_key_pair(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let key = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let script = format!(
        "openssl ecparam -genkey -name prime256v1 -noout | openssl pkcs8 -topk8 -nocrypt -out '{key}' && openssl ec -in '{key}' -pubout -out '{public}'",
        key = key.display(),
        public = public.display()
    );
    tool(dir, "sh", &["-c", &script])?;
    Ok((key, public))
}

impl Sandbox {
    /// Signs `digest` in `host/repository` cosign-style (the `sha256-<hex>.sig` tag, as
    /// `cosign sign --key` writes it) with the unencrypted PEM private key at `key`, as an
    /// upstream publisher would sign a base image.
    pub async fn sign_pushed(&self, repository: &str, digest: &str, key: &Path) -> Result<()> {
        let pem = std::fs::read(key).with_context(|| format!("failed to read {}", key.display()))?;
        let key = rebake_signer::SignerKey::from_pem(&pem, None)?;
        let target = rebake_oci::ImageRef::parse(&format!("{}/{repository}", self.host))?;
        rebake_signer::sign_and_store(&self.registry, &key, &target, digest).await?;
        Ok(())
    }
}

/// A GitHub-format push event to `main` of `full_name` (`owner/name`), and its
/// `X-Hub-Signature-256` header value for `secret`.
pub fn github_push_event(full_name: &str, before: &str, after: &str, secret: &str) -> (Vec<u8>, String) {
    let name = full_name.rsplit('/').next().unwrap_or(full_name);
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "repository": {
            "id": 1, "name": name, "full_name": full_name,
            "html_url": format!("https://github.com/{full_name}"),
            "clone_url": format!("https://github.com/{full_name}.git"),
            "created_at": 1_700_000_000, "pushed_at": 1_700_000_100, "updated_at": "2026-12-03T12:00:00Z"
        },
        "pusher": { "name": "octo", "email": "octo@example.invalid" },
        "commits": [],
        "head_commit": null
    })
    .to_string()
    .into_bytes();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (body, signature)
}
