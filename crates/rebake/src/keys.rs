//! Keys: loading the signing key and the public keys the config names, and `rebake key`.
//!
//! - The signing key (`signer.key`, a secret) is a PKCS#8 PEM or cosign's encrypted PEM;
//!   the password of an encrypted key is `signer.password` (a secret: `{ file }` or
//!   `{ env }`). Public keys of `signer.verify_keys` are accepted as ours besides the
//!   signing key's (rotation).
//! - Public keys of `registries.verify` are what base images must be signed by.
//! - `rebake key public` prints the signing key's public half (PEM), from the config or
//!   from a key file.
//!
//! Nothing here ever puts key material or a password in an error or a log line: errors name
//! the config key, the file or the variable, and say what is wrong in fixed words.

use std::{collections::HashMap, path::PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use rebake_config::{Config, Secret};
use rebake_signer::{SignerKey, VerifyingKey, VerifyingKeys};

/// `rebake key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the public key (PEM) of the signing key: the config's `signer.key` (decrypted
    /// with `signer.password`), or `--key FILE`. What `cosign verify --key`, `rebake verify`
    /// and other installations' `base_verify` take.
    Public {
        /// A private key file (PKCS#8 PEM or cosign's encrypted PEM) instead of the config's
        /// `signer.key`.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Environment variable holding the password of an encrypted `--key`.
        #[arg(long, requires = "key", conflicts_with = "password_file")]
        password_env: Option<String>,
        /// File holding the password of an encrypted `--key` (trailing newline trimmed).
        #[arg(long, requires = "key")]
        password_file: Option<PathBuf>,
        /// Also print the public keys of `signer.verify_keys` (every key whose signatures
        /// are accepted during a rotation), signing key first.
        #[arg(long, conflicts_with = "key")]
        all: bool,
    },
}

/// Runs `rebake key …`; `config_path` is `--config`/`REBAKE_CONFIG`. Prints to stdout.
pub fn run(command: KeyCommand, config_path: Option<&PathBuf>, env: &HashMap<String, String>) -> Result<()> {
    print!("{}", output(command, config_path, env)?);
    Ok(())
}

/// What `rebake key …` prints (PEM with `\n` line ends, whatever the library wrote).
pub fn output(command: KeyCommand, config_path: Option<&PathBuf>, env: &HashMap<String, String>) -> Result<String> {
    Ok(raw_output(command, config_path, env)?.replace("\r\n", "\n"))
}

fn raw_output(command: KeyCommand, config_path: Option<&PathBuf>, env: &HashMap<String, String>) -> Result<String> {
    match command {
        KeyCommand::Public {
            key: Some(path),
            password_env,
            password_file,
            all: _,
        } => {
            let pem =
                std::fs::read(&path).with_context(|| format!("failed to read the key file {}", path.display()))?;
            let password = match (password_env, password_file) {
                (Some(name), _) => Some(Secret::Env(name).read("--password-env", env)?),
                (None, Some(file)) => Some(Secret::File(file).read("--password-file", env)?),
                (None, None) => None,
            };
            let key = SignerKey::from_pem(&pem, password.as_deref())
                .with_context(|| format!("failed to load the key {}", path.display()))?;
            Ok(key.public_key_pem()?)
        }
        KeyCommand::Public { key: None, all, .. } => {
            let config = crate::cli::load_config(config_path, env)?;
            let key = signer_key(&config, env)?;
            if !all {
                return Ok(key.public_key_pem()?);
            }
            let keys = key.verifying_keys()?;
            Ok(keys.keys().iter().map(|key| key.pem()).collect())
        }
    }
}

/// The signing key of `signer.key` (decrypted with `signer.password`), accepting the
/// public keys of `signer.verify_keys` as well.
pub fn signer_key(config: &Config, env: &HashMap<String, String>) -> Result<SignerKey> {
    let Some(key_secret) = config.signer.key.as_ref() else {
        bail!("signer.key is not set: the signer needs an ECDSA P-256 private key");
    };
    let pem = key_secret.read("signer.key", env)?;
    let password = config
        .signer
        .password
        .as_ref()
        .map(|secret| secret.read("signer.password", env))
        .transpose()?;
    let key = SignerKey::from_pem(&pem, password.as_deref()).context("failed to load signer.key")?;
    let verify_keys = public_keys(&config.signer.verify_keys, "signer.verify_keys")?;
    key.with_verify_keys(&verify_keys)
        .context("failed to load signer.verify_keys")
}

/// The public keys in `files` (PEM `PUBLIC KEY`, ECDSA P-256); `config_key` names them in
/// errors.
pub fn public_keys(files: &[PathBuf], config_key: &str) -> Result<VerifyingKeys> {
    let mut keys = VerifyingKeys::default();
    for file in files {
        let pem = std::fs::read(file).with_context(|| format!("{config_key}: failed to read {}", file.display()))?;
        let key = VerifyingKey::from_pem(&pem)
            .with_context(|| format!("{config_key}: {} is not a usable public key", file.display()))?;
        keys.push(key);
    }
    Ok(keys)
}

/// `registries.verify` with every rule's keys loaded, for the builder.
pub fn base_trust(config: &Config) -> Result<rebake_builder::trust::BaseTrust> {
    let rules = config
        .registries
        .verify
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let keys = public_keys(&rule.keys, &format!("registries.verify[{index}].keys"))?;
            Ok((rule.clone(), keys))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(rebake_builder::trust::BaseTrust::from_rules(rules)?)
}

/// Checks that every catalog image's `base_verify` keys are usable public keys, so a bad
/// key fails start-up instead of every build of that image.
pub fn check_catalog_keys(catalog: &rebake_config::Catalog) -> Result<()> {
    for spec in catalog.images() {
        let Some(verify) = &spec.base_verify else {
            continue;
        };
        for pem in verify.key_pems() {
            VerifyingKeys::from_pems([pem.as_bytes()])
                .with_context(|| format!("image {}: base_verify.keys has a key that is not usable", spec.name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command};

    use super::*;

    fn openssl(dir: &Path, script: &str) {
        let output = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    fn config(dir: &Path, signer: &str) -> PathBuf {
        let path = dir.join("rebake.yaml");
        std::fs::write(&path, format!("version: 1\nsigner:\n{signer}")).unwrap();
        path
    }

    #[test]
    fn public_key_from_the_config_and_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            "openssl ecparam -genkey -name prime256v1 -noout | openssl pkcs8 -topk8 -nocrypt -out new.key \
             && openssl ec -in new.key -pubout -out new.pub \
             && openssl ecparam -genkey -name prime256v1 -noout | openssl pkcs8 -topk8 -nocrypt -out old.key \
             && openssl ec -in old.key -pubout -out old.pub",
        );
        let expected = std::fs::read_to_string(dir.path().join("new.pub")).unwrap();
        let old = std::fs::read_to_string(dir.path().join("old.pub")).unwrap();
        let env = HashMap::new();
        // `verify_keys` paths are relative to the config file.
        let path = config(
            dir.path(),
            &format!(
                "  key: {{ file: {} }}\n  verify_keys: [old.pub]\n",
                dir.path().join("new.key").display()
            ),
        );
        let public = |all| KeyCommand::Public {
            key: None,
            password_env: None,
            password_file: None,
            all,
        };
        assert_eq!(output(public(false), Some(&path), &env).unwrap(), expected);
        assert_eq!(
            output(public(true), Some(&path), &env).unwrap(),
            format!("{expected}{old}")
        );
        let from_file = KeyCommand::Public {
            key: Some(dir.path().join("new.key")),
            password_env: None,
            password_file: None,
            all: false,
        };
        assert_eq!(output(from_file, None, &env).unwrap(), expected);
    }

    #[test]
    fn errors_name_the_key_not_its_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.pub"), "hunter2-not-a-key").unwrap();
        let error = public_keys(&[dir.path().join("bad.pub")], "signer.verify_keys").unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("signer.verify_keys") && text.contains("bad.pub"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        let error = public_keys(&[dir.path().join("missing.pub")], "registries.verify[0].keys").unwrap_err();
        assert!(format!("{error:#}").contains("registries.verify[0].keys"), "{error:#}");
    }
}
