"use strict";
const $ = (id) => document.getElementById(id);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
const mb = (b) => b == null ? "-" : (b / 1e6).toFixed(1) + " MB";
const hms = (s) => { s = Math.floor(s); return Math.floor(s / 3600) + ":" + String(Math.floor(s / 60) % 60).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0"); };

function show(st) {
  $("state").textContent = st.state + (st.reason ? " (" + st.reason + ")" : "") + (st.recording ? " — " + st.recording : "");
  $("panel").textContent = st.panel; $("panel").className = "led " + st.panel; $("panel-text").textContent = st.panel;
  $("participants").textContent = st.participants;
  $("recorded").textContent = st.duration_ms == null ? "-" : hms(st.duration_ms / 1000) + ", " + mb(st.bytes);
  $("free").textContent = st.free_bytes == null ? "-" : (st.free_bytes / 2 ** 30).toFixed(2) + " GiB";
  const faults = $("faults"); faults.replaceChildren();
  if (!st.faults.length) faults.append(el("li", "none", "none"));
  for (const f of st.faults) {
    const li = el("li", f.text + " "); li.dataset.kind = f.kind;
    li.append(el("small", "[" + f.kind + (f.detail ? ": " + f.detail : "") + "]"));
    faults.append(li);
  }
  const notices = $("notices"); notices.replaceChildren();
  for (const n of st.notices) notices.append(el("li", new Date(n.at).toLocaleTimeString() + " " + n.text));
  document.body.dataset.state = st.state;
}

function live() {
  const source = new EventSource("/api/events");
  source.addEventListener("status", (e) => show(JSON.parse(e.data)));
  source.onerror = () => { $("state").textContent = "connection lost, retrying…"; };
}

async function api(path, options) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  return r.status === 204 ? null : r.json();
}

async function session() {
  const s = await api("/api/session");
  $("no-admin").hidden = s.login; $("login").hidden = !s.login || s.admin;
  $("controls").hidden = !s.admin; $("recordings").hidden = !s.admin;
  if (s.admin) await recordings();
}

function play(url) { const v = $("player"); v.src = url; v.play().catch(() => {}); }

async function recordings() {
  const list = $("list"); list.replaceChildren();
  for (const r of await api("/api/recordings")) {
    const tr = el("tr"); tr.dataset.id = r.id;
    const name = el("td", r.name); name.append(el("br"), el("small", r.room)); tr.append(name);
    tr.append(el("td", hms(r.duration_s)), el("td", mb(r.bytes)));
    const segs = el("td");
    for (const s of r.segments) {
      const line = el("div", "#" + s.segment + " " + s.root + ", " + hms(s.end_s - s.start_s) + ", " + mb(s.bytes) + " — ");
      line.append(el("span", s.health, s.healthy ? "" : "bad"), " ");
      const p = el("button", "Play"); p.className = "play"; p.onclick = () => play(s.mp4); line.append(p, " ");
      const a = el("a", "mp4"); a.href = s.mp4; a.download = r.name + ".seg" + s.segment + ".mp4"; line.append(a, " ");
      const h = el("a", "HLS"); h.href = s.playlist; line.append(h);
      segs.append(line);
    }
    for (const n of r.missing_segments) segs.append(el("div", "#" + n + " missing", "bad"));
    tr.append(segs);
    const whole = el("td");
    if (r.whole) { const a = el("a", "whole recording"); a.href = r.whole; a.download = r.name + ".mp4"; whole.append(a); }
    else if (r.whole_unavailable) whole.append(el("small", "segment by segment: " + r.whole_unavailable));
    tr.append(whole); list.append(tr);
  }
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await api("/api/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ password: $("password").value }) });
    $("password").value = ""; $("login-error").textContent = ""; await session();
  } catch (err) { $("login-error").textContent = err.message; }
});
$("logout").onclick = async () => { await api("/api/logout", { method: "POST" }); await session(); };
for (const b of document.querySelectorAll("[data-command]")) {
  b.onclick = async () => {
    try {
      await api("/api/commands", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ command: b.dataset.command }) });
      $("command-result").textContent = b.textContent + ": sent";
      setTimeout(() => session().catch(() => {}), 1500);
    } catch (err) { $("command-result").textContent = err.message; }
  };
}

live();
session().catch((e) => { $("login-error").textContent = e.message; });
