//! The control API is usable from other languages: a Python client whose stubs are generated
//! from the `.proto` files alone (`tests/python/rebake_client.py`, `grpcio-tools`) lists the
//! images of a real cascade and follows `WatchEvents` to the app's `image.published`.
//!
//! Needs `python3` with `grpcio` and `grpcio-tools`. Without them the test is skipped with a
//! notice, except under CI (`CI` set), where it fails: `.ci/run` installs them.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use rebake_e2e::Sandbox;
use serde_json::Value;

/// Whether `python3` can import `grpc_tools` (and `grpc`).
async fn python_has_grpc_tools() -> bool {
    tokio::process::Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_python_client_generated_from_the_protos_lists_images_and_watches_events() -> Result<()> {
    if !python_has_grpc_tools().await {
        if std::env::var_os("CI").is_some() {
            bail!("python3 cannot import grpc_tools: install it with `python3 -m pip install grpcio grpcio-tools`");
        }
        eprintln!(
            "SKIPPED python_client: python3 cannot import grpc_tools (`python3 -m pip install grpcio grpcio-tools`)"
        );
        return Ok(());
    }

    let sandbox = Sandbox::start("e2epython").await?;
    let base = sandbox.push_base("v1", "python").await?;
    let (app, child) = sandbox.wait_first_cascade(&base).await?;

    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = repository.join("tests/python/rebake_client.py");
    let generated = tempfile::tempdir()?;
    let endpoint = sandbox.control_url.trim_start_matches("http://").to_string();
    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["--endpoint", &endpoint, "--published-image", "app", "--timeout", "60"])
        .arg("--out")
        .arg(generated.path())
        .arg("--proto-root")
        .arg(repository.join("proto"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .context("the python client did not finish within 120 s")?
        .context("failed to run python3")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("--- python client stdout ---\n{stdout}--- python client stderr ---\n{stderr}");
    ensure!(
        output.status.success(),
        "the python client failed ({}): {stderr}",
        output.status
    );

    // The generated code came from the .proto files.
    ensure!(
        generated.path().join("rebake/control/v1/control_pb2_grpc.py").is_file(),
        "no generated stubs in {}",
        generated.path().display()
    );

    let lines: Vec<Value> = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).with_context(|| format!("not a JSON line: {line}")))
        .collect::<Result<_>>()?;
    let images: Vec<&Value> = lines
        .iter()
        .filter(|line| line["rpc"] == "ListImages")
        .map(|line| &line["image"])
        .collect();
    let events: Vec<&Value> = lines
        .iter()
        .filter(|line| line["rpc"] == "WatchEvents")
        .map(|line| &line["event"])
        .collect();

    let image = |name: &str| images.iter().find(|image| image["name"] == name).copied();
    let app_image = image("app").context("ListImages has no `app`")?;
    ensure!(app_image["status"] == "published", "app: {app_image}");
    ensure!(app_image["published_digest"] == app.as_str(), "app: {app_image}");
    let child_image = image("child").context("ListImages has no `child`")?;
    ensure!(child_image["status"] == "published", "child: {child_image}");
    ensure!(
        child_image["published_digest"] == child.as_str(),
        "child: {child_image}"
    );
    let names: Vec<&str> = images.iter().filter_map(|image| image["name"].as_str()).collect();
    ensure!(
        names.windows(2).all(|pair| pair[0] < pair[1]),
        "sorted by name, once each: {names:?}"
    );

    let published = events
        .iter()
        .find(|event| event["kind"] == "image.published" && event["image"] == "app")
        .context("WatchEvents returned no image.published for app")?;
    ensure!(published["digest"] == app.as_str(), "published event: {published}");
    // uint64 is a JSON string in the proto3 JSON mapping.
    let sequences: Vec<u64> = events
        .iter()
        .map(|event| event["sequence"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0))
        .collect();
    ensure!(
        sequences.first() == Some(&1) && sequences.windows(2).all(|pair| pair[0] < pair[1]),
        "replayed from sequence 1, in order: {sequences:?}"
    );

    sandbox.stop().await;
    Ok(())
}
