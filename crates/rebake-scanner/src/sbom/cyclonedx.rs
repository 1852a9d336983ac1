//! CycloneDX 1.6 JSON.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::license::spdx_license;
use super::spdx::image_purl;
use super::{SbomSubject, TOOL_VERSION};
use crate::component::Component;

/// The bom-ref of the image's own component.
const IMAGE_REF: &str = "image";

/// A CycloneDX 1.6 JSON BOM for `components` found in `image`: the image as
/// `metadata.component` (`type: container`, version = digest), one `library` component
/// per package with its purl, licenses (`license.id` for SPDX list ids, an `expression`
/// when they combine into one made of list ids only, else `license.name`), and
/// `rebake:layer` / `rebake:location` properties.
///
/// Deterministic: `serialNumber` is a UUID derived from the image digest (SHA-256, with
/// the version 5 and RFC 4122 variant bits set) and the timestamp is `image.created`.
pub fn to_cyclonedx_json(components: &[Component], image: &SbomSubject) -> Value {
    let mut used_refs = BTreeSet::from([IMAGE_REF.to_string()]);
    let mut out = Vec::with_capacity(components.len());
    for component in components {
        let bom_ref = unique_ref(&mut used_refs, &component.purl);
        let mut properties = vec![
            property("rebake:ecosystem", component.ecosystem.osv_name()),
            property("rebake:layer", &component.layer),
            property("rebake:location", &component.location),
        ];
        if let Some(source) = &component.source_name {
            properties.push(property("rebake:source-name", source));
        }
        if let Some(arch) = &component.arch {
            properties.push(property("rebake:arch", arch));
        }
        if let Some(distro) = &component.distro {
            properties.push(property(
                "rebake:distro",
                &format!("{}-{}", distro.id, distro.version_id),
            ));
        }
        let mut entry = json!({
            "type": "library",
            "bom-ref": bom_ref,
            "name": component.name,
            "version": component.version,
            "purl": component.purl,
            "properties": properties,
        });
        let licenses = licenses(&component.licenses);
        if !licenses.is_empty() {
            entry["licenses"] = Value::Array(licenses);
        }
        out.push(entry);
    }
    let mut subject = json!({
        "type": "container",
        "bom-ref": IMAGE_REF,
        "name": if image.name.is_empty() { image.digest.clone() } else { image.name.clone() },
        "version": image.digest,
    });
    if let Some(purl) = image_purl(image) {
        subject["purl"] = json!(purl);
    }
    let mut metadata = json!({
        "tools": {
            "components": [{"type": "application", "name": "rebake", "version": TOOL_VERSION}],
        },
        "component": subject,
    });
    if !image.created.is_empty() {
        metadata["timestamp"] = json!(image.created);
    }
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial_number(&image.digest),
        "version": 1,
        "metadata": metadata,
        "components": out,
    })
}

fn property(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

/// CycloneDX licenses: `[{license: {id}}…]` when every declared license is one SPDX list
/// id, `[{expression}]` when they combine into an expression of list ids only, else one
/// `{license: {id}}` or `{license: {name}}` per declared license.
fn licenses(declared: &[String]) -> Vec<Value> {
    let mapped: Vec<_> = declared.iter().map(|license| spdx_license(license)).collect();
    if mapped.iter().all(|license| license.single_id) {
        let ids: BTreeSet<&str> = mapped.iter().map(|license| license.expression.as_str()).collect();
        return ids.into_iter().map(|id| json!({"license": {"id": id}})).collect();
    }
    if mapped.iter().all(|license| license.refs.is_empty())
        && let Some(license) = super::license::combined(declared)
    {
        return vec![json!({"expression": license.expression})];
    }
    mapped
        .iter()
        .zip(declared)
        .map(|(license, name)| {
            if license.single_id {
                json!({"license": {"id": license.expression}})
            } else {
                json!({"license": {"name": name}})
            }
        })
        .collect()
}

/// `wanted`, or `wanted#<n>` when already used.
fn unique_ref(used: &mut BTreeSet<String>, wanted: &str) -> String {
    let mut id = wanted.to_string();
    let mut n = 1;
    while !used.insert(id.clone()) {
        n += 1;
        id = format!("{wanted}#{n}");
    }
    id
}

/// `urn:uuid:…` from the SHA-256 of the digest: the first 16 bytes with the version (5)
/// and variant (RFC 4122) bits set, so the same image always gets the same serial.
fn serial_number(digest: &str) -> String {
    let hash = Sha256::digest(format!("rebake:cyclonedx:{digest}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_is_a_stable_v5_uuid() {
        let serial = serial_number("sha256:0123");
        assert_eq!(serial, serial_number("sha256:0123"));
        assert_ne!(serial, serial_number("sha256:0124"));
        let uuid = serial.strip_prefix("urn:uuid:").unwrap_or_default();
        let parts: Vec<&str> = uuid.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('5'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn license_choices() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            licenses(&s(&["MIT", "zlib"])),
            [json!({"license": {"id": "MIT"}}), json!({"license": {"id": "Zlib"}})]
        );
        assert_eq!(
            licenses(&s(&["GPL-2+ or MIT", "Zlib"])),
            [json!({"expression": "(GPL-2.0-or-later OR MIT) AND Zlib"})]
        );
        assert_eq!(
            licenses(&s(&["public-domain", "Zlib"])),
            [
                json!({"license": {"name": "public-domain"}}),
                json!({"license": {"id": "Zlib"}})
            ]
        );
        assert!(licenses(&[]).is_empty());
    }
}
