// Pixelcast viewer: plays the personalized stream over WHEP and talks to the
// server on the "control" data channel. Plain browser JS, no build step.
'use strict';

(() => {
  const STORAGE_KEY = 'pixelcast.viewer';
  const ICE_GATHER_CAP_MS = 2000;
  const DISCONNECT_GRACE_MS = 3000;
  const BACKOFF_MAX_S = 15;
  const STABLE_AFTER_MS = 5000;        // connected this long -> reset the backoff
  const ERROR_SHOW_MS = 5000;
  const STATS_POLL_MS = 1000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    stage: $('stage'),
    video: $('video'),
    fps: $('stat-fps'),
    rtf: $('stat-rtf'),
    buffer: $('stat-buffer'),
    res: $('stat-res'),
    steps: $('stat-steps'),
    decoded: $('stat-decoded'),
    decodeFps: $('stat-decode-fps'),
    prompt: $('stat-prompt'),
    variant: $('stat-variant'),
    steerForm: $('steer-form'),
    steerInput: $('steer-input'),
    steerHint: $('steer-hint'),
    like: $('like-button'),
    skip: $('skip-button'),
  };

  // ---------------------------------------------------------------- state
  let viewer = null;            // {viewer_id, token}
  let conn = null;              // the current connection attempt (see connect())
  let attempt = 0;              // consecutive failures, for the backoff
  let reconnectTimer = null;
  let stableTimer = null;
  let errorTimer = null;
  let statusBase = { text: 'Starting…', state: 'idle' };
  let pendingSteer = null;      // steer text typed while the channel was not open
  let steerWanted = null;       // {text, segmentsSeen} until a segment shows it
  let unloading = false;

  // Segment bookkeeping for dwell feedback.
  let segment = null;           // {id, visibleMs, visibleSince}

  function publish(c) {
    // Debug handle for tests and the console; reassigned on every (re)connect.
    window.pixelcast = {
      pc: c ? c.pc : null,
      channel: c ? c.channel : null,
      state: c ? c.state : 'idle',
      lastSegment: c ? c.lastSegment : null,
      lastStats: c ? c.lastStats : null,
      viewerId: viewer ? viewer.viewer_id : null,
      sessionUrl: c ? c.sessionUrl : null,
    };
  }
  function syncDebug(c) {
    if (c !== conn || !window.pixelcast) return;
    Object.assign(window.pixelcast, {
      state: c.state,
      lastSegment: c.lastSegment,
      lastStats: c.lastStats,
      channel: c.channel,
      sessionUrl: c.sessionUrl,
      viewerId: viewer ? viewer.viewer_id : null,
    });
  }

  // ---------------------------------------------------------------- status line
  function setStatus(text, state) {
    statusBase = { text, state };
    if (!errorTimer) renderStatus(text, state);
  }
  function renderStatus(text, state) {
    ui.status.textContent = text;
    ui.status.dataset.state = state;
  }
  function flashError(message) {
    renderStatus(message, 'error');
    clearTimeout(errorTimer);
    errorTimer = setTimeout(() => {
      errorTimer = null;
      renderStatus(statusBase.text, statusBase.state);
    }, ERROR_SHOW_MS);
  }

  // ---------------------------------------------------------------- viewer token
  function loadViewer() {
    try {
      const v = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
      if (v && typeof v.token === 'string' && v.token && v.viewer_id != null) return v;
    } catch (_) { /* storage unavailable or corrupt */ }
    return null;
  }
  function saveViewer(v) {
    try { localStorage.setItem(STORAGE_KEY, JSON.stringify(v)); } catch (_) { /* private mode */ }
  }
  function dropViewer() {
    viewer = null;
    try { localStorage.removeItem(STORAGE_KEY); } catch (_) { /* ignore */ }
  }
  async function ensureViewer() {
    if (viewer) return viewer;
    viewer = loadViewer();
    if (viewer) {
      // Signing keys rotate: a returning viewer swaps its token for one under the current key.
      try {
        const res = await fetch('/api/viewers', {
          method: 'POST', headers: { Authorization: `Bearer ${viewer.token}` },
        });
        if (res.ok) {
          const body = await res.json();
          if (body && body.token && body.viewer_id === viewer.viewer_id) {
            viewer = { viewer_id: body.viewer_id, token: body.token };
            saveViewer(viewer);
          }
        } else if (res.status === 401) {
          dropViewer();  // erased, expired, or its key retired too long ago
        }
      } catch (_) { /* offline or restarting: keep the stored token */ }
      if (viewer) return viewer;
    }
    const res = await fetch('/api/viewers', { method: 'POST' });
    if (res.status !== 201 && !res.ok) {
      throw new Error(await errorText(res, 'Could not create a viewer'));
    }
    const body = await res.json();
    if (!body || !body.token || body.viewer_id == null) throw new Error('Server returned no viewer token');
    viewer = { viewer_id: body.viewer_id, token: body.token };
    saveViewer(viewer);
    return viewer;
  }

  async function errorText(res, fallback) {
    let text = '';
    try { text = (await res.text()).trim(); } catch (_) { /* ignore */ }
    if (text.startsWith('{')) {
      try {
        const j = JSON.parse(text);
        text = j.message || j.error || j.detail || text;
      } catch (_) { /* not JSON after all */ }
    }
    return `${fallback}: ${text || res.statusText || 'HTTP ' + res.status} (${res.status})`;
  }

  // ---------------------------------------------------------------- WHEP
  function waitIceGathering(pc) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        pc.removeEventListener('icecandidate', onCandidate);
        resolve();
      };
      const check = () => { if (pc.iceGatheringState === 'complete') done(); };
      const onCandidate = (e) => { if (!e.candidate) done(); };
      const timer = setTimeout(done, ICE_GATHER_CAP_MS);
      pc.addEventListener('icegatheringstatechange', check);
      pc.addEventListener('icecandidate', onCandidate);
    });
  }

  // ICE servers (STUN/TURN) from the WHEP endpoint's Link headers, as WHEP players read them:
  //   <turn:host:3478?transport=udp>; rel="ice-server"; username="..."; credential="..."
  function parseIceLinks(header) {
    const servers = [];
    for (const part of (header || '').split(/,\s*(?=<)/)) {
      const url = /^<([^>]+)>/.exec(part.trim());
      if (!url || !/;\s*rel="?ice-server"?/.test(part)) continue;
      const server = { urls: url[1] };
      const param = (name) => {
        const m = new RegExp(`;\\s*${name}="((?:[^"\\\\]|\\\\.)*)"`).exec(part);
        return m ? m[1].replace(/\\(.)/g, '$1') : null;
      };
      const username = param('username');
      const credential = param('credential');
      if (username !== null) server.username = username;
      if (credential !== null) server.credential = credential;
      servers.push(server);
    }
    return servers;
  }

  async function iceServers() {
    try {
      const res = await fetch('/whep', { method: 'OPTIONS' });
      return parseIceLinks(res.headers.get('Link'));
    } catch (err) {
      return [];  // no ICE servers: host candidates still work on the same network
    }
  }

  function postOffer(sdp, token) {
    return fetch('/whep', {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
      body: sdp,
    });
  }

  async function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    teardown();

    const c = {
      pc: null, channel: null, state: 'connecting', sessionUrl: null,
      lastSegment: null, lastStats: null, closed: false, disconnectTimer: null,
      statsTimer: null, lastDecoded: null,
    };
    conn = c;
    setStatus(attempt ? 'Reconnecting…' : 'Connecting…', attempt ? 'reconnecting' : 'connecting');

    try {
      await ensureViewer();
      if (c !== conn) return;

      const servers = await iceServers();
      if (c !== conn) return;
      const pc = new RTCPeerConnection({ iceServers: servers });
      c.pc = pc;
      pc.addTransceiver('video', { direction: 'recvonly' });
      const channel = pc.createDataChannel('control');
      c.channel = channel;
      publish(c);
      wireConnection(c);
      wireChannel(c);

      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await waitIceGathering(pc);
      if (c !== conn) return;
      const sdp = pc.localDescription.sdp;

      let res = await postOffer(sdp, viewer.token);
      if (res.status === 401 || res.status === 403) {
        // The stored token is stale (key rotated, viewer erased): start over once.
        dropViewer();
        await ensureViewer();
        if (c !== conn) return;
        res = await postOffer(sdp, viewer.token);
      }
      if (c !== conn) return;
      if (res.status !== 201 && !res.ok) {
        throw new Error(await errorText(res, 'The server refused the stream'));
      }
      const location = res.headers.get('Location');
      if (location) c.sessionUrl = new URL(location, window.location.href).href;
      const answer = await res.text();
      if (c !== conn) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      c.state = 'negotiated';
      syncDebug(c);
      startStatsPolling(c);
    } catch (err) {
      if (c !== conn) return;
      console.warn('pixelcast: connect failed', err);
      fail(c, err && err.message ? err.message : String(err));
    }
  }

  function wireConnection(c) {
    const pc = c.pc;
    pc.addEventListener('track', (e) => {
      if (c !== conn) return;
      const stream = (e.streams && e.streams[0]) || new MediaStream([e.track]);
      if (ui.video.srcObject !== stream) ui.video.srcObject = stream;
      const p = ui.video.play();
      if (p && p.catch) p.catch(() => { /* autoplay is muted; retried on loadeddata */ });
    });
    pc.addEventListener('connectionstatechange', () => {
      if (c !== conn) return;
      const s = pc.connectionState;
      if (s === 'connected') {
        clearTimeout(c.disconnectTimer);
        c.disconnectTimer = null;
        c.state = 'connected';
        syncDebug(c);
        setStatus('Live', 'live');
        clearTimeout(stableTimer);
        stableTimer = setTimeout(() => { if (c === conn && c.state === 'connected') attempt = 0; }, STABLE_AFTER_MS);
      } else if (s === 'disconnected') {
        c.state = 'disconnected';
        syncDebug(c);
        setStatus('Connection unstable…', 'reconnecting');
        clearTimeout(c.disconnectTimer);
        c.disconnectTimer = setTimeout(() => {
          if (c === conn && pc.connectionState === 'disconnected') fail(c, 'Connection lost');
        }, DISCONNECT_GRACE_MS);
      } else if (s === 'failed' || s === 'closed') {
        fail(c, s === 'failed' ? 'Connection failed' : 'Connection closed');
      }
    });
  }

  function wireChannel(c) {
    const ch = c.channel;
    ch.addEventListener('open', () => {
      if (c !== conn) return;
      updateButtons();
      if (pendingSteer) {
        const text = pendingSteer;
        pendingSteer = null;
        sendSteer(text);
      }
    });
    ch.addEventListener('close', () => {
      if (c !== conn || c.closed) return;
      updateButtons();
      fail(c, 'Control channel closed');
    });
    ch.addEventListener('message', (e) => {
      if (c !== conn) return;
      let msg;
      try { msg = JSON.parse(e.data); } catch (_) { return; }
      if (!msg || typeof msg !== 'object') return;
      handleMessage(c, msg);
    });
  }

  function fail(c, reason) {
    if (c !== conn || c.closed || unloading) return;
    teardown();
    attempt += 1;
    const delay = Math.min(BACKOFF_MAX_S, 2 ** (attempt - 1));
    let left = delay;
    const tick = () => {
      if (left <= 0) { connect(); return; }
      setStatus(`${reason} — reconnecting in ${left} s…`, attempt > 1 ? 'error' : 'reconnecting');
      left -= 1;
      reconnectTimer = setTimeout(tick, 1000);
    };
    tick();
  }

  function teardown(opts = {}) {
    const c = conn;
    conn = null;
    clearTimeout(stableTimer);
    if (!c) return;
    c.closed = true;
    c.state = 'closed';
    clearTimeout(c.disconnectTimer);
    clearInterval(c.statsTimer);
    if (c.sessionUrl && viewer) {
      // Free the server-side session (best effort).
      fetch(c.sessionUrl, {
        method: 'DELETE',
        keepalive: !!opts.keepalive,
        headers: { Authorization: `Bearer ${viewer.token}` },
      }).catch(() => { /* server gone; nothing to free */ });
    }
    try { if (c.channel) c.channel.close(); } catch (_) { /* ignore */ }
    try { if (c.pc) c.pc.close(); } catch (_) { /* ignore */ }
    if (window.pixelcast && window.pixelcast.pc === c.pc) window.pixelcast.state = 'closed';
    endSegment(false);
    updateButtons();
  }

  // ---------------------------------------------------------------- control messages
  function send(obj) {
    const c = conn;
    if (!c || !c.channel || c.channel.readyState !== 'open') return false;
    try { c.channel.send(JSON.stringify(obj)); return true; } catch (_) { return false; }
  }

  function handleMessage(c, msg) {
    switch (msg.type) {
      case 'segment': onSegment(c, msg); break;
      case 'stats': onStats(c, msg); break;
      case 'error': flashError(String(msg.message || 'Server error')); break;
      default: break;
    }
  }

  function onSegment(c, msg) {
    endSegment(true);
    c.lastSegment = msg;
    syncDebug(c);
    segment = { id: msg.segment_id, visibleMs: 0, visibleSince: isVisible() ? performance.now() : null };

    const prompt = typeof msg.prompt === 'string' ? msg.prompt : '';
    ui.prompt.textContent = prompt || '—';
    if (msg.variant != null && msg.variant !== '') {
      ui.variant.textContent = String(msg.variant);
      ui.variant.hidden = false;
    } else {
      ui.variant.hidden = true;
    }
    ui.like.setAttribute('aria-pressed', 'false');
    updateButtons();

    if (steerWanted) {
      steerWanted.segmentsSeen += 1;
      const shown = prompt.toLowerCase().includes(steerWanted.text.toLowerCase());
      if (shown || steerWanted.segmentsSeen >= 5) {
        steerWanted = null;
        ui.steerHint.hidden = true;
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
    if (report && isVisible() && ms > 0) {
      send({ type: 'feedback', kind: 'dwell', segment_id: s.id, seconds: Math.round(ms) / 1000 });
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

  function fmt(v, digits) {
    return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–';
  }

  function onStats(c, msg) {
    c.lastStats = msg;
    syncDebug(c);
    ui.fps.textContent = typeof msg.target_fps === 'number'
      ? `${fmt(msg.fps, 1)}/${msg.target_fps}` : fmt(msg.fps, 1);
    ui.rtf.textContent = typeof msg.realtime_factor === 'number' ? `${fmt(msg.realtime_factor, 2)}×` : '–';
    ui.buffer.textContent = typeof msg.buffer_seconds === 'number' ? `${fmt(msg.buffer_seconds, 2)} s` : '–';
    ui.res.textContent = msg.width && msg.height ? `${msg.width}×${msg.height}` : '–';
    ui.steps.textContent = msg.steps != null ? String(msg.steps) : '–';
  }

  // Browser-side decode statistics from the peer connection.
  function startStatsPolling(c) {
    clearInterval(c.statsTimer);
    c.statsTimer = setInterval(async () => {
      if (c !== conn || !c.pc) return;
      let report;
      try { report = await c.pc.getStats(); } catch (_) { return; }
      report.forEach((r) => {
        if (r.type !== 'inbound-rtp' || (r.kind || r.mediaType) !== 'video') return;
        const decoded = r.framesDecoded || 0;
        let fps = r.framesPerSecond;
        if (typeof fps !== 'number' && c.lastDecoded) {
          const dt = (r.timestamp - c.lastDecoded.t) / 1000;
          fps = dt > 0 ? (decoded - c.lastDecoded.n) / dt : undefined;
        }
        c.lastDecoded = { n: decoded, t: r.timestamp };
        ui.decoded.textContent = String(decoded);
        ui.decodeFps.textContent = fmt(fps, 1);
      });
    }, STATS_POLL_MS);
  }

  // ---------------------------------------------------------------- controls
  function channelOpen() {
    return !!(conn && conn.channel && conn.channel.readyState === 'open');
  }

  function updateButtons() {
    const ok = channelOpen() && segment != null;
    ui.like.disabled = !ok;
    ui.skip.disabled = !ok;
  }

  function sendSteer(text) {
    if (send({ type: 'steer', text })) {
      steerWanted = { text, segmentsSeen: 0 };
      ui.steerHint.textContent = `Steering to “${text}”…`;
    } else {
      pendingSteer = text;
      ui.steerHint.textContent = `Will steer to “${text}” once connected…`;
    }
    ui.steerHint.hidden = false;
  }

  ui.steerForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = ui.steerInput.value.trim();
    if (!text) return;
    ui.steerInput.value = '';
    sendSteer(text);
  });

  ui.like.addEventListener('click', () => {
    if (!segment) return;
    if (send({ type: 'feedback', kind: 'like', segment_id: segment.id })) {
      ui.like.setAttribute('aria-pressed', 'true');
    }
  });

  ui.skip.addEventListener('click', () => {
    if (!segment) return;
    if (send({ type: 'feedback', kind: 'skip', segment_id: segment.id })) {
      flashStatusInfo('Skipping…');
    }
  });

  function flashStatusInfo(text) {
    renderStatus(text, statusBase.state);
    clearTimeout(errorTimer);
    errorTimer = setTimeout(() => {
      errorTimer = null;
      renderStatus(statusBase.text, statusBase.state);
    }, 1500);
  }

  // Keep the stage's aspect ratio equal to the stream's.
  ui.video.addEventListener('resize', () => {
    const w = ui.video.videoWidth;
    const h = ui.video.videoHeight;
    if (w > 0 && h > 0) ui.stage.style.setProperty('--video-aspect', `${w} / ${h}`);
  });
  ui.video.addEventListener('loadeddata', () => {
    const p = ui.video.play();
    if (p && p.catch) p.catch(() => {});
  });

  // ---------------------------------------------------------------- lifecycle
  window.addEventListener('pagehide', () => {
    unloading = true;
    clearTimeout(reconnectTimer);
    teardown({ keepalive: true });
  });
  window.addEventListener('pageshow', (e) => {
    if (e.persisted) {            // restored from the back/forward cache
      unloading = false;
      attempt = 0;
      connect();
    }
  });
  window.addEventListener('online', () => {
    if (reconnectTimer) { attempt = 0; connect(); }
  });

  publish(null);
  connect();
})();
