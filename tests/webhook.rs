//! The control platform's webhook against a real HTTP receiver on loopback: order,
//! numbering and signatures, retries of failed deliveries, refusals, a platform that
//! hangs or is not there, and the bounded queue dropping its oldest notices.

mod common;

use std::time::Duration;

use common::webhook::Receiver;
use recbox::link::frame::{text, Fault, FaultKind, FaultTarget, Stats};
use recbox::sfu::webhook::{signature, Target, Webhook, WebhookConfig};
use recbox::sfu::Notice;

const PATIENCE: Duration = Duration::from_secs(20);

fn config(url: &str) -> WebhookConfig {
    WebhookConfig {
        timeout: Duration::from_millis(300),
        ..WebhookConfig::new(Target::parse(url).unwrap())
    }
}

fn fault(kind: FaultKind) -> Notice {
    Notice::Fault(Fault {
        recording: text("rec-1"),
        kind,
        target: FaultTarget::Storage,
        detail: text("No space left on device (os error 28)"),
        at: 1_700_000_000_000,
    })
}

fn stats(duration_ms: u64) -> Notice {
    Notice::Stats {
        stats: Stats {
            file_bytes: 1000,
            index_bytes: 10,
            duration_ms,
            free_bytes: 1 << 30,
            at: 1_700_000_000_500,
        },
        faults: vec![FaultKind::DiskFull],
    }
}

#[tokio::test]
async fn notices_arrive_in_order_numbered_and_signed() {
    let mut platform = Receiver::start().await;
    let webhook = Webhook::spawn(
        WebhookConfig {
            secret: Some("platform-secret".into()),
            ..config(&platform.url("/hooks/recbox"))
        },
        "box-7",
        "room-a",
    );
    webhook.post(&fault(FaultKind::DiskFull));
    webhook.post(&Notice::Cleared {
        kind: FaultKind::DiskFull,
        target: FaultTarget::Storage,
        at: 1_700_000_001_000,
    });
    webhook.post(&stats(5000));
    webhook.finish(PATIENCE).await;
    let got = platform.drain();
    assert_eq!(got.len(), 3, "{got:?}");
    for (seq, r) in got.iter().enumerate() {
        assert_eq!(r.path, "/hooks/recbox");
        assert_eq!(r.json["seq"], seq as u64);
        assert_eq!(
            (r.json["mixer"].as_str(), r.json["room"].as_str()),
            (Some("box-7"), Some("room-a"))
        );
        assert_eq!(
            r.signature.as_deref(),
            Some(signature("platform-secret", &r.body).as_str()),
            "the body as sent is what is signed"
        );
    }
    let kinds: Vec<&str> = got
        .iter()
        .map(|r| r.json["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["disk_full", "cleared", "stats"]);
    assert_eq!(
        got[0].json["text"],
        "Recording problem: the recording disk is full."
    );
    assert_eq!(got[0].json["to"], "terminals");
    assert_eq!(got[1].json["fault"], "disk_full");
    assert_eq!(got[2].json["to"], "control");
    assert_eq!(got[2].json["stats"]["duration_ms"], 5000);
    assert_eq!(got[2].json["faults"], serde_json::json!(["disk_full"]));
}

#[tokio::test]
async fn a_failed_delivery_is_tried_again_and_a_refused_one_is_not() {
    let mut platform = Receiver::start().await;
    platform.answer(&[503, 500, 200, 400]);
    let webhook = Webhook::spawn(config(&platform.url("/h")), "box", "room");
    webhook.post(&fault(FaultKind::LowSpace));
    webhook.post(&stats(1)); // refused with 400
    webhook.post(&stats(2));
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let r = platform.next(PATIENCE).await.expect("a request");
        assert!(r.signature.is_none(), "no secret, no signature");
        seqs.push(r.json["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, [0, 0, 0, 1, 2]);
    webhook.finish(PATIENCE).await;
    assert!(platform.drain().is_empty(), "nothing is delivered twice");
}

#[tokio::test]
async fn a_hanging_or_absent_platform_never_holds_the_mixer_and_the_oldest_notices_go() {
    // A platform that takes the connection and never answers.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hanging.local_addr().unwrap();
    let url = format!("http://{addr}/h");
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let hang = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
            let _ = accepted_tx.send(());
        }
    });
    let webhook = Webhook::spawn(
        WebhookConfig {
            capacity: 3,
            ..config(&url)
        },
        "box",
        "room",
    );
    // On this single-threaded runtime the delivery task has not run yet: the queue
    // holds the newest three of these when it starts.
    for ms in 0..10 {
        webhook.post(&stats(ms));
    }
    for _ in 0..2 {
        tokio::time::timeout(PATIENCE, accepted.recv())
            .await
            .expect("the delivery is tried again after the timeout")
            .unwrap();
    }
    // The platform is gone a while, then comes back on the same port.
    hang.abort();
    let _ = hang.await;
    let mut platform = Receiver::serve(std::net::TcpListener::bind(addr).unwrap());
    let mut got = Vec::new();
    while got.len() < 3 {
        let r = platform
            .next(PATIENCE)
            .await
            .expect("delivered once the platform is back");
        got.push(r.json["stats"]["duration_ms"].as_u64().unwrap());
        assert_eq!(
            r.json["seq"], r.json["stats"]["duration_ms"],
            "seq counts every notice"
        );
    }
    assert_eq!(got, [7, 8, 9], "the oldest seven were dropped");
    webhook.finish(PATIENCE).await;
    assert!(platform.drain().is_empty());
}
