#!/usr/bin/python3
"""A meeting terminal of the lab's Janus meeting (src/testbed/janus.rs): GStreamer
webrtcbin over the Janus WebSocket API.

 --publish   joins the VideoRoom and publishes a solid colour (H.264 or VP8) and a
             sine tone (Opus): what a test then looks for in the recording.
 --textroom  joins the TextRoom over a WebRTC data channel, as Janus's own chat
             does, and prints every announcement it receives.

Prints one JSON object per line on stdout for the lab ("configured", "webrtcup",
"textroom_joined", "announcement", "error"); logs go to stderr. Runs until SIGTERM,
then leaves the room and the session and exits 0.
Needs Debian's /usr/bin/python3 (python3-gi, python3-websockets).
"""
import argparse
import asyncio
import json
import secrets
import signal
import sys
import threading
import time

import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402
import websockets  # noqa: E402


def log(*a):
    print(f"[{ARGS.name}]", *a, file=sys.stderr, flush=True)


def emit(event, **fields):
    print(json.dumps({"event": event, "name": ARGS.name, "rx": time.time(), **fields}), flush=True)


def video_pipeline():
    w, h = ARGS.size.split("x")
    src = (f"videotestsrc is-live=true pattern=solid-color foreground-color=0xff{ARGS.rgb} "
           f"! video/x-raw,width={w},height={h},framerate={ARGS.fps}/1 ! videoconvert ")
    gop = ARGS.fps * 2
    if ARGS.vcodec == "x264":
        return (src + f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=300 "
                "! video/x-h264,profile=constrained-baseline,stream-format=byte-stream "
                "! rtph264pay config-interval=-1 aggregate-mode=zero-latency pt=96 "
                "! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000,"
                "packetization-mode=(string)1")
    return (src + f"! vp8enc deadline=1 cpu-used=8 keyframe-max-dist={gop} target-bitrate=300000 "
            "! rtpvp8pay pt=96 picture-id-mode=15-bit "
            "! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000")


def audio_pipeline():
    return (f"audiotestsrc is-live=true wave=sine freq={ARGS.freq} volume=0.3 ! audioconvert "
            "! audioresample ! audio/x-raw,rate=48000,channels=2 ! opusenc bitrate=32000 frame-size=20 "
            "! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000")


class Janus:
    """The Janus WebSocket API: transactions, per-handle events, keepalives."""

    def __init__(self, url):
        self.url, self.ws, self.session = url, None, None
        self.pending, self.queues, self.tasks = {}, {}, []

    async def connect(self):
        self.ws = await websockets.connect(self.url, subprotocols=["janus-protocol"], open_timeout=10)
        self.tasks.append(asyncio.create_task(self._read()))
        r = await self.send({"janus": "create"})
        self.session = r["data"]["id"]
        self.tasks.append(asyncio.create_task(self._keepalive()))

    async def _read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if msg.get("janus") == "ack":
                continue
            fut = self.pending.pop(msg.get("transaction"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
                if msg.get("janus") != "event":
                    continue
            q = self.queues.get(msg.get("sender"))
            if q is not None:
                q.put_nowait(msg)

    async def _keepalive(self):
        while True:
            await asyncio.sleep(20)
            await self.send({"janus": "keepalive"}, wait=False)

    async def send(self, msg, wait=True, timeout=15):
        msg = dict(msg, transaction=secrets.token_hex(6))
        if self.session:
            msg["session_id"] = self.session
        fut = None
        if wait:
            fut = asyncio.get_running_loop().create_future()
            self.pending[msg["transaction"]] = fut
        await self.ws.send(json.dumps(msg))
        if wait:
            return await asyncio.wait_for(fut, timeout)

    async def attach(self, plugin):
        r = await self.send({"janus": "attach", "plugin": plugin})
        self.queues[r["data"]["id"]] = asyncio.Queue()
        return r["data"]["id"]

    async def message(self, handle, body, jsep=None):
        m = {"janus": "message", "handle_id": handle, "body": body}
        if jsep:
            m["jsep"] = jsep
        return await self.send(m)

    async def trickle(self, handle, candidate):
        await self.send({"janus": "trickle", "handle_id": handle, "candidate": candidate}, wait=False)

    async def close(self):
        try:
            await self.send({"janus": "destroy"}, timeout=3)
        except Exception:
            pass
        for t in self.tasks:
            t.cancel()
        await self.ws.close()


class Peer:
    """One webrtcbin and its Janus handle; GLib's thread hands over to asyncio."""

    def __init__(self, janus, handle, loop, desc):
        self.janus, self.handle, self.loop = janus, handle, loop
        self.pipe = Gst.parse_launch(desc)
        if not isinstance(self.pipe, Gst.Pipeline):  # a lone element comes back bare
            element, self.pipe = self.pipe, Gst.Pipeline.new("p")
            self.pipe.add(element)
        self.webrtc = self.pipe.get_by_name("webrtc")
        self.sdp = loop.create_future()
        self.webrtc.connect("on-ice-candidate", self._candidate)
        self.webrtc.connect("notify::ice-gathering-state", self._gathering)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", lambda b, m: log("GStreamer error", m.parse_error()))

    def _later(self, coro):
        self.loop.call_soon_threadsafe(asyncio.ensure_future, coro)

    def _candidate(self, _w, mline, candidate):
        self._later(self.janus.trickle(self.handle, {"sdpMLineIndex": mline, "candidate": candidate}))

    def _gathering(self, w, _p):
        if w.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            self._later(self.janus.trickle(self.handle, {"completed": True}))

    def _described(self, kind):
        def done(promise):
            promise.wait()
            reply = promise.get_reply()
            desc = reply.get_value(kind) if reply is not None and reply.has_field(kind) else None
            if desc is None:
                self.loop.call_soon_threadsafe(self.sdp.set_exception, RuntimeError(f"no {kind}"))
                return
            self.webrtc.emit("set-local-description", desc, Gst.Promise.new())
            self.loop.call_soon_threadsafe(self.sdp.set_result, desc.sdp.as_text())
        return Gst.Promise.new_with_change_func(done)

    def offer(self):
        self.webrtc.emit("create-offer", None, self._described("offer"))

    def answer(self):
        self.webrtc.emit("create-answer", None, self._described("answer"))

    def set_remote(self, sdp, kind):
        _, message = GstSdp.SDPMessage.new_from_text(sdp)
        t = GstWebRTC.WebRTCSDPType.ANSWER if kind == "answer" else GstWebRTC.WebRTCSDPType.OFFER
        promise = Gst.Promise.new()
        self.webrtc.emit("set-remote-description", GstWebRTC.WebRTCSessionDescription.new(t, message), promise)
        promise.wait()


async def events(janus, handle):
    while True:
        ev = await janus.queues[handle].get()
        if ev.get("janus") in ("webrtcup", "hangup"):
            emit(ev["janus"])


async def publish(janus, loop):
    h = await janus.attach("janus.plugin.videoroom")
    r = await janus.message(h, {"request": "join", "ptype": "publisher", "room": ARGS.room,
                                "display": ARGS.name})
    if r["plugindata"]["data"].get("videoroom") != "joined":
        raise RuntimeError(f"join: {r}")
    desc = ("webrtcbin name=webrtc bundle-policy=max-bundle "
            f"{video_pipeline()} ! webrtc. {audio_pipeline()} ! webrtc. ")
    peer = Peer(janus, h, loop, desc)
    peer.pipe.set_state(Gst.State.READY)
    for i in range(2):
        tr = peer.webrtc.emit("get-transceiver", i)
        if tr is not None:
            tr.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
    # An offer made before negotiation-needed comes out empty.
    peer.webrtc.connect("on-negotiation-needed", lambda _w: peer.offer())
    asyncio.ensure_future(events(janus, h))
    peer.pipe.set_state(Gst.State.PLAYING)
    offer = await asyncio.wait_for(peer.sdp, 15)
    r = await janus.message(h, {"request": "configure", "audio": True, "video": True},
                            jsep={"type": "offer", "sdp": offer})
    data = r.get("plugindata", {}).get("data", {})
    if not r.get("jsep"):
        raise RuntimeError(f"configure: {r}")
    peer.set_remote(r["jsep"]["sdp"], "answer")
    emit("configured", video_codec=data.get("video_codec"), audio_codec=data.get("audio_codec"))
    return peer, h


async def textroom(janus, loop):
    h = await janus.attach("janus.plugin.textroom")
    r = await janus.message(h, {"request": "setup"})
    if not r.get("jsep"):
        raise RuntimeError(f"textroom setup: {r}")
    peer = Peer(janus, h, loop, "webrtcbin name=webrtc bundle-policy=max-bundle")
    joined = loop.create_future()

    def on_message(_channel, text):
        m = json.loads(text)
        if m.get("textroom") == "announcement":
            emit("announcement", text=m.get("text"))
        elif m.get("transaction") == "join" and not joined.done():
            loop.call_soon_threadsafe(joined.set_result, m)

    def on_open(channel):
        channel.emit("send-string", json.dumps({
            "textroom": "join", "transaction": "join", "room": ARGS.troom,
            "username": f"{ARGS.name}-{secrets.token_hex(3)}", "display": ARGS.name}))

    def hook(channel):
        channel.connect("on-message-string", on_message)
        channel.connect("on-open", on_open)
        if channel.get_property("ready-state") == GstWebRTC.WebRTCDataChannelState.OPEN:
            on_open(channel)

    peer.webrtc.connect("on-data-channel", lambda _w, channel: hook(channel))
    peer.pipe.set_state(Gst.State.PLAYING)
    peer.set_remote(r["jsep"]["sdp"], "offer")
    # As janus.js does: the terminal's own channel, by the name Janus expects.
    peer.channel = peer.webrtc.emit("create-data-channel", "JanusDataChannel", None)
    hook(peer.channel)
    peer.answer()
    answer = await asyncio.wait_for(peer.sdp, 15)
    await janus.message(h, {"request": "ack"}, jsep={"type": "answer", "sdp": answer})
    reply = await asyncio.wait_for(joined, 20)
    if reply.get("textroom") != "success":
        raise RuntimeError(f"textroom join: {reply}")
    emit("textroom_joined")
    return peer, h


async def main():
    Gst.init(None)
    glib = GLib.MainLoop()
    threading.Thread(target=glib.run, daemon=True).start()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    janus = Janus(ARGS.ws)
    await janus.connect()
    peers = []
    try:
        if ARGS.publish:
            peers.append(await publish(janus, loop))
        if ARGS.textroom:
            peers.append(await textroom(janus, loop))
        await stop
        if ARGS.publish:
            await janus.message(peers[0][1], {"request": "leave"})
    except Exception as e:  # the test sees it, then the exit status
        emit("error", error=str(e))
        raise
    finally:
        for peer, _ in peers:
            peer.pipe.set_state(Gst.State.NULL)
        await janus.close()
        glib.quit()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", default="ws://127.0.0.1:8188/")
    ap.add_argument("--name", required=True)
    ap.add_argument("--publish", action="store_true")
    ap.add_argument("--room", type=int, default=1234)
    ap.add_argument("--vcodec", choices=["x264", "vp8"], default="x264")
    ap.add_argument("--rgb", default="dc2828", help="the picture's colour, RRGGBB")
    ap.add_argument("--freq", type=float, default=440.0, help="the tone, Hz")
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--textroom", action="store_true")
    ap.add_argument("--troom", type=int, default=1234)
    ARGS = ap.parse_args()
    asyncio.run(main())
