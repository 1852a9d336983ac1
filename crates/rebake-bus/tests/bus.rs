//! The backbone against a real nats-server: idempotent setup, KV on NATS 2.9, publish
//! de-duplication, the pull loop's ack / retry / dead-letter paths.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Result;
use rebake_bus::{Bus, ConsumerSpec, Need, Outcome, run_consumer};
use rebake_events::{Bucket, Envelope, EventKind, ImageName, Names, Queue, pb};
use rebake_testkit::{NatsServer, eventually};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

async fn bus(nats: &NatsServer, prefix: &str) -> Result<Bus> {
    Ok(Bus::connect(&nats.url(), Names::new(prefix)?, "test", Duration::from_secs(2), 3).await?)
}

async fn stream_messages(bus: &Bus, stream: &str) -> Result<u64> {
    let mut stream = bus.jetstream().get_stream(stream).await?;
    Ok(stream.info().await?.state.messages)
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_is_idempotent_and_kv_works_on_this_server() -> Result<()> {
    let nats = NatsServer::start().await?;
    let bus = bus(&nats, "setup").await?;
    bus.ensure(&Need::all()).await?;
    bus.ensure(&Need::all()).await?;
    let kv = bus.kv(Bucket::Images).await?;
    kv.put("app", &serde_json::json!({"n": 1})).await?;
    let updated: Option<serde_json::Value> = kv
        .update("app", |value: Option<serde_json::Value>| {
            let n = value?["n"].as_i64()?;
            Some(serde_json::json!({ "n": n + 1 }))
        })
        .await?;
    assert_eq!(updated, Some(serde_json::json!({"n": 2})));
    assert_eq!(kv.keys().await?, vec!["app".to_string()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_event_is_stored_once() -> Result<()> {
    let nats = NatsServer::start().await?;
    let bus = bus(&nats, "dedup").await?;
    bus.ensure(&[Need::Upstream]).await?;
    let envelope = Envelope::new(EventKind::UpstreamChanged, "same-id".into(), "/test", None, None);
    let event = pb::UpstreamChanged::default();
    let first = bus
        .publish(bus.names().upstream_git_subject(), &envelope, &event)
        .await?;
    let second = bus
        .publish(bus.names().upstream_git_subject(), &envelope, &event)
        .await?;
    assert_eq!(
        first, second,
        "the duplicate is acknowledged with the original sequence"
    );
    assert_eq!(stream_messages(&bus, &bus.names().upstream_stream()).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn work_is_acked_retried_then_dead_lettered() -> Result<()> {
    let nats = NatsServer::start().await?;
    let bus = bus(&nats, "queue").await?;
    bus.ensure(&[Need::Queue(Queue::Scan), Need::DeadLetter]).await?;
    let names = bus.names().clone();
    let attempts = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let last_attempts = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (attempts_in, done_in, last_in) = (attempts.clone(), done.clone(), last_attempts.clone());
    run_consumer(
        bus.clone(),
        ConsumerSpec {
            stream: names.queue_stream(Queue::Scan),
            durable: names.queue_consumer(Queue::Scan),
            filter_subject: String::new(),
            concurrency: 2,
            deliver_all: true,
        },
        shutdown.clone(),
        tracker.clone(),
        move |delivery| {
            let (attempts, done, last) = (attempts_in.clone(), done_in.clone(), last_in.clone());
            async move {
                let event: pb::BuildDone = match delivery.decode() {
                    Ok(event) => event,
                    Err(error) => {
                        return Outcome::Reject {
                            reason: error.to_string(),
                        };
                    }
                };
                if event.image == "flaky" {
                    let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                    if delivery.is_last_attempt() {
                        assert_eq!(attempt, 3, "only the third delivery is the last");
                        last.fetch_add(1, Ordering::SeqCst);
                    }
                    return Outcome::Retry {
                        reason: "still broken".into(),
                        delay: Duration::from_millis(50),
                    };
                }
                done.fetch_add(1, Ordering::SeqCst);
                Outcome::Done
            }
        },
    )
    .await?;
    for image in ["good", "flaky"] {
        let envelope = Envelope::new(EventKind::BuildDone, format!("id-{image}"), "/test", Some(image), None);
        let event = pb::BuildDone {
            image: image.into(),
            ..Default::default()
        };
        bus.publish(
            names.queue_subject(Queue::Scan, &ImageName::new(image)?),
            &envelope,
            &event,
        )
        .await?;
    }
    // A message without CloudEvents headers cannot be understood: dead-lettered at once.
    bus.client()
        .publish(
            names.queue_subject(Queue::Scan, &ImageName::new("garbage")?),
            "not an event".into(),
        )
        .await?;
    eventually("the good message is handled once", || async {
        done.load(Ordering::SeqCst) == 1
    })
    .await?;
    eventually("the flaky message is tried max_deliver times", || async {
        attempts.load(Ordering::SeqCst) == 3
    })
    .await?;
    eventually("two dead letters stored", || async {
        stream_messages(&bus, &names.dead_letter_stream()).await.unwrap_or(0) == 2
    })
    .await?;
    eventually("the work queue is empty", || async {
        stream_messages(&bus, &names.queue_stream(Queue::Scan))
            .await
            .unwrap_or(1)
            == 0
    })
    .await?;
    let dead = bus
        .jetstream()
        .get_stream(names.dead_letter_stream())
        .await?
        .get_raw_message(1)
        .await?;
    let reason = dead
        .headers
        .get("Rebake-Dead-Letter-Reason")
        .map(|v| v.as_str().to_string());
    assert!(reason.is_some(), "dead letters carry the reason");
    assert_eq!(done.load(Ordering::SeqCst), 1, "nothing handled twice");
    assert_eq!(
        last_attempts.load(Ordering::SeqCst),
        1,
        "the last attempt is announced once"
    );
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await?;
    Ok(())
}
