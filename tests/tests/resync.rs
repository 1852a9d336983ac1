//! Level-triggered: with every registry notification lost, the periodic resync still sees the
//! new base and the cascade still runs, in order.

use anyhow::{Result, ensure};
use rebake_e2e::{Options, Sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_notification_only_delays_the_cascade() -> Result<()> {
    let sandbox = Sandbox::start_with(
        "e2eresync",
        Options {
            notifications: false,
            resync_interval: "1s".to_string(),
            ..Options::default()
        },
    )
    .await?;
    let base = sandbox.push_base("v1", "quiet").await?;
    sandbox.wait_first_cascade(&base).await?;
    let app_build = sandbox.builds_of("app").await?.pop().expect("app was built");
    ensure!(
        app_build.causes.first().map(|c| c.kind.as_str()) == Some("resync"),
        "causes {:?}",
        app_build.causes
    );
    sandbox.stop().await;
    Ok(())
}
