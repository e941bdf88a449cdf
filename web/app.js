// Pixelcast viewer: plays the personalized stream over WHEP and talks to the server on the "control"
// data channel. Plain browser ES modules, no build step: whep.js (signalling), identity.js (the viewer's
// token), connection.js (one connection and its lifecycle), ui.js (what the page shows); this module
// reconnects, keeps the segment's dwell time and wires the controls.

import { Connection } from './connection.js';
import { Identity } from './identity.js';
import {
  StatusLine, hideSteerHint, play, setButtons, showDecoded, showSegment, showSteerHint, showStats, ui, wireVideo,
} from './ui.js';

const BACKOFF_MAX_S = 15;
const STABLE_AFTER_MS = 5000;  // connected this long -> the backoff starts again from 1 s
const STATS_POLL_MS = 1000;
const STEER_SEGMENTS = 5;      // segments to wait for the steered prompt before dropping the hint

const identity = new Identity();
const status = new StatusLine(ui.status);
let conn = null;               // the current Connection
let attempt = 0;               // consecutive failures, for the backoff
let reconnectTimer = null;
let stableTimer = null;
let pendingSteer = null;       // steer text typed while the channel was not open
let steerWanted = null;        // {text, segmentsSeen} until a segment shows it
let unloading = false;
let segment = null;            // the segment on screen, for dwell: {id, visibleMs, visibleSince}

// Debug handle for tests and the console: always the current connection.
window.pixelcast = {
  get pc() { return conn ? conn.pc : null; },
  get channel() { return conn ? conn.channel : null; },
  get state() { return conn ? conn.state : 'closed'; },
  get lastSegment() { return conn ? conn.lastSegment : null; },
  get lastStats() { return conn ? conn.lastStats : null; },
  get sessionUrl() { return conn ? conn.sessionUrl : null; },
  get viewerId() { return identity.viewerId; },
};

// ---------------------------------------------------------------- connecting
function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  teardown();
  status.set(attempt ? 'Reconnecting…' : 'Connecting…', attempt ? 'reconnecting' : 'connecting');
  const c = new Connection(identity, {
    track: (stream) => play(stream),
    state: (state) => onState(c, state),
    channelOpen: () => onChannelOpen(),
    message: (msg) => onMessage(c, msg),
    failed: (reason) => fail(reason),
  });
  conn = c;
  c.open();
}

function onState(c, state) {
  if (state === 'negotiated') {
    pollDecodeStats(c);
  } else if (state === 'connected') {
    status.set('Live', 'live');
    clearTimeout(stableTimer);
    stableTimer = setTimeout(() => { if (c === conn && c.state === 'connected') attempt = 0; }, STABLE_AFTER_MS);
  } else if (state === 'disconnected') {
    status.set('Connection unstable…', 'reconnecting');
  }
}

function fail(reason) {
  if (unloading) return;
  teardown();
  attempt += 1;
  let left = Math.min(BACKOFF_MAX_S, 2 ** (attempt - 1));
  const tick = () => {
    if (left <= 0) { connect(); return; }
    status.set(`${reason} — reconnecting in ${left} s…`, attempt > 1 ? 'error' : 'reconnecting');
    left -= 1;
    reconnectTimer = setTimeout(tick, 1000);
  };
  tick();
}

function teardown(options = {}) {
  const c = conn;
  conn = null;
  clearTimeout(stableTimer);
  if (!c) return;
  c.close(options);
  endSegment(false);
  updateButtons();
}

// Browser-side decode statistics from the peer connection.
function pollDecodeStats(c) {
  let last = null;
  c.every(STATS_POLL_MS, async () => {
    let report;
    try { report = await c.pc.getStats(); } catch (_) { return; }
    report.forEach((r) => {
      if (r.type !== 'inbound-rtp' || (r.kind || r.mediaType) !== 'video') return;
      const decoded = r.framesDecoded || 0;
      let fps = r.framesPerSecond;
      if (typeof fps !== 'number' && last) {
        const dt = (r.timestamp - last.t) / 1000;
        fps = dt > 0 ? (decoded - last.n) / dt : undefined;
      }
      last = { n: decoded, t: r.timestamp };
      showDecoded(decoded, fps);
    });
  });
}

// ---------------------------------------------------------------- control messages
function onChannelOpen() {
  updateButtons();
  if (pendingSteer) {
    const text = pendingSteer;
    pendingSteer = null;
    sendSteer(text);
  }
}

function onMessage(c, msg) {
  switch (msg.type) {
    case 'segment': onSegment(c, msg); break;
    case 'stats': c.lastStats = msg; showStats(msg); break;
    case 'error': status.error(String(msg.message || 'Server error')); break;
    default: break;
  }
}

function onSegment(c, msg) {
  endSegment(true);
  c.lastSegment = msg;
  segment = { id: msg.segment_id, visibleMs: 0, visibleSince: isVisible() ? performance.now() : null };
  const prompt = showSegment(msg);
  updateButtons();
  if (steerWanted) {
    steerWanted.segmentsSeen += 1;
    if (prompt.toLowerCase().includes(steerWanted.text.toLowerCase()) || steerWanted.segmentsSeen >= STEER_SEGMENTS) {
      steerWanted = null;
      hideSteerHint();
    }
  }
}

// Close the bookkeeping of the current segment; send dwell if it was watched.
function endSegment(report) {
  if (!segment) return;
  const s = segment;
  segment = null;
  let ms = s.visibleMs;
  if (s.visibleSince != null) ms += performance.now() - s.visibleSince;
  if (report && isVisible() && ms > 0 && conn) {
    conn.send({ type: 'feedback', kind: 'dwell', segment_id: s.id, seconds: Math.round(ms) / 1000 });
  }
}

function isVisible() { return document.visibilityState === 'visible'; }

document.addEventListener('visibilitychange', () => {
  if (!segment) return;
  if (isVisible()) {
    if (segment.visibleSince == null) segment.visibleSince = performance.now();
  } else if (segment.visibleSince != null) {
    segment.visibleMs += performance.now() - segment.visibleSince;
    segment.visibleSince = null;
  }
});

// ---------------------------------------------------------------- controls
function send(message) {
  return !!conn && conn.send(message);
}

function updateButtons() {
  setButtons(!!conn && conn.channelOpen && segment != null);
}

function sendSteer(text) {
  if (send({ type: 'steer', text })) {
    steerWanted = { text, segmentsSeen: 0 };
    showSteerHint(`Steering to “${text}”…`);
  } else {
    pendingSteer = text;
    showSteerHint(`Will steer to “${text}” once connected…`);
  }
}

ui.steerForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.steerInput.value.trim();
  if (!text) return;
  ui.steerInput.value = '';
  sendSteer(text);
});

ui.like.addEventListener('click', () => {
  if (segment && send({ type: 'feedback', kind: 'like', segment_id: segment.id })) {
    ui.like.setAttribute('aria-pressed', 'true');
  }
});

ui.skip.addEventListener('click', () => {
  if (segment && send({ type: 'feedback', kind: 'skip', segment_id: segment.id })) status.info('Skipping…');
});

wireVideo();

// ---------------------------------------------------------------- page lifecycle
window.addEventListener('pagehide', () => {
  unloading = true;
  clearTimeout(reconnectTimer);
  teardown({ keepalive: true });
});
window.addEventListener('pageshow', (e) => {
  if (e.persisted) {             // restored from the back/forward cache
    unloading = false;
    attempt = 0;
    connect();
  }
});
window.addEventListener('online', () => {
  if (reconnectTimer) { attempt = 0; connect(); }
});

connect();
