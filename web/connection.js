// One connection to the server: a peer connection with its "control" data channel and the WHEP session
// behind it. It owns its whole lifecycle; once closed, nothing it hears reaches the page any more.

import { deleteSession, errorText, iceServers, postOffer, sessionUrl, waitIceGathering } from './whep.js';

const WHEP_ENDPOINT = '/whep';
const DISCONNECT_GRACE_MS = 3000;

export class Connection {
  // events: {track(stream), state(state), channelOpen(), message(msg), failed(reason)}
  constructor(identity, events) {
    this.identity = identity;
    this.events = events;
    this.pc = null;
    this.channel = null;
    this.state = 'connecting';
    this.sessionUrl = null;
    this.lastSegment = null;
    this.lastStats = null;
    this.closed = false;
    this._timers = new Set();
    this._intervals = new Set();
  }

  // Negotiate: ICE servers, offer, POST /whep (once more with a new token if the stored one is stale).
  async open() {
    try {
      await this.identity.ensure();
      if (this.closed) return;
      const servers = await iceServers(WHEP_ENDPOINT);
      if (this.closed) return;
      this.pc = new RTCPeerConnection({ iceServers: servers });
      this.pc.addTransceiver('video', { direction: 'recvonly' });
      this.channel = this.pc.createDataChannel('control');
      this._wirePeer();
      this._wireChannel();

      await this.pc.setLocalDescription(await this.pc.createOffer());
      await waitIceGathering(this.pc);
      if (this.closed) return;
      const sdp = this.pc.localDescription.sdp;
      let res = await postOffer(WHEP_ENDPOINT, sdp, this.identity.token);
      if (res.status === 401 || res.status === 403) {
        this.identity.forget();  // key rotated long ago, or the viewer was erased: start over once
        await this.identity.ensure();
        if (this.closed) return;
        res = await postOffer(WHEP_ENDPOINT, sdp, this.identity.token);
      }
      if (this.closed) return;
      if (res.status !== 201 && !res.ok) throw new Error(await errorText(res, 'The server refused the stream'));
      this.sessionUrl = sessionUrl(res);
      const answer = await res.text();
      if (this.closed) return;
      await this.pc.setRemoteDescription({ type: 'answer', sdp: answer });
      this._setState('negotiated');
    } catch (err) {
      console.warn('pixelcast: connect failed', err);
      this._fail(err && err.message ? err.message : String(err));
    }
  }

  get channelOpen() {
    return !this.closed && !!this.channel && this.channel.readyState === 'open';
  }

  send(obj) {
    if (!this.channelOpen) return false;
    try { this.channel.send(JSON.stringify(obj)); return true; } catch (_) { return false; }
  }

  // Run fn every ms until this connection closes.
  every(ms, fn) {
    const id = setInterval(() => { if (!this.closed) fn(); }, ms);
    this._intervals.add(id);
  }

  // End everything: the server-side session (DELETE, kept alive through a page unload), channel, peer.
  close({ keepalive = false } = {}) {
    if (this.closed) return;
    this.closed = true;
    this.state = 'closed';
    this._timers.forEach(clearTimeout);
    this._intervals.forEach(clearInterval);
    if (this.sessionUrl && this.identity.token) deleteSession(this.sessionUrl, this.identity.token, keepalive);
    try { if (this.channel) this.channel.close(); } catch (_) { /* ignore */ }
    try { if (this.pc) this.pc.close(); } catch (_) { /* ignore */ }
  }

  _after(ms, fn) {
    const id = setTimeout(() => { this._timers.delete(id); if (!this.closed) fn(); }, ms);
    this._timers.add(id);
    return id;
  }

  _setState(state) {
    this.state = state;
    this.events.state(state);
  }

  _fail(reason) {
    if (this.closed) return;
    this.events.failed(reason);
  }

  _wirePeer() {
    const pc = this.pc;
    let graceTimer = null;
    pc.addEventListener('track', (e) => {
      if (this.closed) return;
      this.events.track((e.streams && e.streams[0]) || new MediaStream([e.track]));
    });
    pc.addEventListener('connectionstatechange', () => {
      if (this.closed) return;
      const s = pc.connectionState;
      if (s === 'connected') {
        clearTimeout(graceTimer);
        this._setState('connected');
      } else if (s === 'disconnected') {
        this._setState('disconnected');
        clearTimeout(graceTimer);
        graceTimer = this._after(DISCONNECT_GRACE_MS, () => {
          if (pc.connectionState === 'disconnected') this._fail('Connection lost');
        });
      } else if (s === 'failed' || s === 'closed') {
        this._fail(s === 'failed' ? 'Connection failed' : 'Connection closed');
      }
    });
  }

  _wireChannel() {
    const ch = this.channel;
    ch.addEventListener('open', () => { if (!this.closed) this.events.channelOpen(); });
    ch.addEventListener('close', () => { if (!this.closed) this._fail('Control channel closed'); });
    ch.addEventListener('message', (e) => {
      if (this.closed) return;
      let msg;
      try { msg = JSON.parse(e.data); } catch (_) { return; }
      if (msg && typeof msg === 'object') this.events.message(msg);
    });
  }
}
