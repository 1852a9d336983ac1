//! SPDX 2.3 JSON.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::license::combined;
use super::purl::purl_encode;
use super::{SbomSubject, TOOL_VERSION};
use crate::component::Component;

/// The SPDX id of the image's own package.
const IMAGE_ID: &str = "SPDXRef-image";

/// An SPDX 2.3 JSON document for `components` found in `image`: one package for the image
/// (`primaryPackagePurpose: CONTAINER`, described by the document) that `CONTAINS` one
/// package per component, each with its purl as an external reference, its declared
/// licenses as an SPDX expression (unlisted names as `LicenseRef-…`, each with a
/// `hasExtractedLicensingInfos` entry) and an annotation naming the layer and file it
/// was found in.
///
/// Deterministic: the namespace derives from the image digest and the creation time is
/// `image.created`.
pub fn to_spdx_json(components: &[Component], image: &SbomSubject) -> Value {
    let tool = format!("Tool: rebake-{TOOL_VERSION}");
    let mut used_ids = BTreeSet::from([IMAGE_ID.to_string()]);
    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    let mut packages = vec![image_package(image)];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": IMAGE_ID,
    })];
    for component in components {
        let id = unique_id(
            &mut used_ids,
            &format!(
                "SPDXRef-Package-{}-{}-{}",
                component.ecosystem.osv_name(),
                component.name,
                component.version
            ),
        );
        let declared = match combined(&component.licenses) {
            Some(license) => {
                for (license_id, name) in license.refs {
                    extracted.entry(license_id).or_insert(name);
                }
                license.expression
            }
            None => "NOASSERTION".to_string(),
        };
        let mut package = json!({
            "SPDXID": id,
            "name": component.name,
            "versionInfo": component.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared,
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": component.purl,
            }],
            "annotations": [{
                "annotationType": "OTHER",
                "annotator": tool,
                "annotationDate": image.created,
                "comment": format!("layer: {}; location: {}", component.layer, component.location),
            }],
        });
        if let Some(source) = &component.source_name {
            package["sourceInfo"] = json!(format!("built package from: {source}"));
        }
        packages.push(package);
        relationships.push(json!({
            "spdxElementId": IMAGE_ID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": image_label(image),
        "documentNamespace": format!(
            "https://rebake.dev/spdx/{}/{}",
            encode_path(&image.name),
            purl_encode(&image.digest)
        ),
        "creationInfo": {
            "created": image.created,
            "creators": [tool],
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        document["hasExtractedLicensingInfos"] = extracted
            .into_iter()
            .map(|(id, name)| {
                json!({
                    "licenseId": id,
                    "name": name,
                    "extractedText": format!("License declared by the package as \"{name}\" (no SPDX License List id)."),
                })
            })
            .collect();
    }
    document
}

/// `name@digest`, or whichever of them is present.
pub(crate) fn image_label(image: &SbomSubject) -> String {
    match (image.name.is_empty(), image.digest.is_empty()) {
        (false, false) => format!("{}@{}", image.name, image.digest),
        (false, true) => image.name.clone(),
        _ => image.digest.clone(),
    }
}

/// The image's purl: `pkg:oci/<last path segment>@<digest>?repository_url=<name>`.
pub(crate) fn image_purl(image: &SbomSubject) -> Option<String> {
    if image.name.is_empty() || image.digest.is_empty() {
        return None;
    }
    let repository = strip_tag(&image.name);
    let last = repository.rsplit('/').next().unwrap_or(repository).to_ascii_lowercase();
    Some(format!(
        "pkg:oci/{}@{}?repository_url={}",
        purl_encode(&last),
        purl_encode(&image.digest),
        purl_encode(&repository.to_ascii_lowercase())
    ))
}

/// `registry/repo` without a `:tag` or `@digest`.
fn strip_tag(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => name,
    }
}

fn image_package(image: &SbomSubject) -> Value {
    let mut package = json!({
        "SPDXID": IMAGE_ID,
        "name": if image.name.is_empty() { image.digest.clone() } else { image.name.clone() },
        "versionInfo": image.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
    });
    if let Some(purl) = image_purl(image) {
        package["externalRefs"] = json!([{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }]);
    }
    package
}

/// Percent-encodes each `/`-separated segment of `path`.
fn encode_path(path: &str) -> String {
    path.split('/').map(purl_encode).collect::<Vec<_>>().join("/")
}

/// `wanted` sanitised to `[A-Za-z0-9.-]` (others become `-`), made unique in `used` with a
/// `-<n>` suffix.
fn unique_id(used: &mut BTreeSet<String>, wanted: &str) -> String {
    let base: String = wanted
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-') {
                ch
            } else {
                '-'
            }
        })
        .collect();
    let mut id = base.clone();
    let mut n = 1;
    while !used.insert(id.clone()) {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sanitised_and_unique() {
        let mut used = BTreeSet::new();
        assert_eq!(
            unique_id(&mut used, "SPDXRef-Package-npm-@a/b-1.0.0"),
            "SPDXRef-Package-npm--a-b-1.0.0"
        );
        assert_eq!(
            unique_id(&mut used, "SPDXRef-Package-npm-@a/b-1.0.0"),
            "SPDXRef-Package-npm--a-b-1.0.0-2"
        );
        assert_eq!(
            unique_id(&mut used, "SPDXRef-Package-Debian-zlib1g-1:1.2+x"),
            "SPDXRef-Package-Debian-zlib1g-1-1.2-x"
        );
    }

    #[test]
    fn image_purls() {
        let image = SbomSubject {
            name: "registry.example:5000/team/App:1.2".to_string(),
            digest: "sha256:abc".to_string(),
            created: String::new(),
        };
        assert_eq!(
            image_purl(&image).as_deref(),
            Some("pkg:oci/app@sha256%3Aabc?repository_url=registry.example%3A5000%2Fteam%2Fapp")
        );
    }
}
