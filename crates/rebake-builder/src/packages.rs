//! The package layer of an image built from a feed: the resolved packages of one platform,
//! fetched (checksum-verified, cached on disk by checksum), unpacked and merged into one
//! layer's entries with the package database written, plus the spec's accounts and
//! `os-release`.
//!
//! One layer for all packages, not one per package group: measured on the test image
//! (about a dozen Debian packages), a single layer rebuilt from a warm cache costs less than
//! pushing several small ones, and a package change rebuilds the image anyway (the dpkg
//! database, which lists every package, lives in the layer that changes). Cross-image reuse
//! comes from children: images built *on* a package image reuse its layer by digest.
//!
//! Maintainer scripts (`preinst`/`postinst`, apk `.post-install`, triggers) are never run;
//! see `rebake_feeds::deb::assemble` and `rebake_feeds::apk::assemble` for what that means.

use futures::{StreamExt, TryStreamExt};
use rebake_config::ImageSpec;
use rebake_events::pb;
use rebake_feeds::{
    fetch::{FeedClient, ResolvedPackage},
    rootfs,
};
use rebake_oci::LayerEntry;

use crate::{BuilderError, Result};

/// How many packages are downloaded at once.
const PARALLEL_DOWNLOADS: usize = 4;

/// The package format of a resolved package, from its download URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Deb,
    Apk,
}

fn format_of(package: &pb::ResolvedPackage) -> Result<Format> {
    let path = package.url.split(['?', '#']).next().unwrap_or_default();
    if path.ends_with(".deb") {
        Ok(Format::Deb)
    } else if path.ends_with(".apk") {
        Ok(Format::Apk)
    } else {
        Err(BuilderError::InvalidRequest {
            reason: format!("package {} has no .deb or .apk URL: {}", package.name, package.url),
        })
    }
}

/// Fetches and unpacks `packages` (one platform's set, sorted by name) and returns the
/// entries of the package layer, with accounts and os-release from `spec` on top.
pub async fn layer_entries(
    client: &FeedClient,
    spec: &ImageSpec,
    packages: &[pb::ResolvedPackage],
) -> Result<Vec<LayerEntry>> {
    let formats: Vec<Format> = packages.iter().map(format_of).collect::<Result<_>>()?;
    let format = formats.first().copied();
    if formats.iter().any(|other| Some(*other) != format) {
        return Err(BuilderError::InvalidRequest {
            reason: "a package set mixes .deb and .apk packages".to_string(),
        });
    }
    let wanted: Vec<ResolvedPackage> = packages
        .iter()
        .map(|package| ResolvedPackage {
            name: package.name.clone(),
            version: package.version.clone(),
            architecture: package.architecture.clone(),
            sha256: package.checksum.clone(),
            size: package.size.max(0) as u64,
            url: package.url.clone(),
        })
        .collect();
    let downloads: Vec<Vec<u8>> = futures::stream::iter(wanted.into_iter().map(|wanted| {
        let client = client.clone();
        async move {
            // Debian packages are kept decompressed once verified: xz decoding is most of
            // the cost of reading a .deb.
            let fetched = match format {
                Some(Format::Deb) => client.fetch_decompressed_deb(&wanted).await,
                _ => client.fetch_package(&wanted).await,
            };
            fetched.map_err(|error| BuilderError::Package {
                package: format!("{} {}", wanted.name, wanted.version),
                reason: rebake_bus::error_chain(&error),
                transient: error.is_transient(),
            })
        }
    }))
    .buffered(PARALLEL_DOWNLOADS)
    .try_collect()
    .await?;
    let spec = spec.clone();
    let names: Vec<String> = packages.iter().map(|package| package.name.clone()).collect();
    // Decompression and merging are CPU work: keep them off the async workers.
    tokio::task::spawn_blocking(move || assemble(format, &spec, &names, &downloads))
        .await
        .map_err(|error| BuilderError::InvalidRequest {
            reason: format!("package assembly panicked: {error}"),
        })?
}

fn assemble(
    format: Option<Format>,
    spec: &ImageSpec,
    names: &[String],
    downloads: &[Vec<u8>],
) -> Result<Vec<LayerEntry>> {
    let package_error = |package: &str, reason: String| BuilderError::Package {
        package: package.to_string(),
        reason,
        transient: false,
    };
    let mut entries = match format {
        None => Vec::new(),
        Some(Format::Deb) => {
            let debs = read_parallel(names, downloads, |bytes| {
                rebake_feeds::deb::package::read_deb(bytes).map_err(|error| error.to_string())
            })
            .map_err(|(name, reason)| package_error(name, reason))?;
            rebake_feeds::deb::assemble::assemble(&debs)
                .map_err(|error| package_error("(assembly)", error.to_string()))?
        }
        Some(Format::Apk) => {
            let apks = read_parallel(names, downloads, |bytes| {
                rebake_feeds::apk::package::read_apk(bytes).map_err(|error| error.to_string())
            })
            .map_err(|(name, reason)| package_error(name, reason))?;
            let world = spec
                .packages
                .as_ref()
                .map(|packages| packages.install.clone())
                .unwrap_or_default();
            rebake_feeds::apk::assemble::assemble(&apks, &world)
                .map_err(|error| package_error("(assembly)", error.to_string()))?
        }
    };
    let mut overrides = Vec::new();
    if let Some(accounts) = &spec.accounts {
        let shipped = |path: &str| {
            entries
                .iter()
                .find(|entry| entry.path.trim_start_matches('/') == path)
                .and_then(|entry| match &entry.kind {
                    rebake_oci::LayerEntryKind::File { content, .. } => String::from_utf8(content.to_vec()).ok(),
                    _ => None,
                })
        };
        let passwd = shipped("etc/passwd");
        let group = shipped("etc/group");
        overrides.extend(
            rootfs::account_entries(accounts, passwd.as_deref(), group.as_deref())
                .map_err(|error| package_error("(accounts)", error.to_string()))?,
        );
    }
    if !spec.os_release.is_empty() {
        overrides.extend(
            rootfs::os_release_entries(&spec.os_release)
                .map_err(|error| package_error("(os-release)", error.to_string()))?,
        );
    }
    if !overrides.is_empty() {
        entries = rootfs::overlay(entries, overrides);
    }
    Ok(entries)
}

/// Reads every package (decompression dominates) on as many threads as there are cores,
/// each taking the next unread package, and returns them in input order. An error names
/// the package.
fn read_parallel<'a, T: Send>(
    names: &'a [String],
    downloads: &[Vec<u8>],
    read: impl Fn(&[u8]) -> std::result::Result<T, String> + Sync,
) -> std::result::Result<Vec<T>, (&'a str, String)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(downloads.len().max(1));
    let next = AtomicUsize::new(0);
    let (next, read) = (&next, &read);
    let mut results: Vec<(usize, std::result::Result<T, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(bytes) = downloads.get(index) else { break };
                        done.push((index, read(bytes)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| vec![(usize::MAX, Err("reader thread panicked".to_string()))])
            })
            .collect()
    });
    results.sort_by_key(|(index, _)| *index);
    let mut out = Vec::with_capacity(downloads.len());
    for (index, result) in results {
        let name = names.get(index).map_or("(unknown)", String::as_str);
        out.push(result.map_err(|reason| (name, reason))?);
    }
    Ok(out)
}
