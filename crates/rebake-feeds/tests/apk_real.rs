//! Round trips through real `.apk` / `APKINDEX.tar.gz` bytes: build, read, sign, verify,
//! with `tar` and `openssl` as independent checks.

use std::path::Path;
use std::process::Command;

use rebake_feeds::apk::testing::{build_apk, build_index_tar_gz, sign};
use rebake_feeds::apk::{
    ApkError, ApkVersion, DataEntry, DataKind, PkgInfo, SignatureAlgorithm, parse_apkindex, read_apk,
    read_index_archive, resolve, split_gzip_members, verify_index_signature,
};

fn pkginfo() -> PkgInfo {
    let mut p = PkgInfo::new("hello", ApkVersion::parse("2.12.1-r0").unwrap(), "x86_64");
    p.description = Some("say hello".into());
    p.license = Some("GPL-3.0-or-later".into());
    p.origin = Some("hello".into());
    p.build_date = Some(1_700_000_000);
    p.installed_size = Some(4096);
    p.depends = vec!["so:libc.musl-x86_64.so.1".parse_dep()];
    p.provides = vec![rebake_feeds::apk::ApkProvide::parse("cmd:hello=2.12.1-r0").unwrap()];
    p
}

trait ParseDep {
    fn parse_dep(&self) -> rebake_feeds::apk::ApkDependency;
}
impl ParseDep for &str {
    fn parse_dep(&self) -> rebake_feeds::apk::ApkDependency {
        rebake_feeds::apk::ApkDependency::parse(self).unwrap()
    }
}

fn files() -> Vec<DataEntry> {
    vec![
        DataEntry::dir("usr", 0o755),
        DataEntry::dir("usr/bin", 0o755),
        DataEntry::file("usr/bin/hello", 0o755, b"\x7fELF hello"),
        DataEntry::symlink("usr/bin/hi", "hello"),
        DataEntry::dir("etc", 0o755),
        DataEntry::file("etc/hello.conf", 0o600, b"greeting=hi\n"),
    ]
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Generates an RSA key pair with openssl; `None` when openssl is unavailable.
fn keypair(dir: &Path, name: &str) -> Option<(String, String)> {
    let key = format!("{name}.key");
    let public = format!("{name}.rsa.pub");
    if !openssl(dir, &["genrsa", "-out", &key, "2048"])
        || !openssl(dir, &["rsa", "-in", &key, "-pubout", "-out", &public])
    {
        return None;
    }
    Some((
        std::fs::read_to_string(dir.join(key)).ok()?,
        std::fs::read_to_string(dir.join(public)).ok()?,
    ))
}

#[test]
fn apk_round_trip() {
    let apk = build_apk(&pkginfo(), &files()).unwrap();
    let read = read_apk(&apk).unwrap();
    assert!(read.signature.is_none());
    assert_eq!(read.pkginfo.name, "hello");
    assert_eq!(read.pkginfo.version.as_str(), "2.12.1-r0");
    assert_eq!(read.pkginfo.depends, pkginfo().depends);
    assert!(read.pkginfo.datahash.is_some());
    assert_eq!(read.data, files());
    assert_eq!(read.file_size, apk.len() as u64);
    assert!(read.checksum.starts_with("Q1") && read.checksum.len() == 30);

    let entry = read.installed_db_entry();
    assert!(entry.starts_with(&format!(
        "C:{}\nP:hello\nV:2.12.1-r0\nA:x86_64\nS:{}\n",
        read.checksum,
        apk.len()
    )));
    assert!(entry.contains("\nF:etc\nR:hello.conf\na:0:0:600\nZ:Q1"));
    assert!(entry.contains("\nF:usr/bin\nR:hello\na:0:0:755\nZ:Q1"));
    assert!(entry.ends_with("\n\n"));
}

#[test]
fn apk_datahash_is_checked() {
    let apk = build_apk(&pkginfo(), &files()).unwrap();
    let members = split_gzip_members(&apk).unwrap();
    let mut other = files();
    other.push(DataEntry::file("usr/bin/extra", 0o755, b"x"));
    let other_apk = build_apk(&pkginfo(), &other).unwrap();
    let other_members = split_gzip_members(&other_apk).unwrap();
    // control of the first package, data of the second
    let mut franken = members[0].raw.to_vec();
    franken.extend_from_slice(other_members[1].raw);
    let err = read_apk(&franken).unwrap_err();
    assert!(
        matches!(err, ApkError::Archive(ref m) if m.contains("datahash")),
        "{err}"
    );
    assert!(read_apk(members[0].raw).is_err());
    assert!(read_apk(b"garbage").is_err());
}

#[test]
fn apk_listed_by_tar() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello-2.12.1-r0.apk");
    std::fs::write(&path, build_apk(&pkginfo(), &files()).unwrap()).unwrap();
    let Ok(out) = Command::new("tar").arg("-tzf").arg(&path).output() else {
        eprintln!("tar not available; skipping");
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(
        names,
        [
            ".PKGINFO",
            "usr/",
            "usr/bin/",
            "usr/bin/hello",
            "usr/bin/hi",
            "etc/",
            "etc/hello.conf"
        ]
    );
}

const INDEX: &str = "\
C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=
P:musl
V:1.2.5-r0
A:x86_64
S:400000
I:600000
T:the musl c library
p:so:libc.musl-x86_64.so.1=1

P:hello
V:2.12.1-r0
A:x86_64
D:so:libc.musl-x86_64.so.1
p:cmd:hello=2.12.1-r0
";

#[test]
fn apk_unsigned_index_reads_but_does_not_verify() {
    let tgz = build_index_tar_gz(INDEX, "test repo").unwrap();
    let archive = read_index_archive(&tgz).unwrap();
    assert!(archive.signature.is_none());
    assert_eq!(archive.description.as_deref(), Some("test repo"));
    assert_eq!(archive.index_text, INDEX);
    let err = verify_index_signature(&tgz, &[]).unwrap_err();
    assert!(matches!(err, ApkError::Signature(_)));
}

#[test]
fn apk_signed_index_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let Some((private, public)) = keypair(dir.path(), "test@rebake-1234") else {
        eprintln!("openssl not available; skipping");
        return;
    };
    let Some((_, other_public)) = keypair(dir.path(), "other") else {
        return;
    };
    let unsigned = build_index_tar_gz(INDEX, "test repo").unwrap();
    for alg in [SignatureAlgorithm::RsaSha1, SignatureAlgorithm::RsaSha256] {
        let signed = sign(&unsigned, "test@rebake-1234.rsa.pub", &private, alg).unwrap();
        let archive = read_index_archive(&signed).unwrap();
        let sig = archive.signature.clone().unwrap();
        assert_eq!(sig.algorithm, alg);
        assert_eq!(sig.key_name, "test@rebake-1234.rsa.pub");
        assert_eq!(archive.index_text, INDEX);

        let trusted = [("test@rebake-1234.rsa.pub".to_string(), public.clone())];
        verify_index_signature(&signed, &trusted).unwrap();
        // the name may be given without the .rsa.pub suffix
        verify_index_signature(&signed, &[("test@rebake-1234".into(), public.clone())]).unwrap();
        // right name, wrong key
        let wrong = [("test@rebake-1234.rsa.pub".to_string(), other_public.clone())];
        assert!(matches!(
            verify_index_signature(&signed, &wrong),
            Err(ApkError::Signature(_))
        ));
        // unknown key name
        let unknown = [("other.rsa.pub".to_string(), other_public.clone())];
        assert!(verify_index_signature(&signed, &unknown).is_err());
        // tampered index member: re-sign-free swap of the second member
        let evil = build_index_tar_gz(&INDEX.replace("1.2.5-r0", "6.6.6-r0"), "test repo").unwrap();
        let sig_member = split_gzip_members(&signed).unwrap()[0].raw.to_vec();
        let mut tampered = sig_member.clone();
        tampered.extend_from_slice(&evil);
        assert!(verify_index_signature(&tampered, &trusted).is_err());

        // independent check: openssl verifies our signature over the stored control member
        let members = split_gzip_members(&signed).unwrap();
        std::fs::write(dir.path().join("signed.bin"), members[1].raw).unwrap();
        std::fs::write(dir.path().join("sig.bin"), &sig.signature).unwrap();
        let digest = if alg == SignatureAlgorithm::RsaSha1 {
            "-sha1"
        } else {
            "-sha256"
        };
        assert!(openssl(
            dir.path(),
            &[
                "dgst",
                digest,
                "-verify",
                "test@rebake-1234.rsa.pub",
                "-signature",
                "sig.bin",
                "signed.bin"
            ]
        ));

        let packages = archive.packages().unwrap();
        let set = resolve(&packages, "x86_64", &["hello".into()]).unwrap();
        let ids: Vec<String> = set.iter().map(|p| p.id()).collect();
        assert_eq!(ids, ["hello-2.12.1-r0", "musl-1.2.5-r0"]);
    }
}

#[test]
fn apk_signed_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let Some((private, public)) = keypair(dir.path(), "builder") else {
        eprintln!("openssl not available; skipping");
        return;
    };
    let apk = build_apk(&pkginfo(), &files()).unwrap();
    let signed = sign(&apk, "builder.rsa.pub", &private, SignatureAlgorithm::RsaSha256).unwrap();
    let read = read_apk(&signed).unwrap();
    assert_eq!(read.signature.as_ref().unwrap().key_name, "builder.rsa.pub");
    assert_eq!(read.data, files());
    // the C: checksum covers the control member only, so signing does not change it
    assert_eq!(read.checksum, read_apk(&apk).unwrap().checksum);
    verify_index_signature(&signed, &[("builder".into(), public)]).unwrap();

    // an index entry written from the package parses back
    let p = &read.pkginfo;
    let text = format!(
        "C:{}\nP:{}\nV:{}\nA:{}\nS:{}\nI:{}\nD:{}\n",
        read.checksum,
        p.name,
        p.version,
        p.arch,
        read.file_size,
        p.installed_size.unwrap(),
        p.depends.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" ")
    );
    let parsed = parse_apkindex(&text).unwrap();
    assert_eq!(parsed[0].checksum.as_deref(), Some(read.checksum.as_str()));
    assert!(matches!(read.data[3].kind, DataKind::Symlink(ref t) if t == "hello"));
}

/// Corrupted inputs must produce errors, never panics.
#[test]
fn apk_corrupt_inputs_do_not_panic() {
    let apk = build_apk(&pkginfo(), &files()).unwrap();
    let index = build_index_tar_gz(INDEX, "test repo").unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..400 {
        let base = if round % 2 == 0 { &apk } else { &index };
        let mut bytes = base.clone();
        for _ in 0..(1 + rand() % 4) {
            let i = (rand() as usize) % bytes.len();
            bytes[i] = rand() as u8;
        }
        if round % 5 == 0 {
            bytes.truncate((rand() as usize) % bytes.len());
        }
        let _ = read_apk(&bytes);
        let _ = read_index_archive(&bytes);
        let _ = verify_index_signature(&bytes, &[("k".into(), "not a pem".into())]);
    }
    let mut text = INDEX.as_bytes().to_vec();
    for _ in 0..400 {
        let i = (rand() as usize) % text.len();
        text[i] = b"PVDp:=<>~!_-.r0a \n"[(rand() as usize) % 18];
        let _ = parse_apkindex(&String::from_utf8_lossy(&text));
        if let Ok(pkgs) = parse_apkindex(&String::from_utf8_lossy(&text)) {
            let _ = resolve(&pkgs, "x86_64", &["hello".into()]);
        }
    }
}
