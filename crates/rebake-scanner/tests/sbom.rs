//! SBOM: package discovery from hand-built image views, and SPDX 2.3 / CycloneDX 1.6 output
//! validated against the official JSON schemas (stored under `tests/data/sbom/schemas/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rebake_oci::{FileInfo, FileKind};
use rebake_scanner::component::{Component, Distro, Ecosystem};
use rebake_scanner::sbom::{SbomSubject, components, to_cyclonedx_json, to_spdx_json};
use rebake_scanner::view::{ImageView, wanted};
use serde_json::Value;

const BASE_LAYER: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const DISTROLESS_LAYER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const APP_LAYER: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
const IMAGE_DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sbom")
}

/// Which layer wrote `path` in the test images: `status.d` a layer of its own, OS files the
/// base layer, everything else (the applications' lock files) the top layer.
fn layer_for(path: &str) -> &'static str {
    if path.starts_with("var/lib/dpkg/status.d/") {
        DISTROLESS_LAYER
    } else if ["var/", "usr/", "etc/", "lib/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
    {
        BASE_LAYER
    } else {
        APP_LAYER
    }
}

fn add_file(view: &mut ImageView, path: &str, content: Vec<u8>, layer: &str) {
    view.files.insert(
        path.to_string(),
        FileInfo {
            path: path.to_string(),
            size: content.len() as u64,
            sha256: String::new(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            kind: FileKind::File,
            link_target: None,
            layer_digest: layer.to_string(),
        },
    );
    if wanted(path, &[]) {
        view.contents.insert(path.to_string(), Bytes::from(content));
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read test data")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let relative = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((relative, std::fs::read(&path).expect("read test file")));
        }
    }
}

/// An image view of the directory tree `tests/data/sbom/<name>` (paths relative to it).
fn view_of(name: &str) -> ImageView {
    let root = data().join(name);
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    let mut view = ImageView {
        digest: IMAGE_DIGEST.to_string(),
        layers: vec![
            BASE_LAYER.to_string(),
            DISTROLESS_LAYER.to_string(),
            APP_LAYER.to_string(),
        ],
        ..ImageView::default()
    };
    for (path, content) in files {
        let layer = layer_for(&path);
        add_file(&mut view, &path, content, layer);
    }
    view
}

fn subject() -> SbomSubject {
    SbomSubject {
        name: "registry.example/team/app:1.0".to_string(),
        digest: IMAGE_DIGEST.to_string(),
        created: "2024-05-01T12:00:00Z".to_string(),
    }
}

fn find<'a>(components: &'a [Component], ecosystem: Ecosystem, name: &str) -> &'a Component {
    components
        .iter()
        .find(|c| c.ecosystem == ecosystem && c.name == name)
        .unwrap_or_else(|| panic!("no {ecosystem:?} component {name}"))
}

fn schema(name: &str) -> Value {
    let text = std::fs::read_to_string(data().join("schemas").join(name)).expect("read schema");
    serde_json::from_str(&text).expect("schema is JSON")
}

fn assert_valid(validator: &jsonschema::Validator, document: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what} is not schema-valid:\n{}", errors.join("\n"));
}

fn validate_spdx(document: &Value) {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema("spdx-schema.json"))
        .expect("SPDX 2.3 schema compiles");
    assert_valid(&validator, document, "SPDX document");
}

fn validate_cyclonedx(document: &Value) {
    let registry = jsonschema::Registry::new()
        .add(
            "http://cyclonedx.org/schema/spdx.schema.json",
            schema("spdx.schema.json"),
        )
        .expect("add spdx.schema.json")
        .add(
            "http://cyclonedx.org/schema/jsf-0.82.schema.json",
            schema("jsf-0.82.schema.json"),
        )
        .expect("add jsf-0.82.schema.json")
        .prepare()
        .expect("registry");
    let validator = jsonschema::options()
        .with_registry(&registry)
        .should_validate_formats(true)
        .build(&schema("bom-1.6.schema.json"))
        .expect("CycloneDX 1.6 schema compiles without network");
    assert_valid(&validator, document, "CycloneDX BOM");
}

#[test]
fn debian_packages_from_status_and_status_d() {
    let found = components(&view_of("debian"));
    let debian: Vec<&Component> = found.iter().filter(|c| c.ecosystem == Ecosystem::Debian).collect();
    let names: Vec<&str> = debian.iter().map(|c| c.name.as_str()).collect();
    // libgnutls30 is `deinstall ok config-files`: not installed. The `.md5sums` file is no package.
    assert_eq!(names, ["base-files", "bash", "libc6", "libssl3", "libzstd1", "zlib1g"]);

    let distro = Some(Distro {
        id: "debian".to_string(),
        version_id: "12".to_string(),
    });
    let zlib = find(&found, Ecosystem::Debian, "zlib1g");
    assert_eq!(zlib.version, "1:1.2.13.dfsg-1");
    assert_eq!(
        zlib.purl,
        "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12"
    );
    assert_eq!(zlib.source_name.as_deref(), Some("zlib"));
    assert_eq!(zlib.arch.as_deref(), Some("amd64"));
    // Listed in both: the status.d entry wins, with its own file's layer.
    assert_eq!(zlib.layer, DISTROLESS_LAYER);
    assert_eq!(zlib.location, "var/lib/dpkg/status.d/zlib1g");
    assert_eq!(zlib.licenses, ["Zlib"]);
    assert_eq!(zlib.distro, distro);

    let bash = find(&found, Ecosystem::Debian, "bash");
    assert_eq!(bash.version, "5.2.15-2+b8", "binary version kept, not the source's");
    assert_eq!(bash.source_name.as_deref(), Some("bash"), "`(version)` suffix stripped");
    assert_eq!(
        bash.purl,
        "pkg:deb/debian/bash@5.2.15-2%2Bb8?arch=amd64&distro=debian-12"
    );
    assert_eq!(bash.layer, BASE_LAYER);
    assert_eq!(bash.location, "var/lib/dpkg/status");

    let ssl = find(&found, Ecosystem::Debian, "libssl3");
    assert!(ssl.purl.starts_with("pkg:deb/debian/libssl3@3.0."), "{}", ssl.purl);
    assert!(
        ssl.purl.contains('~') && ssl.purl.ends_with("?arch=amd64&distro=debian-12"),
        "`~` stays: {}",
        ssl.purl
    );
    assert_eq!(ssl.source_name.as_deref(), Some("openssl"));
    assert_eq!(ssl.licenses, ["Apache-2.0", "Artistic", "Artistic or GPL-1+", "GPL-1+"]);

    // base-files' copyright is not machine-readable.
    assert!(find(&found, Ecosystem::Debian, "base-files").licenses.is_empty());
    assert_eq!(find(&found, Ecosystem::Debian, "base-files").source_name, None);

    let zstd = find(&found, Ecosystem::Debian, "libzstd1");
    assert_eq!(
        zstd.purl,
        "pkg:deb/debian/libzstd1@1.5.4%2Bdfsg2-5?arch=amd64&distro=debian-12"
    );
    assert_eq!(zstd.source_name.as_deref(), Some("libzstd"));
    assert_eq!(zstd.layer, DISTROLESS_LAYER);
}

#[test]
fn ubuntu_ecosystem_from_os_release() {
    let mut view = view_of("debian");
    view.contents.insert(
        "usr/lib/os-release".to_string(),
        Bytes::from_static(b"NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nID_LIKE=debian\n"),
    );
    let found = components(&view);
    let zlib = find(&found, Ecosystem::Ubuntu, "zlib1g");
    assert_eq!(
        zlib.purl,
        "pkg:deb/ubuntu/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=ubuntu-22.04"
    );
    assert!(found.iter().all(|c| c.ecosystem != Ecosystem::Debian));
}

#[test]
fn alpine_and_wolfi_packages() {
    let view = view_of("alpine");
    let found = components(&view);
    let names: Vec<&str> = found.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["busybox", "ca-certificates-bundle", "libcrypto3", "musl"]);
    let crypto = find(&found, Ecosystem::Alpine, "libcrypto3");
    assert_eq!(crypto.version, "3.1.4-r5");
    assert_eq!(crypto.source_name.as_deref(), Some("openssl"));
    assert_eq!(crypto.licenses, ["Apache-2.0"]);
    assert_eq!(
        crypto.purl,
        "pkg:apk/alpine/libcrypto3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1"
    );
    assert_eq!(crypto.layer, BASE_LAYER);
    assert_eq!(crypto.location, "lib/apk/db/installed");
    assert_eq!(
        find(&found, Ecosystem::Alpine, "musl").purl,
        "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1"
    );
    assert_eq!(
        find(&found, Ecosystem::Alpine, "ca-certificates-bundle").licenses,
        ["MPL-2.0 AND MIT"]
    );

    let mut wolfi = view.clone();
    wolfi.contents.insert(
        "etc/os-release".to_string(),
        Bytes::from_static(b"ID=wolfi\nNAME=\"Wolfi\"\nPRETTY_NAME=\"Wolfi\"\nVERSION_ID=20230201\n"),
    );
    let found = components(&wolfi);
    assert_eq!(
        find(&found, Ecosystem::Wolfi, "musl").purl,
        "pkg:apk/wolfi/musl@1.2.4_git20230717-r4?arch=x86_64&distro=wolfi-20230201"
    );
}

#[test]
fn language_packages_from_lock_files() {
    let found = components(&view_of("debian"));
    let of = |ecosystem: Ecosystem| -> Vec<(String, String, String)> {
        found
            .iter()
            .filter(|c| c.ecosystem == ecosystem)
            .map(|c| (c.name.clone(), c.version.clone(), c.purl.clone()))
            .collect()
    };
    let t = |name: &str, version: &str, purl: &str| (name.to_string(), version.to_string(), purl.to_string());

    assert_eq!(
        of(Ecosystem::CratesIo),
        [
            t(
                "rustls-pki-types",
                "1.7.0+pre.1",
                "pkg:cargo/rustls-pki-types@1.7.0%2Bpre.1"
            ),
            t("serde", "1.0.203", "pkg:cargo/serde@1.0.203"),
            t("serde_derive", "1.0.203", "pkg:cargo/serde_derive@1.0.203"),
        ]
    );
    assert_eq!(
        of(Ecosystem::Npm),
        [
            t("@babel/runtime", "7.24.5", "pkg:npm/%40babel/runtime@7.24.5"),
            t("@types/node", "20.12.7", "pkg:npm/%40types/node@20.12.7"),
            t("debug", "2.6.9", "pkg:npm/debug@2.6.9"),
            t("express", "4.19.2", "pkg:npm/express@4.19.2"),
            t("left-pad", "1.3.0", "pkg:npm/left-pad@1.3.0"),
            t("ms", "2.0.0", "pkg:npm/ms@2.0.0"),
            t("regenerator-runtime", "0.14.1", "pkg:npm/regenerator-runtime@0.14.1"),
            t("undici-types", "5.26.5", "pkg:npm/undici-types@5.26.5"),
        ]
    );
    assert_eq!(
        of(Ecosystem::PyPi),
        [
            t("certifi", "2024.2.2", "pkg:pypi/certifi@2024.2.2"),
            t("charset-normalizer", "3.3.2", "pkg:pypi/charset-normalizer@3.3.2"),
            t("django", "4.2.11", "pkg:pypi/django@4.2.11"),
            t("pyyaml", "6.0.1", "pkg:pypi/pyyaml@6.0.1"),
            t("typing-extensions", "4.11.0", "pkg:pypi/typing-extensions@4.11.0"),
            t("zope-interface", "6.2", "pkg:pypi/zope-interface@6.2"),
        ]
    );
    assert_eq!(
        of(Ecosystem::Go),
        [
            t(
                "github.com/Azure/go-autorest",
                "v14.2.0+incompatible",
                "pkg:golang/github.com/Azure/go-autorest@v14.2.0%2Bincompatible"
            ),
            t(
                "github.com/google/uuid",
                "v1.6.0",
                "pkg:golang/github.com/google/uuid@v1.6.0"
            ),
            t("golang.org/x/sys", "v0.19.0", "pkg:golang/golang.org/x/sys@v0.19.0"),
        ]
    );
    let serde = find(&found, Ecosystem::CratesIo, "serde");
    assert_eq!(serde.layer, APP_LAYER);
    assert_eq!(serde.location, "srv/app/Cargo.lock");
    assert_eq!(
        find(&found, Ecosystem::Npm, "left-pad").location,
        "legacy/package-lock.json"
    );
    assert_eq!(find(&found, Ecosystem::PyPi, "django").location, "py/requirements.txt");
    assert_eq!(
        find(&found, Ecosystem::Go, "golang.org/x/sys").location,
        "go/src/go.mod"
    );
    assert!(
        found
            .iter()
            .all(|c| c.ecosystem.is_os() || (c.distro.is_none() && c.source_name.is_none()))
    );
}

#[test]
fn components_are_sorted_and_deterministic() {
    let view = view_of("debian");
    let first = components(&view);
    assert_eq!(first, components(&view));
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(first, sorted);
    assert!(components(&ImageView::default()).is_empty());
}

#[test]
fn spdx_document() {
    let found = components(&view_of("debian"));
    let document = to_spdx_json(&found, &subject());
    validate_spdx(&document);
    assert_eq!(document, to_spdx_json(&found, &subject()), "deterministic");
    assert_eq!(document["spdxVersion"], "SPDX-2.3");
    assert_eq!(document["dataLicense"], "CC0-1.0");
    assert_eq!(document["SPDXID"], "SPDXRef-DOCUMENT");
    assert_eq!(
        document["documentNamespace"],
        format!(
            "https://rebake.dev/spdx/registry.example/team/app%3A1.0/{}",
            IMAGE_DIGEST.replace(':', "%3A")
        )
    );
    assert_eq!(document["creationInfo"]["created"], "2024-05-01T12:00:00Z");
    assert_eq!(
        document["creationInfo"]["creators"][0],
        format!("Tool: rebake-{}", env!("CARGO_PKG_VERSION"))
    );
    let packages = document["packages"].as_array().expect("packages");
    assert_eq!(packages.len(), found.len() + 1);
    assert_eq!(packages[0]["primaryPackagePurpose"], "CONTAINER");
    let ids: std::collections::BTreeSet<&str> = packages.iter().map(|p| p["SPDXID"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), packages.len(), "SPDX ids are unique");
    assert!(
        ids.iter()
            .all(|id| id.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
    );

    let by_name = |name: &str| packages.iter().find(|p| p["name"] == name).expect("package");
    let zlib = by_name("zlib1g");
    assert_eq!(zlib["versionInfo"], "1:1.2.13.dfsg-1");
    assert_eq!(zlib["licenseDeclared"], "Zlib");
    assert_eq!(zlib["externalRefs"][0]["referenceType"], "purl");
    assert_eq!(
        zlib["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12"
    );
    assert!(
        zlib["annotations"][0]["comment"]
            .as_str()
            .expect("comment")
            .contains(DISTROLESS_LAYER)
    );
    assert_eq!(
        by_name("libssl3")["licenseDeclared"],
        "Apache-2.0 AND Artistic-1.0-Perl AND (Artistic-1.0-Perl OR GPL-1.0-or-later) AND GPL-1.0-or-later"
    );
    assert_eq!(by_name("serde")["licenseDeclared"], "NOASSERTION");

    let relationships = document["relationships"].as_array().expect("relationships");
    assert_eq!(relationships.len(), found.len() + 1);
    assert_eq!(relationships[0]["relationshipType"], "DESCRIBES");
    assert!(
        relationships[1..]
            .iter()
            .all(|r| r["relationshipType"] == "CONTAINS" && r["spdxElementId"] == "SPDXRef-image")
    );
}

#[test]
fn spdx_license_refs_are_declared() {
    let mut found = components(&view_of("alpine"));
    found[0].licenses = vec!["GPL-2.0-only OR custom:foo".to_string(), "public-domain".to_string()];
    let document = to_spdx_json(&found, &subject());
    validate_spdx(&document);
    assert_eq!(
        document["packages"][1]["licenseDeclared"],
        "(GPL-2.0-only OR LicenseRef-custom-foo) AND LicenseRef-public-domain"
    );
    let extracted: Vec<&str> = document["hasExtractedLicensingInfos"]
        .as_array()
        .expect("extracted licenses")
        .iter()
        .map(|l| l["licenseId"].as_str().expect("id"))
        .collect();
    assert_eq!(extracted, ["LicenseRef-custom-foo", "LicenseRef-public-domain"]);
    let cyclonedx = to_cyclonedx_json(&found, &subject());
    validate_cyclonedx(&cyclonedx);
    assert_eq!(
        cyclonedx["components"][0]["licenses"],
        serde_json::json!([{"license": {"name": "GPL-2.0-only OR custom:foo"}}, {"license": {"name": "public-domain"}}])
    );
}

#[test]
fn cyclonedx_document() {
    let found = components(&view_of("debian"));
    let bom = to_cyclonedx_json(&found, &subject());
    validate_cyclonedx(&bom);
    assert_eq!(bom, to_cyclonedx_json(&found, &subject()), "deterministic");
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.6");
    assert_eq!(bom["version"], 1);
    let serial = bom["serialNumber"].as_str().expect("serial");
    assert!(serial.starts_with("urn:uuid:"));
    let other = SbomSubject {
        digest: "sha256:00".to_string(),
        ..subject()
    };
    assert_ne!(to_cyclonedx_json(&[], &other)["serialNumber"], bom["serialNumber"]);
    assert_eq!(bom["metadata"]["timestamp"], "2024-05-01T12:00:00Z");
    assert_eq!(bom["metadata"]["component"]["type"], "container");
    assert_eq!(bom["metadata"]["component"]["version"], IMAGE_DIGEST);
    assert_eq!(bom["metadata"]["tools"]["components"][0]["name"], "rebake");

    let entries = bom["components"].as_array().expect("components");
    assert_eq!(entries.len(), found.len());
    let refs: std::collections::BTreeSet<&str> = entries.iter().map(|c| c["bom-ref"].as_str().expect("ref")).collect();
    assert_eq!(refs.len(), entries.len(), "bom-refs are unique");
    let by_name = |name: &str| entries.iter().find(|c| c["name"] == name).expect("component");
    let zlib = by_name("zlib1g");
    assert_eq!(zlib["type"], "library");
    assert_eq!(
        zlib["purl"],
        "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12"
    );
    assert_eq!(zlib["licenses"], serde_json::json!([{"license": {"id": "Zlib"}}]));
    let property = |component: &Value, name: &str| -> String {
        component["properties"]
            .as_array()
            .expect("properties")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["value"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(property(zlib, "rebake:layer"), DISTROLESS_LAYER);
    assert_eq!(property(zlib, "rebake:location"), "var/lib/dpkg/status.d/zlib1g");
    assert_eq!(property(by_name("serde"), "rebake:layer"), APP_LAYER);
    assert_eq!(
        by_name("libssl3")["licenses"],
        serde_json::json!([{"expression": "Apache-2.0 AND Artistic-1.0-Perl AND (Artistic-1.0-Perl OR GPL-1.0-or-later) AND GPL-1.0-or-later"}])
    );

    let alpine = to_cyclonedx_json(&components(&view_of("alpine")), &subject());
    validate_cyclonedx(&alpine);
}

/// The packages of this machine's own dpkg database (with its os-release and DEP-5
/// copyright files) give schema-valid SBOMs.
#[test]
fn this_machines_packages_give_valid_sboms() {
    let Ok(status) = std::fs::read("/var/lib/dpkg/status") else {
        eprintln!("no /var/lib/dpkg/status here, skipped");
        return;
    };
    let mut view = ImageView {
        digest: IMAGE_DIGEST.to_string(),
        ..ImageView::default()
    };
    add_file(&mut view, "var/lib/dpkg/status", status, BASE_LAYER);
    for path in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(content) = std::fs::read(Path::new("/").join(path)) {
            add_file(&mut view, path, content, BASE_LAYER);
        }
    }
    let mut copyrights: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/usr/share/doc") {
        for entry in entries.flatten() {
            if let Ok(content) = std::fs::read(entry.path().join("copyright")) {
                copyrights.insert(
                    format!("usr/share/doc/{}/copyright", entry.file_name().to_string_lossy()),
                    content,
                );
            }
        }
    }
    for (path, content) in copyrights {
        add_file(&mut view, &path, content, BASE_LAYER);
    }
    let found = components(&view);
    assert!(!found.is_empty(), "an installed dpkg database lists packages");
    assert!(
        found
            .iter()
            .all(|c| c.ecosystem.is_os() && !c.version.is_empty() && c.purl.starts_with("pkg:deb/"))
    );
    let spdx = to_spdx_json(&found, &subject());
    validate_spdx(&spdx);
    let bom = to_cyclonedx_json(&found, &subject());
    validate_cyclonedx(&bom);
    eprintln!(
        "{} packages, {} with licenses, {} LicenseRefs",
        found.len(),
        found.iter().filter(|c| !c.licenses.is_empty()).count(),
        spdx["hasExtractedLicensingInfos"].as_array().map_or(0, Vec::len)
    );
}

/// The schema checks do reject broken documents (so a passing check means something).
#[test]
fn schemas_reject_broken_documents() {
    let found = components(&view_of("alpine"));
    let mut spdx = to_spdx_json(&found, &subject());
    spdx["packages"][1]["externalRefs"][0]["referenceCategory"] = Value::from("PACKAGE_MANAGER_TYPO");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema("spdx-schema.json"))
        .expect("SPDX 2.3 schema compiles");
    assert!(!validator.is_valid(&spdx));
    let mut bom = to_cyclonedx_json(&found, &subject());
    bom["serialNumber"] = Value::from("urn:uuid:not-a-uuid");
    bom["components"][0]["licenses"] = serde_json::json!([{"license": {"id": "Not-An-SPDX-Id"}}]);
    let result = std::panic::catch_unwind(|| validate_cyclonedx(&bom));
    assert!(result.is_err(), "a broken BOM fails validation");
}
