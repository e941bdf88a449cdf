// The page's elements and what they show: the status line, the stream's and the browser's figures,
// the current segment. No connection logic here.

const ERROR_SHOW_MS = 5000;
const INFO_SHOW_MS = 1500;

const $ = (id) => document.getElementById(id);

export const ui = {
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

// The status line: a lasting state, over which an error or a note shows for a few seconds.
export class StatusLine {
  constructor(element) {
    this.element = element;
    this.base = { text: 'Starting…', state: 'idle' };
    this.flashTimer = null;
  }

  set(text, state) {
    this.base = { text, state };
    if (!this.flashTimer) this._render(text, state);
  }

  error(message) { this._flash(message, 'error', ERROR_SHOW_MS); }

  info(message) { this._flash(message, this.base.state, INFO_SHOW_MS); }

  _flash(text, state, ms) {
    this._render(text, state);
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => {
      this.flashTimer = null;
      this._render(this.base.text, this.base.state);
    }, ms);
  }

  _render(text, state) {
    this.element.textContent = text;
    this.element.dataset.state = state;
  }
}

function fmt(v, digits) {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–';
}

// The server's stats message: generation rate, real-time factor, buffer, size, steps.
export function showStats(msg) {
  ui.fps.textContent = typeof msg.target_fps === 'number' ? `${fmt(msg.fps, 1)}/${msg.target_fps}` : fmt(msg.fps, 1);
  ui.rtf.textContent = typeof msg.realtime_factor === 'number' ? `${fmt(msg.realtime_factor, 2)}×` : '–';
  ui.buffer.textContent = typeof msg.buffer_seconds === 'number' ? `${fmt(msg.buffer_seconds, 2)} s` : '–';
  ui.res.textContent = msg.width && msg.height ? `${msg.width}×${msg.height}` : '–';
  ui.steps.textContent = msg.steps != null ? String(msg.steps) : '–';
}

// The browser's own decode figures.
export function showDecoded(frames, fps) {
  ui.decoded.textContent = String(frames);
  ui.decodeFps.textContent = fmt(fps, 1);
}

// A new segment: its prompt and the experiment variant it runs, if any.
export function showSegment(msg) {
  const prompt = typeof msg.prompt === 'string' ? msg.prompt : '';
  ui.prompt.textContent = prompt || '—';
  if (msg.variant != null && msg.variant !== '') {
    ui.variant.textContent = String(msg.variant);
    ui.variant.hidden = false;
  } else {
    ui.variant.hidden = true;
  }
  ui.like.setAttribute('aria-pressed', 'false');
  return prompt;
}

export function setButtons(enabled) {
  ui.like.disabled = !enabled;
  ui.skip.disabled = !enabled;
}

export function showSteerHint(text) {
  ui.steerHint.textContent = text;
  ui.steerHint.hidden = false;
}

export function hideSteerHint() {
  ui.steerHint.hidden = true;
}

// Keep the stage's aspect ratio equal to the stream's, and play as soon as there is data.
export function wireVideo() {
  ui.video.addEventListener('resize', () => {
    const w = ui.video.videoWidth;
    const h = ui.video.videoHeight;
    if (w > 0 && h > 0) ui.stage.style.setProperty('--video-aspect', `${w} / ${h}`);
  });
  ui.video.addEventListener('loadeddata', () => play());
}

export function play(stream) {
  if (stream && ui.video.srcObject !== stream) ui.video.srcObject = stream;
  const p = ui.video.play();
  if (p && p.catch) p.catch(() => { /* autoplay is muted; retried on loadeddata */ });
}
