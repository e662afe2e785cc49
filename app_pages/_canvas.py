"""The Draw page's canvas: a small Streamlit component of our own (st.components.v2, inline JS, no build).

Why not streamlit-drawable-canvas, which the page used before:
- its toolbar is an invisible box over the top-right corner of the drawing (strokes starting there
  were lost) that, once shown, covers whatever sits above the canvas; its "Edit" toggle silently
  stops drawing;
- it waits 200 ms after the mouse is lifted before it sends the drawing, on every stroke;
- its Python side decodes whatever image the browser sends, with no size or format limit.

This canvas is a plain <canvas> that is exactly CANVAS_SIZE pixels square, shown as wide as its column
allows (up to MAX_DISPLAY_PX: the whole width of a phone), drawn with pointer events (mouse, finger,
pen; `touch-action: none`, so a finger draws instead of scrolling). Undo and Clear sit below it, outside
the drawing area. When a stroke ends it sends the drawing at once as `data:image/png;base64,...` (None
once it is empty). That value is still whatever the browser chooses to send: `drawing_canvas` hands
it to mnist_core.preprocess.decode_canvas, which checks it before it decodes it.

Beside the picture it sends the strokes, for a drawing given to the visitors' drawing set
(mnist_core.drawings): `{"pointer": "mouse" | "touch" | "pen", "strokes": [[[x, y, t], ...], ...]}`,
canvas pixels rounded to 0.1 and milliseconds since the first point, in the format
mnist_core.drawings checks. The pointer is the one that drew the most strokes. A point is kept when it
lies a pixel or more from the stroke's last one, and no more than MAX_POINTS + 1 in all are sent (the
set refuses a drawing past MAX_POINTS), so the value stays far under server.maxWidgetStateSize
(1 MB). `drawn_strokes` hands that value over unchecked: add_drawing checks every field.

Streamlit drops a widget's state when its page is left, and the browser drops the canvas with it. So
the last drawing that passed that check is also kept under a key no widget owns, and a canvas mounted
again (the visitor came back to the page) starts from it: it is the component's default, and the
canvas paints it under any new strokes (Undo takes it away in one step, as Clear does).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st

from mnist_core.drawings import MAX_POINTS, MAX_STROKES
from mnist_core.preprocess import CANVAS_SIZE, STROKE_PX, decode_canvas

MAX_DISPLAY_PX = 340    # shown at most this wide on a screen; the canvas itself stays CANVAS_SIZE square

_CSS = """
.mc-root { width: 100%; max-width: var(--mc-max, 340px); }
.mc-canvas { display: block; width: 100%; aspect-ratio: 1 / 1; touch-action: none; cursor: crosshair;
             background: #000; border-radius: var(--st-base-radius, 0.5rem); user-select: none;
             -webkit-user-select: none; }
.mc-tools { display: flex; gap: 0.5rem; margin-top: 0.5rem; }
.mc-tools button { font: inherit; font-size: 0.875rem; color: var(--st-text-color, #31333f);
                   background: var(--st-background-color, #fff); cursor: pointer; padding: 0.25rem 0.75rem;
                   border: 1px solid var(--st-border-color, #d5dae5); border-radius: var(--st-button-radius, 0.5rem); }
.mc-tools button:hover:not(:disabled) { border-color: var(--st-primary-color, #ff4b4b);
                                        color: var(--st-primary-color, #ff4b4b); }
.mc-tools button:disabled { opacity: 0.45; cursor: not-allowed; }
"""

_JS = """
const canvases = new WeakMap();  // one drawing per mounted component; it survives reruns

function mount(parent) {
  const root = document.createElement('div');
  root.className = 'mc-root';
  const canvas = document.createElement('canvas');
  canvas.className = 'mc-canvas';
  canvas.setAttribute('data-testid', 'drawCanvas');
  canvas.setAttribute('aria-label', 'Drawing canvas: draw a digit');
  const tools = document.createElement('div');
  tools.className = 'mc-tools';
  const undo = document.createElement('button');
  undo.type = 'button'; undo.textContent = 'Undo';
  const clear = document.createElement('button');
  clear.type = 'button'; clear.textContent = 'Clear';
  tools.append(undo, clear);
  root.append(canvas, tools);
  parent.appendChild(root);

  // base: the drawing the canvas was mounted with (kept by the server while the page was left), under the strokes;
  // record: what is sent of each stroke ([x, y, t] points, thinned) and its pointer; baseRecord: the base's
  const self = { root, canvas, strokes: [], record: [], current: null, send: () => {}, size: 0, width: 1,
                 base: null, baseRecord: null, t0: null, mounted: false, limits: { points: 2000, strokes: 64 } };
  const ctx = canvas.getContext('2d');

  const paint = () => {  // the whole drawing, from its strokes
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (self.base) ctx.drawImage(self.base, 0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = ctx.fillStyle = '#fff';
    ctx.lineWidth = self.width; ctx.lineCap = 'round'; ctx.lineJoin = 'round';
    for (const s of self.strokes) {
      ctx.beginPath();
      ctx.moveTo(s[0][0], s[0][1]);
      for (const p of s.length > 1 ? s.slice(1) : s) ctx.lineTo(p[0], p[1]);
      ctx.stroke();
    }
  };
  const drawn = () => self.strokes.length > 0 || self.base !== null;
  const enableTools = () => { undo.disabled = clear.disabled = !drawn(); };
  const recorded = () => {  // the strokes as the drawing set keeps them (null once the canvas is empty)
    const base = self.baseRecord ? self.baseRecord.strokes : [];
    const all = base.concat(self.record.map((r) => r.points)).slice(0, self.limits.strokes + 1);
    if (!drawn() || !all.length) return null;
    const used = {};
    if (self.baseRecord) used[self.baseRecord.pointer] = base.length;
    for (const r of self.record) used[r.pointer] = (used[r.pointer] || 0) + 1;
    const pointer = Object.keys(used).reduce((a, b) => (used[b] > used[a] ? b : a));
    return { pointer, strokes: all };
  };
  const pointsKept = () => self.record.reduce((n, r) => n + r.points.length,
    self.baseRecord ? self.baseRecord.strokes.reduce((n, s) => n + s.length, 0) : 0);
  const lastT = () => {  // the last time the base's strokes reach, in ms
    const s = self.baseRecord ? self.baseRecord.strokes : [];
    const last = s.length ? s[s.length - 1] : null;
    return last && last.length ? last[last.length - 1][2] : 0;
  };
  const note = (p, force) => {  // keep p in the stroke being drawn: a pixel from the last kept point, at most the limit
    const r = self.record[self.record.length - 1];
    if (!r || pointsKept() > self.limits.points) return;
    const q = r.points[r.points.length - 1];
    if (!force && q && Math.hypot(p[0] - q[0], p[1] - q[1]) < 1) return;
    if (self.t0 === null) self.t0 = performance.now() - (self.baseRecord ? lastT() + 100 : 0);
    const x = Math.round(Math.min(Math.max(p[0], 0), canvas.width) * 10) / 10;
    const y = Math.round(Math.min(Math.max(p[1], 0), canvas.height) * 10) / 10;
    const t = Math.max(Math.round(performance.now() - self.t0), q ? q[2] : 0);
    r.points.push([x, y, t]);
  };
  const changed = () => {
    enableTools();
    self.sendStrokes(recorded());
    self.send(drawn() ? canvas.toDataURL('image/png') : null);
  };
  const at = (e) => {  // a pointer event -> canvas pixels, whatever size the canvas is shown at
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  const extend = (p) => {
    const s = self.current, q = s[s.length - 1];
    s.push(p);
    ctx.beginPath(); ctx.moveTo(q[0], q[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
  };
  canvas.addEventListener('pointerdown', (e) => {
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    const p = at(e);
    self.current = [p];
    self.strokes.push(self.current);
    self.record.push({ pointer: ['mouse', 'touch', 'pen'].includes(e.pointerType) ? e.pointerType : 'mouse',
                       points: [] });
    note(p, true);
    extend(p);  // a dot where the stroke starts (round caps)
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!self.current) return;
    e.preventDefault();
    for (const ev of (e.getCoalescedEvents ? e.getCoalescedEvents() : []).concat([e])) {
      const p = at(ev);
      note(p, false);
      extend(p);
    }
  });
  const end = (e) => {
    if (!self.current) return;
    if (e && e.type === 'pointerup') note(at(e), false);
    self.current = null;
    changed();
  };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  canvas.addEventListener('lostpointercapture', end);
  undo.addEventListener('click', () => {
    if (self.strokes.length) { self.strokes.pop(); self.record.pop(); }
    else { self.base = null; self.baseRecord = null; }
    if (!drawn()) self.t0 = null;
    paint(); changed();
  });
  clear.addEventListener('click', () => {
    self.strokes = []; self.record = []; self.base = null; self.baseRecord = null; self.t0 = null;
    paint(); changed();
  });

  self.configure = (data) => {
    self.root.style.setProperty('--mc-max', data.max_display_px + 'px');
    self.limits = { points: data.max_points, strokes: data.max_strokes };
    if (self.size !== data.size || self.width !== data.stroke_px) {
      self.size = data.size; self.width = data.stroke_px;
      canvas.width = canvas.height = data.size;
      paint();
      enableTools();
    }
    if (!self.mounted) {  // the drawing kept while the page was left: the server has it already, nothing is sent
      self.mounted = true;
      if (typeof data.drawing === 'string' && data.drawing.startsWith('data:image/png;base64,')) {
        const image = new Image();
        image.onload = () => { self.base = image; paint(); enableTools(); };
        image.src = data.drawing;
        const kept = data.strokes;
        if (kept && typeof kept.pointer === 'string' && Array.isArray(kept.strokes)) self.baseRecord = kept;
      }
    }
  };
  return self;
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let self = canvases.get(parentElement);
  if (!self) {
    self = mount(parentElement);
    canvases.set(parentElement, self);
  }
  self.send = (value) => setStateValue('drawing', value);
  self.sendStrokes = (value) => setStateValue('strokes', value);  // before the drawing: one rerun sees both
  self.configure(data);
  return () => {
    self.root.remove();
    canvases.delete(parentElement);
  };
}
"""

_component = st.components.v2.component("mnist_lab.drawing_canvas", html="", css=_CSS, js=_JS)


def drawing_canvas(key: str, on_change: Callable[[], None] | None = None) -> np.ndarray | None:
    """Show the canvas; the drawing as RGBA uint8 [CANVAS_SIZE, CANVAS_SIZE, 4], or None while it is empty.

    Raises mnist_core.errors.ImageError (one line) when the browser sent something that is not this
    canvas's PNG. `on_change` runs (as a Streamlit callback) when a stroke ends, on Undo and on Clear.
    The drawing is kept for the session under f"{key}_kept" (only a value decode_canvas accepted), with
    its strokes, and a canvas drawn after its page was left starts from them.
    """
    kept_key, kept_strokes_key = f"{key}_kept", f"{key}_kept_strokes"
    kept, kept_strokes = st.session_state.get(kept_key), st.session_state.get(kept_strokes_key)
    result = _component(key=key, data={"size": CANVAS_SIZE, "stroke_px": STROKE_PX, "max_display_px": MAX_DISPLAY_PX,
                                       "max_points": MAX_POINTS, "max_strokes": MAX_STROKES, "drawing": kept,
                                       "strokes": kept_strokes},
                        default={"drawing": kept, "strokes": kept_strokes},
                        on_drawing_change=on_change or (lambda: None), on_strokes_change=lambda: None)
    value = result.get("drawing")
    rgba = decode_canvas(value)
    if rgba is None:
        st.session_state.pop(kept_key, None)
        st.session_state.pop(kept_strokes_key, None)
    else:
        st.session_state[kept_key] = value
        st.session_state[kept_strokes_key] = drawn_strokes(key)
    return rgba


def drawn_strokes(key: str) -> dict | None:
    """What the canvas under `key` sent of its strokes, {"pointer": ..., "strokes": [...]}, unchecked
    (mnist_core.drawings.add_drawing checks every field); None when it sent none."""
    state = st.session_state.get(key)
    value = state.get("strokes") if isinstance(state, dict) else None
    return value if isinstance(value, dict) else None
