use super::*;
use crate::link::frame::{Fault, FaultKind, FaultTarget};
use serde_json::{json, Value};

fn settings() -> Settings {
    Settings {
        room: 1234,
        display: "recbox".into(),
        creds: Credentials {
            secret: Some("adminpwd".into()),
            admin_key: Some("key".into()),
        },
        textroom: Some(1234),
        forward_host: "127.0.0.1".into(),
        ingest_port: 5004,
        rtcp_port: 5005,
    }
}

/// Drains the outputs: the requests sent (as JSON) and everything else.
fn drain(s: &mut Session) -> (Vec<Value>, Vec<Output>) {
    let (mut sent, mut other) = (Vec::new(), Vec::new());
    while let Some(o) = s.poll_output() {
        match o {
            Output::Send(t) => sent.push(serde_json::from_str(&t).unwrap()),
            o => other.push(o),
        }
    }
    (sent, other)
}

fn answer(s: &mut Session, to: &Value, mut reply: Value, now: Instant) {
    reply["transaction"] = to["transaction"].clone();
    s.on_message(&reply.to_string(), now);
}

fn publisher(id: u64, video_codec: &str) -> Value {
    json!({"id": id, "display": format!("p{id}"), "streams": [
        {"type": "video", "mindex": 0, "mid": "video0", "codec": video_codec},
        {"type": "audio", "mindex": 1, "mid": "audio1", "codec": "opus"}]})
}

fn videoroom(data: Value) -> Value {
    json!({"janus": "event", "sender": 20,
           "plugindata": {"plugin": "janus.plugin.videoroom", "data": data}})
}

fn success(plugin: &str, data: Value) -> Value {
    json!({"janus": "success", "sender": 20, "plugindata": {"plugin": plugin, "data": data}})
}

/// Through create, attach, join (with `publishers` in the room) and the clean-up of
/// stale forwards; returns the roster events of the join.
fn set_up(s: &mut Session, publishers: Value, stale: Value, now: Instant) -> Vec<Output> {
    s.connected(now);
    let (sent, _) = drain(s);
    assert_eq!(sent[0]["janus"], "create");
    answer(
        s,
        &sent[0],
        json!({"janus": "success", "data": {"id": 10}}),
        now,
    );
    let (sent, _) = drain(s);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["plugin"], VIDEOROOM);
    assert_eq!(sent[1]["plugin"], TEXTROOM);
    answer(
        s,
        &sent[0],
        json!({"janus": "success", "data": {"id": 20}}),
        now,
    );
    answer(
        s,
        &sent[1],
        json!({"janus": "success", "data": {"id": 30}}),
        now,
    );
    let (sent, _) = drain(s);
    assert_eq!(sent[0]["body"]["request"], "join");
    assert_eq!(sent[0]["body"]["display"], "recbox");
    answer(s, &sent[0], json!({"janus": "ack"}), now);
    answer(
        s,
        &sent[0],
        videoroom(json!({"videoroom": "joined", "room": 1234, "id": 1, "publishers": publishers})),
        now,
    );
    let (sent, events) = drain(s);
    assert_eq!(sent[0]["body"]["request"], "listforwarders");
    assert!(!s.is_ready());
    answer(
        s,
        &sent[0],
        success(
            VIDEOROOM,
            json!({"videoroom": "forwarders", "room": 1234, "publishers": stale}),
        ),
        now,
    );
    assert!(s.is_ready());
    events
}

fn joined(events: &[Output]) -> Vec<ParticipantInfo> {
    events
        .iter()
        .filter_map(|o| match o {
            Output::Roster(RosterEvent::Joined(p)) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn joins_follows_the_roster_and_forwards_with_its_own_ssrcs() {
    let now = Instant::now();
    let mut s = Session::new(settings(), 1000, now);
    let events = set_up(&mut s, json!([publisher(7, "h264")]), json!([]), now);
    let p = joined(&events);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].id.as_str(), p[0].name.as_str()), ("7", "p7"));
    assert_eq!((p[0].audio.ssrc, p[0].video.ssrc), (1000, 1001));
    assert_eq!(
        (p[0].audio.payload_type, p[0].video.payload_type),
        (111, 96)
    );
    let (_, ready) = drain(&mut s);
    assert_eq!(ready, vec![Output::Ready]);

    s.forward("7", now);
    let (sent, _) = drain(&mut s);
    let body = &sent[0]["body"];
    assert_eq!(body["request"], "rtp_forward");
    assert_eq!(body["publisher_id"], 7);
    assert_eq!(
        (body["secret"].clone(), body["admin_key"].clone()),
        (json!("adminpwd"), json!("key"))
    );
    assert_eq!(
        body["streams"],
        json!([{"mid": "video0", "port": 5004, "ssrc": 1001, "pt": 96, "rtcp_port": 5005},
               {"mid": "audio1", "port": 5004, "ssrc": 1000, "pt": 111}])
    );
    answer(
        &mut s,
        &sent[0],
        success(
            VIDEOROOM,
            json!({"videoroom": "rtp_forward", "publisher_id": 7, "forwarders": [
            {"stream_id": 50, "type": "video", "host": "127.0.0.1", "port": 5004, "local_rtcp_port": 40000},
            {"stream_id": 51, "type": "audio", "host": "127.0.0.1", "port": 5004}]}),
        ),
        now,
    );
    // A keyframe at once for the new forward, and whenever the mixer asks.
    let (_, out) = drain(&mut s);
    let pli = Output::Pli {
        rtcp_port: 40000,
        media_ssrc: 1001,
    };
    assert_eq!(out, vec![pli.clone()]);
    s.request_keyframe("7");
    assert_eq!(drain(&mut s).1, vec![pli]);

    // Another publisher, announced twice: one participant.
    let more = videoroom(json!({"videoroom": "event", "publishers": [publisher(8, "h264")]}));
    s.on_message(&more.to_string(), now);
    s.on_message(&more.to_string(), now);
    let (_, out) = drain(&mut s);
    assert_eq!(joined(&out).len(), 1);
    assert_eq!(joined(&out)[0].audio.ssrc, 1002);

    // Janus says `unpublished` twice, then `leaving`: one Left, its forwards stopped.
    for ev in [
        json!({"videoroom": "event", "unpublished": 7}),
        json!({"videoroom": "event", "unpublished": 7}),
        json!({"videoroom": "event", "leaving": 7}),
    ] {
        s.on_message(&videoroom(ev).to_string(), now);
    }
    let (sent, out) = drain(&mut s);
    let stops: Vec<&Value> = sent.iter().map(|v| &v["body"]["stream_id"]).collect();
    assert_eq!(stops, [&json!(50), &json!(51)]);
    assert!(matches!(&out[..], [Output::Roster(RosterEvent::Left(p))] if p.id == "7"));
}

#[test]
fn a_codec_it_cannot_decode_is_forwarded_as_audio_only() {
    let now = Instant::now();
    let mut s = Session::new(settings(), 1, now);
    set_up(&mut s, json!([publisher(7, "av1")]), json!([]), now);
    drain(&mut s);
    s.forward("7", now);
    let (sent, _) = drain(&mut s);
    assert_eq!(
        sent[0]["body"]["streams"],
        json!([{"mid": "audio1", "port": 5004, "ssrc": 1, "pt": 111}])
    );
}

#[test]
fn reconnection_removes_stale_forwards_and_renews_the_others() {
    let now = Instant::now();
    let mut s = Session::new(settings(), 1000, now);
    set_up(
        &mut s,
        json!([publisher(7, "h264"), publisher(8, "h264")]),
        json!([]),
        now,
    );
    drain(&mut s);
    s.forward("7", now);
    s.forward("8", now);
    let (sent, _) = drain(&mut s);
    answer(&mut s, &sent[0], forwarded(7, 40), now);
    let (_, out) = drain(&mut s);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Roster(RosterEvent::Renewed(_)))),
        "a first forward is no renewal: {out:?}"
    );

    // Janus comes back with 8 gone and 9 new; forwards to our ingest (and only those)
    // are stopped before new ones start.
    let stale = json!([{"publisher_id": 7, "forwarders": [
        {"stream_id": 50, "host": "127.0.0.1", "port": 5004, "type": "video"},
        {"stream_id": 60, "host": "10.0.0.9", "port": 5004, "type": "video"}]}]);
    s.connected(now);
    let events = {
        let (sent, _) = drain(&mut s);
        answer(
            &mut s,
            &sent[0],
            json!({"janus": "success", "data": {"id": 11}}),
            now,
        );
        let (sent, _) = drain(&mut s);
        answer(
            &mut s,
            &sent[0],
            json!({"janus": "success", "data": {"id": 21}}),
            now,
        );
        let (sent, _) = drain(&mut s);
        answer(
            &mut s,
            &sent[0],
            videoroom(json!({"videoroom": "joined", "id": 1,
                             "publishers": [publisher(7, "h264"), publisher(9, "h264")]})),
            now,
        );
        let (sent, events) = drain(&mut s);
        answer(
            &mut s,
            &sent[0],
            success(
                VIDEOROOM,
                json!({"videoroom": "forwarders", "publishers": stale}),
            ),
            now,
        );
        events
    };
    assert!(matches!(&events[0], Output::Roster(RosterEvent::Left(p)) if p.id == "8"));
    assert_eq!(joined(&events)[0].id.as_str(), "9");
    let (sent, out) = drain(&mut s);
    assert_eq!(sent[0]["session_id"], 11);
    assert_eq!(sent[0]["body"]["request"], "stop_rtp_forward");
    assert_eq!(sent[0]["body"]["stream_id"], 50);
    assert_eq!(sent[1]["body"]["request"], "rtp_forward");
    assert_eq!(sent[1]["body"]["publisher_id"], 7);
    // The SSRCs stay those the mixer's ingest already expects.
    assert_eq!(sent[1]["body"]["streams"][0]["ssrc"], 1001);
    assert_eq!(sent.len(), 2);
    assert_eq!(out, vec![Output::Ready]);
    // Janus may send the renewed forward from other ports: the ingest learns them.
    answer(&mut s, &sent[1], forwarded(7, 70), now);
    let (_, out) = drain(&mut s);
    assert!(
        matches!(&out[..], [Output::Roster(RosterEvent::Renewed(p)), ..] if p.id == "7"),
        "{out:?}"
    );
}

/// Janus's answer to an `rtp_forward` of `publisher`'s audio and video.
fn forwarded(publisher: u64, stream_id: u64) -> Value {
    success(
        VIDEOROOM,
        json!({"videoroom": "rtp_forward", "publisher_id": publisher, "forwarders": [
        {"stream_id": stream_id, "type": "video", "host": "127.0.0.1", "port": 5004, "local_rtcp_port": 40000},
        {"stream_id": stream_id + 1, "type": "audio", "host": "127.0.0.1", "port": 5004}]}),
    )
}

#[test]
fn refusals_and_silence() {
    let now = Instant::now();
    let mut s = Session::new(settings(), 1, now);
    s.connected(now);
    let (sent, _) = drain(&mut s);
    answer(
        &mut s,
        &sent[0],
        json!({"janus": "success", "data": {"id": 10}}),
        now,
    );
    let (sent, _) = drain(&mut s);
    answer(
        &mut s,
        &sent[0],
        json!({"janus": "success", "data": {"id": 20}}),
        now,
    );
    let (sent, _) = drain(&mut s);
    answer(
        &mut s,
        &sent[0],
        videoroom(json!({"videoroom": "event", "error_code": 426, "error": "No such room (1234)"})),
        now,
    );
    let (_, out) = drain(&mut s);
    assert_eq!(
        out,
        vec![Output::Failed(SessionError::Refused {
            request: "join",
            error: PluginError {
                code: 426,
                reason: "No such room (1234)".into()
            }
        })]
    );

    // A refused forward is tried again, a bounded number of times.
    let mut s = Session::new(settings(), 1, now);
    set_up(&mut s, json!([publisher(7, "h264")]), json!([]), now);
    drain(&mut s);
    s.forward("7", now);
    let mut at = now;
    let mut attempts = 0;
    loop {
        let (sent, _) = drain(&mut s);
        let Some(f) = sent.iter().find(|v| v["body"]["request"] == "rtp_forward") else {
            break;
        };
        attempts += 1;
        answer(
            &mut s,
            f,
            success(
                VIDEOROOM,
                json!({"videoroom": "event", "error_code": 429, "error": "Missing mandatory element (secret)"}),
            ),
            at,
        );
        at += FORWARD_RETRY;
        s.tick(at);
    }
    assert_eq!(attempts, FORWARD_ATTEMPTS);

    // Keepalives well within the session timeout; silence ends the session.
    s.tick(at + KEEPALIVE_INTERVAL);
    let (sent, _) = drain(&mut s);
    assert_eq!(sent[0]["janus"], "keepalive");
    s.tick(at + KEEPALIVE_INTERVAL + ANSWER_TIMEOUT);
    let (_, out) = drain(&mut s);
    assert_eq!(
        out,
        vec![Output::Failed(SessionError::NoAnswer("keepalive"))]
    );
    s.on_message(r#"{"janus":"timeout","session_id":10}"#, at);
    assert_eq!(
        drain(&mut s).1,
        vec![Output::Failed(SessionError::SessionLost)]
    );
}

#[test]
fn an_acked_keepalive_keeps_the_session() {
    let mut at = Instant::now();
    let mut s = Session::new(settings(), 1, at);
    set_up(&mut s, json!([]), json!([]), at);
    assert_eq!(drain(&mut s).1, vec![Output::Ready]);
    // Janus answers a keepalive with an ack and nothing else, for hours.
    for _ in 0..10 {
        at += KEEPALIVE_INTERVAL;
        s.tick(at);
        let (sent, out) = drain(&mut s);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["janus"], "keepalive");
        assert!(out.is_empty(), "{out:?}");
        answer(
            &mut s,
            &sent[0],
            json!({"janus": "ack", "session_id": 10}),
            at,
        );
        s.tick(at + ANSWER_TIMEOUT);
        assert_eq!(drain(&mut s), (vec![], vec![]));
    }
    assert!(s.is_ready());
    // An ack to a plugin request still waits for its event.
    let notice = Notice::Cleared {
        kind: FaultKind::DiskFull,
        target: FaultTarget::Storage,
        at: 1,
    };
    s.notice(&notice, at);
    let (sent, _) = drain(&mut s);
    assert_eq!(sent[0]["body"]["request"], "announcement");
    answer(&mut s, &sent[0], json!({"janus": "ack"}), at);
    assert!(s.pending.values().any(|(p, _)| *p == Pending::Announcement));
}

#[test]
fn notices_reach_the_textroom_and_wait_while_janus_is_away() {
    let now = Instant::now();
    let mut s = Session::new(settings(), 1, now);
    let fault = Notice::Fault(Fault {
        recording: text("rec-1"),
        kind: FaultKind::DiskFull,
        target: FaultTarget::Storage,
        detail: text("ENOSPC"),
        at: 5,
    });
    // Before the TextRoom is attached: held.
    s.notice(&fault, now);
    assert!(drain(&mut s).0.is_empty());
    // set_up drains the held one with the attach answer; send another.
    set_up(&mut s, json!([]), json!([]), now);
    drain(&mut s);
    s.notice(&fault, now);
    let (sent, _) = drain(&mut s);
    assert_eq!(sent[0]["handle_id"], 30);
    let body = &sent[0]["body"];
    assert_eq!(
        (body["request"].clone(), body["secret"].clone()),
        (json!("announcement"), json!("adminpwd"))
    );
    let text = body["text"].as_str().unwrap();
    let (sentence, line) = text.split_once('\n').unwrap();
    assert_eq!(sentence, "Recording problem: the recording disk is full.");
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        (v["kind"].clone(), v["recording"].clone()),
        (json!("disk_full"), json!("rec-1"))
    );

    // Stats are for the control platform only.
    s.notice(
        &Notice::Stats {
            stats: crate::link::frame::Stats {
                file_bytes: 1,
                index_bytes: 1,
                duration_ms: 1,
                free_bytes: 1,
                at: 1,
            },
            faults: Vec::new(),
        },
        now,
    );
    assert!(drain(&mut s).0.is_empty());
}

#[test]
fn held_notice_goes_out_once_the_textroom_is_attached() {
    let now = Instant::now();
    let mut s = Session::new(settings(), 1, now);
    s.notice(
        &Notice::Cleared {
            kind: FaultKind::DiskFull,
            target: FaultTarget::Storage,
            at: 1,
        },
        now,
    );
    s.connected(now);
    let (sent, _) = drain(&mut s);
    answer(
        &mut s,
        &sent[0],
        json!({"janus": "success", "data": {"id": 10}}),
        now,
    );
    let (sent, _) = drain(&mut s);
    answer(
        &mut s,
        &sent[1],
        json!({"janus": "success", "data": {"id": 30}}),
        now,
    );
    let (sent, _) = drain(&mut s);
    assert_eq!(sent[0]["body"]["request"], "announcement");
    assert!(sent[0]["body"]["text"]
        .as_str()
        .unwrap()
        .starts_with("Resolved:"));
}

#[test]
fn shutdown_stops_every_forward() {
    let now = Instant::now();
    let mut s = Session::new(settings(), 1, now);
    set_up(&mut s, json!([publisher(7, "h264")]), json!([]), now);
    drain(&mut s);
    s.forward("7", now);
    let (sent, _) = drain(&mut s);
    answer(
        &mut s,
        &sent[0],
        success(
            VIDEOROOM,
            json!({"videoroom": "rtp_forward", "publisher_id": 7, "forwarders": [
            {"stream_id": 50, "type": "video"}, {"stream_id": 51, "type": "audio"}]}),
        ),
        now,
    );
    drain(&mut s);
    s.shutdown(now);
    assert!(s.stops_pending());
    let (sent, _) = drain(&mut s);
    assert_eq!(sent.len(), 2);
    for stop in &sent {
        answer(
            &mut s,
            stop,
            success(
                VIDEOROOM,
                json!({"videoroom": "stop_rtp_forward", "stream_id": 1}),
            ),
            now,
        );
    }
    assert!(!s.stops_pending());
    s.destroy(now);
    assert_eq!(drain(&mut s).0[0]["janus"], "destroy");
}

#[test]
fn reconnect_delays_grow_and_are_bounded() {
    assert_eq!(reconnect_delay(0), Duration::from_millis(500));
    assert_eq!(reconnect_delay(1), Duration::from_secs(1));
    assert_eq!(reconnect_delay(30), Duration::from_secs(8));
}
