//! The binary's edges: version, usage errors, config errors exit 64 naming the key.

use std::process::Command;

fn rebake() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rebake"))
}

#[test]
fn version_prints_the_version() {
    let output = rebake().arg("version").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with(&format!("rebake {}", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn missing_config_is_a_usage_error() {
    let output = rebake().env_remove("REBAKE_CONFIG").arg("up").output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config"));
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rebake.yaml");
    std::fs::write(&path, "version: 1\nbuilder:\n  wrokers: 3\n").unwrap();
    let output = rebake()
        .arg("--config")
        .arg(&path)
        .args(["serve", "builder"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("wrokers") && stderr.contains("rebake.yaml:3"),
        "{stderr}"
    );
}

#[test]
fn unknown_service_is_rejected_by_the_parser() {
    let output = rebake().args(["serve", "compiler"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown service"));
}

#[test]
fn env_overrides_are_validated_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rebake.yaml");
    std::fs::write(&path, "version: 1\n").unwrap();
    let output = rebake()
        .arg("--config")
        .arg(&path)
        .env("REBAKE_INGRESS_LISTEN", "not-an-address")
        .args(["serve", "ingress"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ingress.listen"));
}
