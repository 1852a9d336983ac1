//! Key handling end to end: a cascade signed with a cosign-encrypted key whose password
//! comes from a file, the password from the environment too, and no key material or
//! password anywhere in the logs (every level), the build records or config errors.

use std::{
    collections::{HashMap, HashSet},
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::{Result, ensure};
use rebake::keys::KeyCommand;
use rebake_e2e::{Options, Sandbox};
use sigstore::crypto::SigningScheme;
use sigstore::crypto::signing_key::{COSIGN_PRIVATE_KEY_PEM_LABEL, SIGSTORE_PRIVATE_KEY_PEM_LABEL};

const PASSWORD: &str = "correct-horse-battery-staple-7Q";
const WRONG_PASSWORD: &str = "wrong-horse-battery-staple-9Z";

/// Everything written by every `tracing` event and span of this process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Installs the process-wide subscriber (every level, every target) before anything
    /// else does: the sandbox's `init_test_tracing` then finds one installed and backs off.
    fn install() -> Self {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("no subscriber is installed before this test's");
        captured
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer lock")).into_owned()
    }
}

/// What must never be shown: the passwords, and any 16 characters in a row of a private key
/// PEM's base64 body (the encrypted file and the decrypted PKCS#8).
struct Secrets {
    words: Vec<String>,
    windows: HashSet<[u8; 16]>,
}

impl Secrets {
    fn new(words: &[&str], pems: &[&str]) -> Self {
        let mut windows = HashSet::new();
        for pem in pems {
            let body: String = pem
                .lines()
                .filter(|line| !line.starts_with("-----"))
                .flat_map(|line| line.trim().chars())
                .collect();
            assert!(body.len() > 100, "a private key body is long");
            for window in body.as_bytes().windows(16) {
                windows.insert(window.try_into().expect("16 bytes"));
            }
        }
        Self {
            words: words.iter().map(ToString::to_string).collect(),
            windows,
        }
    }

    fn assert_absent(&self, haystack: &str, what: &str) -> Result<()> {
        for word in &self.words {
            ensure!(!haystack.contains(word.as_str()), "a password appears in {what}");
        }
        if let Some(position) = haystack
            .as_bytes()
            .windows(16)
            .position(|window| self.windows.contains(window))
        {
            let start = position.saturating_sub(80);
            let context: String = haystack[start..].chars().take(200).collect();
            anyhow::bail!("private key material appears in {what} at byte {position}: …{context}…");
        }
        Ok(())
    }
}

struct Key {
    encrypted_pem: String,
    plain_pem: String,
    public_pem: String,
    dir: tempfile::TempDir,
}

impl Key {
    /// A P-256 key pair, the private half in cosign's encrypted format (scrypt +
    /// secretbox, `ENCRYPTED COSIGN PRIVATE KEY`, what `cosign generate-key-pair` writes),
    /// and the password in a file with a trailing newline, as `echo` writes it.
    fn generate() -> Result<Self> {
        let pair = SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()?
            .to_sigstore_keypair()?;
        let encrypted_pem = pair
            .private_key_to_encrypted_pem(PASSWORD.as_bytes())?
            .replace(SIGSTORE_PRIVATE_KEY_PEM_LABEL, COSIGN_PRIVATE_KEY_PEM_LABEL);
        let key = Key {
            encrypted_pem,
            plain_pem: pair.private_key_to_pem()?.to_string(),
            public_pem: pair.public_key_to_pem()?.replace("\r\n", "\n"),
            dir: tempfile::tempdir()?,
        };
        std::fs::write(key.path("cosign.key"), &key.encrypted_pem)?;
        std::fs::write(key.path("cosign.password"), format!("{PASSWORD}\n"))?;
        std::fs::write(key.path("wrong.password"), WRONG_PASSWORD)?;
        Ok(key)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn secrets(&self) -> Secrets {
        Secrets::new(&[PASSWORD, WRONG_PASSWORD], &[&self.encrypted_pem, &self.plain_pem])
    }
}

/// A config with only a `signer:` section (`password` as given), written next to the key.
fn signer_config(key: &Key, name: &str, password: &str) -> Result<(PathBuf, rebake_config::Config)> {
    let path = key.path(name);
    std::fs::write(
        &path,
        format!(
            "version: 1\nsigner:\n  key: {{ file: {} }}\n  password: {password}\n",
            key.path("cosign.key").display()
        ),
    )?;
    let config = rebake_config::Config::load(&path, &HashMap::new())?;
    Ok((path, config))
}

/// The error of starting the signer with `config`, rendered every way it may be shown.
async fn start_error(config: &rebake_config::Config, env: &HashMap<String, String>) -> String {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let error = rebake::start(&[rebake::Service::Signer], config, env, shutdown, tracker)
        .await
        .expect_err("the signer does not start");
    format!("{error}\n{error:#}\n{error:?}")
}

fn public(key: Option<PathBuf>, password_env: Option<&str>, password_file: Option<PathBuf>) -> KeyCommand {
    KeyCommand::Public {
        key,
        password_env: password_env.map(str::to_string),
        password_file,
        all: false,
    }
}

/// Passwords from env and file, right and wrong, through the config and `rebake key public`.
async fn passwords_from_env_and_file(key: &Key, secrets: &Secrets) -> Result<()> {
    let no_env = HashMap::new();
    let env = HashMap::from([("COSIGN_PASSWORD".to_string(), PASSWORD.to_string())]);
    let wrong_env = HashMap::from([("COSIGN_PASSWORD".to_string(), WRONG_PASSWORD.to_string())]);
    let by_env = "{ env: COSIGN_PASSWORD }";
    let by_file = format!("{{ file: {} }}", key.path("cosign.password").display());
    let by_wrong_file = format!("{{ file: {} }}", key.path("wrong.password").display());

    // Right password, from the environment and from a file.
    let (env_config_path, env_config) = signer_config(key, "env.yaml", by_env)?;
    let (file_config_path, file_config) = signer_config(key, "file.yaml", &by_file)?;
    for (config, env) in [(&env_config, &env), (&file_config, &no_env)] {
        let loaded = rebake::keys::signer_key(config, env)?;
        ensure!(loaded.public_key_pem()?.replace("\r\n", "\n") == key.public_pem);
    }
    ensure!(rebake::keys::output(public(None, None, None), Some(&env_config_path), &env)? == key.public_pem);
    ensure!(rebake::keys::output(public(None, None, None), Some(&file_config_path), &no_env)? == key.public_pem);
    let key_file = Some(key.path("cosign.key"));
    ensure!(
        rebake::keys::output(public(key_file.clone(), Some("COSIGN_PASSWORD"), None), None, &env)? == key.public_pem
    );
    ensure!(
        rebake::keys::output(
            public(key_file.clone(), None, Some(key.path("cosign.password"))),
            None,
            &no_env
        )? == key.public_pem
    );

    // Wrong or missing passwords: a clear error naming where the password came from, and
    // neither password nor key in it.
    let (_, wrong_file_config) = signer_config(key, "wrong-file.yaml", &by_wrong_file)?;
    let errors = [
        (start_error(&wrong_file_config, &no_env).await, "wrong password"),
        (start_error(&env_config, &wrong_env).await, "wrong password"),
        (start_error(&env_config, &no_env).await, "COSIGN_PASSWORD is not set"),
        (
            format!(
                "{:#}",
                rebake::keys::output(
                    public(key_file.clone(), Some("COSIGN_PASSWORD"), None),
                    None,
                    &wrong_env
                )
                .unwrap_err()
            ),
            "wrong password",
        ),
        (
            format!(
                "{:#}",
                rebake::keys::output(public(key_file, None, None), None, &no_env).unwrap_err()
            ),
            "no password",
        ),
    ];
    for (error, expected) in &errors {
        ensure!(error.contains(expected), "{expected:?} not in {error}");
        secrets.assert_absent(error, "a key loading error")?;
    }
    let first = &errors[0].0;
    ensure!(first.contains("signer.key"), "{first}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encrypted_key_with_a_password_file_signs_a_cascade_and_never_leaks() -> Result<()> {
    let logs = Captured::install();
    let key = Key::generate()?;
    let secrets = key.secrets();

    passwords_from_env_and_file(&key, &secrets).await?;

    let sandbox = Sandbox::start_with(
        "secrets",
        Options {
            signer: Some(format!(
                "  key: {{ file: {} }}\n  password: {{ file: {} }}\n",
                key.path("cosign.key").display(),
                key.path("cosign.password").display()
            )),
            ..Default::default()
        },
    )
    .await?;
    let base = sandbox.push_base("v1", "base one").await?;
    let (app, child) = sandbox.wait_first_cascade(&base).await?;

    // Signed with the encrypted key: its public half verifies both signatures.
    let public_key = rebake_signer::VerifyingKey::from_pem(key.public_pem.as_bytes())?;
    let signer = rebake_signer::SignerKey::from_pem(key.encrypted_pem.as_bytes(), Some(PASSWORD.as_bytes()))?;
    ensure!(signer.key_id() == public_key.key_id());
    for (repository, digest) in [("apps/app", &app), ("apps/child", &child)] {
        let target = rebake_oci::ImageRef::parse(&format!("{}/{repository}", sandbox.host))?;
        ensure!(
            rebake_signer::stored_signature_is_valid(&sandbox.registry, &signer, &target, digest).await?,
            "{repository}@{digest} is not signed with the configured key"
        );
    }

    // What the API serves: build records and image states.
    for image in ["app", "child"] {
        let records = serde_json::to_string(&sandbox.builds_of(image).await?)?;
        secrets.assert_absent(&records, &format!("the build records of {image}"))?;
        let state = format!("{:?}", sandbox.image_state(image).await?);
        secrets.assert_absent(&state, &format!("the image state of {image}"))?;
    }
    sandbox.stop().await;

    let text = logs.text();
    // The capture is the process' subscriber, and saw the whole run down to TRACE.
    for expected in ["signing key loaded", public_key.key_id(), "build staged", "TRACE"] {
        ensure!(text.contains(expected), "{expected:?} is not in the captured logs");
    }
    secrets.assert_absent(&text, "the logs")?;
    Ok(())
}
