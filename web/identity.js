// The viewer's identity: its id and signed token, kept in localStorage across visits.

import { errorText } from './whep.js';

const STORAGE_KEY = 'pixelcast.viewer';

function load() {
  try {
    const v = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
    if (v && typeof v.token === 'string' && v.token && v.viewer_id != null) return v;
  } catch (_) { /* storage unavailable or corrupt */ }
  return null;
}

function save(v) {
  try { localStorage.setItem(STORAGE_KEY, JSON.stringify(v)); } catch (_) { /* private mode */ }
}

export class Identity {
  constructor() {
    this.viewer = null;  // {viewer_id, token}
  }

  get token() { return this.viewer ? this.viewer.token : null; }
  get viewerId() { return this.viewer ? this.viewer.viewer_id : null; }

  forget() {
    this.viewer = null;
    try { localStorage.removeItem(STORAGE_KEY); } catch (_) { /* ignore */ }
  }

  // The stored viewer (its token refreshed under the current signing key), else a new one.
  async ensure() {
    if (this.viewer) return this.viewer;
    this.viewer = load();
    if (this.viewer) {
      await this.refresh();
      if (this.viewer) return this.viewer;
    }
    const res = await fetch('/api/viewers', { method: 'POST' });
    if (res.status !== 201 && !res.ok) throw new Error(await errorText(res, 'Could not create a viewer'));
    const body = await res.json();
    if (!body || !body.token || body.viewer_id == null) throw new Error('Server returned no viewer token');
    this.viewer = { viewer_id: body.viewer_id, token: body.token };
    save(this.viewer);
    return this.viewer;
  }

  // Signing keys rotate: a returning viewer swaps its token for one under the current key.
  async refresh() {
    try {
      const res = await fetch('/api/viewers', {
        method: 'POST', headers: { Authorization: `Bearer ${this.viewer.token}` },
      });
      if (res.ok) {
        const body = await res.json();
        if (body && body.token && body.viewer_id === this.viewer.viewer_id) {
          this.viewer = { viewer_id: body.viewer_id, token: body.token };
          save(this.viewer);
        }
      } else if (res.status === 401) {
        this.forget();  // erased, expired, or its key retired too long ago
      }
    } catch (_) { /* offline or restarting: keep the stored token */ }
  }
}
