//! Round trip against a real `docker-registry` (distribution 2.8) over plain HTTP:
//! push a layer, config and manifest, resolve, mount, copy across "registries", read
//! back, and let skopeo inspect the result.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rebake_oci::{
    Descriptor, ImageConfig, ImageManifest, ImageRef, LayerEntry, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, OciError,
    Registry, RootFs, RuntimeConfig, build_layer, inventory, sha256_digest, to_json_bytes,
};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A registry process on a free loopback port, killed on drop.
struct TestRegistry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            listener.local_addr().expect("local addr").port()
        };
        let host = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                storage.display()
            ),
        )
        .expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let access_log = std::fs::File::create(dir.path().join("access.log")).expect("log file");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::from(access_log))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let registry = TestRegistry { child, host, _dir: dir };
        registry.wait_ready();
        registry
    }

    /// The registry's access log (one combined-log-format line per request).
    fn access_log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("access.log")).unwrap_or_default()
    }

    /// True once an access log line satisfies `matches` (the log is written after the
    /// response, so give it a moment).
    fn logged(&self, matches: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if self.access_log().lines().any(&matches) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if v2_answers(&self.host) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry on {} did not become ready:\n{log}", self.host);
    }
}

fn v2_answers(host: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(host) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).is_ok() && answer.ends_with(b"200")
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skopeo_inspect(image: &str, raw: bool) -> serde_json::Value {
    let mut command = Command::new("skopeo");
    command.arg("inspect").arg("--tls-verify=false");
    if raw {
        command.arg("--raw");
    }
    let output = command.arg(format!("docker://{image}")).output().expect("run skopeo");
    assert!(
        output.status.success(),
        "skopeo inspect {image} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("skopeo prints json")
}

fn assert_not_found(result: Result<impl std::fmt::Debug, OciError>) {
    match result {
        Err(error) => assert!(error.is_not_found(), "expected not found, got {error}"),
        Ok(value) => panic!("expected not found, got {value:?}"),
    }
}

#[tokio::test]
async fn push_resolve_mount_and_inspect() {
    assert!(Path::new(REGISTRY_BIN).exists(), "{REGISTRY_BIN} is not installed");
    let server = TestRegistry::start();
    let host = server.host.clone();
    // "localhost:<port>" is the same server under another name: it exercises the
    // cross-registry (pull + push) path of copy_blob.
    let alias = host.replace("127.0.0.1", "localhost");
    let registry = Registry::new(vec![host.clone(), alias.clone()]);

    // Unknown things.
    let missing = ImageRef::parse(&format!("{host}/apps/app:v1")).unwrap();
    assert_eq!(registry.resolve(&missing).await.unwrap(), None);
    assert_not_found(registry.get_manifest(&host, "apps/app", "v1").await);
    assert_not_found(registry.get_blob(&host, "apps/app", &sha256_digest(b"nothing")).await);
    assert!(
        !registry
            .blob_exists(&host, "apps/app", &sha256_digest(b"nothing"))
            .await
            .unwrap()
    );

    // Layer + config + manifest.
    let layer = build_layer(
        vec![
            LayerEntry::file("app/hello.txt", 0o644, "hello\n"),
            LayerEntry::file("app/run", 0o755, "#!/bin/sh\necho hi\n"),
        ],
        1_700_000_000,
    )
    .unwrap();
    let layer_digest = registry
        .push_blob(&host, "apps/app", layer.compressed.clone())
        .await
        .unwrap();
    assert_eq!(layer_digest, layer.digest);
    // Pushing again is a no-op returning the same digest.
    assert_eq!(
        registry
            .push_blob(&host, "apps/app", layer.compressed.clone())
            .await
            .unwrap(),
        layer.digest
    );

    let config = ImageConfig {
        created: Some("2023-11-14T22:13:20Z".to_string()),
        architecture: "amd64".to_string(),
        os: "linux".to_string(),
        config: Some(RuntimeConfig {
            env: vec!["PATH=/usr/bin:/bin".to_string()],
            cmd: Some(vec!["/app/run".to_string()]),
            ..RuntimeConfig::default()
        }),
        rootfs: RootFs {
            diff_ids: vec![layer.diff_id.clone()],
            ..RootFs::default()
        },
        ..ImageConfig::default()
    };
    let config_bytes = to_json_bytes(&config).unwrap();
    let config_digest = registry
        .push_blob(&host, "apps/app", config_bytes.clone().into())
        .await
        .unwrap();
    let manifest = ImageManifest::new(
        Descriptor::new(OCI_CONFIG, config_digest.clone(), config_bytes.len() as i64),
        vec![Descriptor::new(OCI_LAYER_GZIP, layer.digest.clone(), layer.size)],
    );
    let manifest_bytes = to_json_bytes(&manifest).unwrap();
    let manifest_digest = registry
        .put_manifest(&host, "apps/app", "v1", &manifest_bytes, OCI_MANIFEST)
        .await
        .unwrap();
    assert_eq!(manifest_digest, sha256_digest(&manifest_bytes));

    // Resolve by tag and by digest.
    let resolved = registry.resolve(&missing).await.unwrap().expect("tag exists now");
    assert_eq!(resolved.digest, manifest_digest);
    assert_eq!(resolved.media_type, OCI_MANIFEST);
    let pinned = missing.with_digest(manifest_digest.clone());
    assert_eq!(registry.resolve(&pinned).await.unwrap(), Some(resolved.clone()));

    // Read back.
    let raw = registry
        .get_manifest(&host, "apps/app", &manifest_digest)
        .await
        .unwrap();
    assert_eq!(raw.bytes.as_ref(), manifest_bytes.as_slice());
    assert_eq!(raw.media_type, OCI_MANIFEST);
    assert!(!raw.is_index());
    assert_eq!(raw.to_manifest().unwrap(), manifest);
    let blob = registry.get_blob(&host, "apps/app", &layer.digest).await.unwrap();
    let files = inventory(&[(layer.digest.clone(), blob)]).unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, vec!["app", "app/hello.txt", "app/run"]);

    // Same registry: mount into another repository, then push a manifest there by digest.
    registry
        .copy_blob(&host, "apps/app", &host, "mirror/app", &layer.digest)
        .await
        .unwrap();
    registry
        .copy_blob(&host, "apps/app", &host, "mirror/app", &config_digest)
        .await
        .unwrap();
    assert!(registry.blob_exists(&host, "mirror/app", &layer.digest).await.unwrap());
    let mounted = format!(
        "POST /v2/mirror/app/blobs/uploads/?mount={}&from=apps/app HTTP/1.1\" 201",
        layer.digest
    );
    assert!(
        server.logged(|line| line.contains(&mounted)),
        "no mount in:\n{}",
        server.access_log()
    );
    let by_digest = registry
        .put_manifest(&host, "mirror/app", &manifest_digest, &manifest_bytes, OCI_MANIFEST)
        .await
        .unwrap();
    assert_eq!(by_digest, manifest_digest);

    // A mount from a repository that lacks the blob is refused (202) and falls back to a
    // pull from that repository, which then reports the blob as missing.
    assert_not_found(
        registry
            .copy_blob(&host, "nowhere/app", &host, "other/app", &layer.digest)
            .await,
    );
    // The upload session the refused mount opened was cancelled.
    assert!(
        server.logged(|line| { line.contains("DELETE /v2/other/app/blobs/uploads/") && line.contains("\" 204 ") }),
        "no cancelled upload in:\n{}",
        server.access_log()
    );

    // "Different" registry: pull + push.
    registry
        .copy_blob(&host, "apps/app", &alias, "copied/app", &layer.digest)
        .await
        .unwrap();
    assert!(registry.blob_exists(&host, "copied/app", &layer.digest).await.unwrap());

    // Pushing a manifest that references a missing blob is a permanent registry error.
    let broken = ImageManifest::new(
        Descriptor::new(OCI_CONFIG, sha256_digest(b"missing config"), 14),
        Vec::new(),
    );
    let error = registry
        .put_manifest(
            &host,
            "apps/app",
            "broken",
            &to_json_bytes(&broken).unwrap(),
            OCI_MANIFEST,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, OciError::Registry { status: Some(400), .. }), "{error}");
    assert!(!error.is_transient());

    assert_eq!(registry.list_tags(&host, "apps/app").await.unwrap(), vec!["v1"]);
    assert_not_found(registry.list_tags(&host, "never/pushed").await);

    // An independent client reads the image.
    let image = format!("{host}/apps/app:v1");
    let inspected = skopeo_inspect(&image, false);
    assert_eq!(inspected["Digest"], manifest_digest.as_str());
    assert_eq!(inspected["Layers"], serde_json::json!([layer.digest]));
    assert_eq!(inspected["Architecture"], "amd64");
    let raw_manifest = skopeo_inspect(&image, true);
    assert_eq!(raw_manifest["config"]["digest"], config_digest.as_str());
    let mirrored = skopeo_inspect(&format!("{host}/mirror/app@{manifest_digest}"), true);
    assert_eq!(mirrored["layers"][0]["digest"], layer.digest.as_str());
}
