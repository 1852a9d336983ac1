//! Nothing accepted is lost: with NATS down the ingress answers 503, the registry keeps
//! resending its notification, and once NATS is back the cascade completes.

use std::time::Duration;

use anyhow::{Result, ensure};
use rebake_e2e::Sandbox;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_outage_delays_the_cascade_and_loses_nothing() -> Result<()> {
    let mut sandbox = Sandbox::start("e2eoutage").await?;
    sandbox.nats.kill().await;
    let base = sandbox.push_base("v1", "during-outage").await?;
    // The registry's notification meets a 503 (NATS down) and is retried by the registry.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready = reqwest::get(format!("{}/readyz", sandbox.ingress_url)).await?.status();
    ensure!(ready == 503, "readyz answered {ready} with NATS down");
    sandbox.nats.restart().await?;
    sandbox.wait_first_cascade(&base).await?;
    sandbox.stop().await;
    Ok(())
}
