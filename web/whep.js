// WHEP signalling (draft-ietf-wish-whep): the ICE servers a WHEP endpoint advertises, the offer, the session.

const ICE_GATHER_CAP_MS = 2000;

// ICE servers (STUN/TURN) from the endpoint's Link headers:
//   <turn:host:3478?transport=udp>; rel="ice-server"; username="..."; credential="..."
export function parseIceLinks(header) {
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

export async function iceServers(endpoint) {
  try {
    const res = await fetch(endpoint, { method: 'OPTIONS' });
    return parseIceLinks(res.headers.get('Link'));
  } catch (_) {
    return [];  // no ICE servers: host candidates still work on the same network
  }
}

// The whole offer goes in one POST (no trickle): wait for gathering, at most ICE_GATHER_CAP_MS.
export function waitIceGathering(pc) {
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

// POST the offer; a full worker may redirect (307) to one with room, which fetch follows.
export function postOffer(endpoint, sdp, token) {
  return fetch(endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
    body: sdp,
  });
}

// The session's URL from the 201's Location, resolved against where the POST ended up.
export function sessionUrl(res) {
  const location = res.headers.get('Location');
  return location ? new URL(location, res.url || window.location.href).href : null;
}

export function deleteSession(url, token, keepalive) {
  return fetch(url, { method: 'DELETE', keepalive: !!keepalive, headers: { Authorization: `Bearer ${token}` } })
    .catch(() => { /* server gone; nothing to free */ });
}

export async function errorText(res, fallback) {
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
