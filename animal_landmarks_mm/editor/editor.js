/* The landmark editor: draws the picture and its points in the browser and reports edits to
 * the annotator's server (animal_landmarks_mm/annotate_app.py), which applies them with the
 * session logic (animal_landmarks_mm/annotate.py) and saves them. Plain ES2020, no library.
 *
 * Conventions that tests and automation rely on:
 * - #landmark-image is the picture; its client rect covers the image's whole pixel extent at the
 *   current zoom and pan, so image pixel (x, y) (pixel centres at integers) is shown at
 *   left + (x + 0.5) * width / W, top + (y + 0.5) * height / H;
 * - each placed point of the current face is an element of class `landmark-point` with
 *   `data-index` (0-27) (and `data-x`, `data-y`: its image pixel, `data-state`), inside
 *   #landmark-editor; other faces' points have class `landmark-point-other`;
 * - #le-save's data-state: saved, saving, unsaved (kept in the page, not on disk yet), conflict;
 * - the URL names the image (?image=NAME);
 * - window.landmarkEditor.timings: click-to-draw times (ms, pointerdown to the next animation
 *   frame after the point is in the DOM), .paintTimings: to the task after that frame (painted);
 *   .openTimes: navigation to the image shown (ms, request to the frame after it is decoded);
 * - the Predict button's data-prediction: ready (the model's points for this image are
 *   pre-annotated: Predict is instant; the button says "Predict ✓"), pending (being
 *   pre-annotated, "Predict …"; the page asks annotator/api/prediction until they are), idle,
 *   off.
 *
 * Edits are drawn at once (optimistic) and sent as operations with a per-image sequence number;
 * the server applies each once and in order and answers the canonical state, which the page
 * adopts whenever it has nothing more to send. Edits the server has not saved stay in the page
 * (shown as "not saved yet") and are sent again until they are saved.
 */
(() => {
  'use strict';

  // The schema's visibility flags, point count and parts: from the server's config
  // (schema.py is their one definition), set once by adoptSchema before anything is drawn.
  let VISIBLE, OCCLUDED, ABSENT, NUM_POINTS, UNDO_STEPS;
  let PARTS = [];      // [{points, away_from}], see annotate_app.label_parts
  const PART_OF = [];  // point index -> its part
  function adoptSchema(config) {
    ({visible: VISIBLE, occluded: OCCLUDED, absent: ABSENT} = config.visibility);
    NUM_POINTS = config.landmarks.length;
    UNDO_STEPS = config.history_steps;  // as many as the server keeps: the two stay in step
    PARTS = config.label_parts;
    PARTS.forEach((part, p) => part.points.forEach((k) => { PART_OF[k] = p; }));
  }
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const PRESS_SLOP = 5;        // screen px a press may move and still be a click
  const HIT_RADIUS = 10;       // screen px around a point that grab it
  const HANDLE_RADIUS = 8;     // screen px around a box corner
  const MAX_SCALE = 32;        // screen px per image px at the closest zoom
  const RETRY_MS = [300, 600, 1200, 2500, 5000];
  const PREDICTION_POLL_MS = 700;  // how often to ask whether pre-annotated points are ready
  const CROWDED_FACE_PX = 140; // a face smaller than this on screen: labels on hover only
  const TAB_KEY = 'landmark-editor-tab';
  // Why the server no longer has a tab's image (an edit answered 410): it restarted, or it
  // forgot the least recently used tab among too many (annotate_app.MAX_TABS page loads)
  const LOST_WHY = 'restarted, or too many tabs';

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    return node;
  }

  function randomId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /**
   * The page's tab id. It survives a reload (F5 finds the tab's unsaved work on the server),
   * but a duplicated tab must not share it: browsers copy sessionStorage into the duplicate,
   * and two pages of one id would take the image from each other. So the id is taken out of
   * sessionStorage while the page lives and put back only when it unloads.
   */
  function tabId() {
    let id = null;
    try {
      id = sessionStorage.getItem(TAB_KEY);
      sessionStorage.removeItem(TAB_KEY);
    } catch (e) {
      return randomId();
    }
    if (!id) id = randomId();
    const keep = () => { try { sessionStorage.setItem(TAB_KEY, id); } catch (e) { /* none */ } };
    const release = () => { try { sessionStorage.removeItem(TAB_KEY); } catch (e) { /* none */ } };
    window.addEventListener('pagehide', keep);
    window.addEventListener('pageshow', (e) => { if (e.persisted) release(); });  // back-forward cache
    return id;
  }

  function clone(value) { return JSON.parse(JSON.stringify(value)); }
  function emptyFace() {
    return {points: new Array(NUM_POINTS).fill(null),
            visibility: new Array(NUM_POINTS).fill(VISIBLE),
            bbox: null, scores: null, predicted: false};
  }
  function nextIndex(face) {
    for (let k = 0; k < face.points.length; k++) {
      if (face.points[k] === null && face.visibility[k] !== ABSENT) return k;
    }
    return null;
  }
  function isTyping(target) {
    return target && (['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName) ||
                      target.isContentEditable);
  }
  /** Whether Enter and Space press ``target`` (a focused button, link...): then they are its
   *  keys, not the editor's shortcuts. */
  function isPressable(target) {
    return !!(target && target.closest &&
              target.closest('button, a[href], summary, [role="button"], [role="option"]'));
  }
  /** The Latin letter a key press is for, in lower case (null: no letter). Its ``key`` where
   *  that is a letter a-z (whatever the layout; Caps Lock gives 'Z' without Shift, which is
   *  still z); none for another letter of the Latin script (ö, ç, ş of a Turkish-F layout are
   *  letters of their own, typed where a US keyboard has x, q...: ö is no x); else, for a
   *  letter of another script (a Cyrillic or Greek layout), the letter at its place on a US
   *  keyboard (``code``), so that Ctrl+Z and the letter keys work there. Not for AltGr
   *  (Ctrl+Alt on Windows): AltGr+z types ż in a Polish layout, no Ctrl+Z. */
  function letterOf(e) {
    if (/^[a-z]$/i.test(e.key)) return e.key.toLowerCase();
    if (/^\p{Script=Latin}$/u.test(e.key)) return null;
    if (!e.altKey && /^\p{L}$/u.test(e.key) && /^Key[A-Z]$/.test(e.code || '')) {
      return e.code.slice(3).toLowerCase();
    }
    return null;
  }

  /** The direction of each point's label, away from the centre of its part (the mouth's
   *  labels spread around the mouth, a brow's go away from its eye). */
  function labelDirections(pts) {
    const centre = (indices) => {
      const ps = indices.map((k) => pts[k]).filter(Boolean);
      if (!ps.length) return null;
      return [ps.reduce((s, p) => s + p[0], 0) / ps.length,
              ps.reduce((s, p) => s + p[1], 0) / ps.length];
    };
    const faceCentre = centre([...Array(pts.length).keys()]);
    const partCentres = PARTS.map(
      (part) => (part.points.length > 1 ? centre(part.points) : null));
    return pts.map((p, k) => {
      if (!p) return null;
      const part = PART_OF[k], away = PARTS[part] ? PARTS[part].away_from : 'beside';
      if (away === 'beside') return [1, 0];  // e.g. the nose tip: clear of the upper lip
      let from = away === 'face' ? faceCentre : away === 'self' ? partCentres[part]
        : partCentres[away] || faceCentre;
      if (from) {
        const vx = p[0] - from[0], vy = p[1] - from[1], n = Math.hypot(vx, vy);
        if (n > 1e-6) return [vx / n, vy / n];
      }
      return [0.7071, -0.7071];
    });
  }

  /** Where to write each point's number so that no two labels overlap each other or a point:
   *  the preferred side first, then turning around it, then further out (greedy, in index
   *  order). ``pts``: screen positions (null: none); returns [x, y, anchor] or null each. */
  function placeLabels(pts, fontPx, radius, only) {
    const dirs = labelDirections(pts);
    const boxes = [];
    const charW = fontPx * 0.62, half = fontPx * 0.55;
    const free = (x0, y0, x1, y1) => {
      for (const b of boxes) {
        if (x0 < b[2] && x1 > b[0] && y0 < b[3] && y1 > b[1]) return false;
      }
      for (const p of pts) {
        if (p && p[0] + radius > x0 && p[0] - radius < x1 && p[1] + radius > y0 &&
            p[1] - radius < y1) return false;
      }
      return true;
    };
    const turns = [0, 0.7854, -0.7854, 1.5708, -1.5708, 2.3562, -2.3562, 3.1416];
    return pts.map((p, k) => {
      if (!p || (only && !only.has(k))) return null;
      const width = String(k).length * charW + 2;
      const [dx, dy] = dirs[k];
      let fallback = null;
      for (const distance of [radius + 3, radius + 9]) {
        for (const turn of turns) {
          const c = Math.cos(turn), s = Math.sin(turn);
          const ux = dx * c - dy * s, uy = dx * s + dy * c;
          // the label's box touches the circle of ``distance`` around the point
          const cx = p[0] + ux * (distance + width / 2), cy = p[1] + uy * (distance + half);
          const box = [cx - width / 2, cy - half, cx + width / 2, cy + half];
          if (!fallback) fallback = box;
          if (free(...box)) {
            boxes.push(box);
            return [cx, cy];
          }
        }
      }
      boxes.push(fallback);
      return [(fallback[0] + fallback[2]) / 2, (fallback[1] + fallback[3]) / 2];
    });
  }

  class Editor {
    constructor(root) {
      this.root = root;
      this.tab = tabId();
      this.config = null;
      this.doc = null;         // the server's state of the open image
      this.edit = null;        // the page's state of it (the server's plus pending edits)
      this.refused = new Set();  // the open image's operations the server refused (their seq)
      this.undoStack = [];
      this.redoStack = [];
      // image -> {undo, redo}: the stacks of the images left, as the server keeps their
      // history (annotate_app.KEPT_HISTORIES), taken up again on coming back
      this.histories = new Map();
      this.queue = [];         // operations not on disk yet, in order
      this.seq = 0;
      this.lastAbsent = null;  // the point x just marked absent (x again unsets it)
      this.predictArmed = null;  // a Predict over placed points, asked for once (see predict)
      this.applied = 0;
      this.saved = 0;
      this.inFlight = false;
      this.offline = false;
      this.retries = 0;
      this.retryTimer = null;
      // Why the unsaved edits cannot reach the server now: {message, gone}, when it restarted
      // and cannot open the image again (unreadable now, or gone from the folder); else null
      this.stuck = null;
      this.predictionTimer = null;
      this.waiters = [];
      this.view = {s: 1, tx: 0, ty: 0, fit: 1};
      this.selected = null;
      this.hover = null;
      this.labels = true;
      this.boxMode = false;
      this.busy = '';
      this.gesture = null;
      this.space = false;
      this.pointer = null;     // where the mouse is over the picture (viewport px), or null
      this.navigating = false;
      this.locationMoved = false;  // Back or Forward pressed while an image opened
      this.shownUrl = null;    // the URL of the picture #landmark-image holds decoded, or null
      this.imageError = '';    // why the open image's picture is not shown ('': it is)
      this.timings = [];
      this.paintTimings = [];
      this.openTimes = [];
      this.message = '';
      this.els = {};
      for (const node of root.querySelectorAll('[id]')) this.els[node.id] = node;
      this.els.root = root;
    }

    $(id) { return this.els[id] || document.getElementById(id); }

    // --- start ---------------------------------------------------------------------------------

    async start() {
      this.bind();
      for (let attempt = 0; ; attempt++) {
        try {
          this.config = await this.request('GET', 'annotator/api/config');
          adoptSchema(this.config);
          break;
        } catch (e) {
          this.say('cannot reach the annotator server; retrying…', 'error');
          await new Promise((resolve) => setTimeout(resolve, RETRY_MS[Math.min(attempt, 4)]));
        }
      }
      this.buildPanel();
      const wanted = new URLSearchParams(location.search).get('image');
      let refused = '';
      if (wanted !== null && !(await this.go({image: wanted}, {replace: true}))) {
        refused = this.$('le-message').textContent;
      }
      if (!this.doc) {
        await this.go({go: 'start'}, {replace: true});
        if (refused) this.say(refused, 'error');
      }
      this.root.dataset.ready = '1';
    }

    bind() {
      const vp = this.$('le-viewport');
      vp.addEventListener('pointerdown', (e) => this.onPointerDown(e));
      vp.addEventListener('pointermove', (e) => this.onPointerMove(e));
      vp.addEventListener('pointerup', (e) => this.onPointerUp(e));
      vp.addEventListener('pointercancel', (e) => this.onPointerUp(e, true));
      vp.addEventListener('pointerleave', () => {
        this.pointer = null;
        if (!this.gesture) this.setHover(null);
      });
      vp.addEventListener('wheel', (e) => this.onWheel(e), {passive: false});
      vp.addEventListener('contextmenu', (e) => e.preventDefault());
      document.addEventListener('keydown', (e) => this.onKeyDown(e));
      document.addEventListener('keyup', (e) => { if (e.key === ' ') this.releaseSpace(); });
      // A space let go in another window (Alt+Tab while holding it) sends no keyup here: it
      // would stay held, and every drag would pan.
      window.addEventListener('blur', () => this.releaseSpace());
      document.addEventListener('visibilitychange', () => this.releaseSpace());
      window.addEventListener('resize', () => this.onResize());
      window.addEventListener('popstate', () => this.followLocation());
      window.addEventListener('beforeunload', (e) => {
        if (this.unsaved() || (this.doc && (this.doc.save_error || this.doc.conflict))) {
          e.preventDefault();
          e.returnValue = '';
        }
      });
      this.root.addEventListener('click', (e) => {
        const button = e.target.closest('button[data-action]');
        if (button && !button.disabled) {
          this.action(button.dataset.action);
          button.blur();
        }
      });
      this.$('le-goto').addEventListener('submit', (e) => {
        e.preventDefault();
        const form = this.$('le-goto'), input = this.$('le-goto-input');
        const wanted = input.value.trim();
        // The Go button keeps no focus (as the data-action buttons): Enter would go there
        // again instead of accepting, Space would press it instead of panning. The text
        // field keeps it until the image is shown (a name mistyped is retyped there).
        const focused = document.activeElement;
        if (focused !== input && form.contains(focused)) focused.blur();
        if (wanted) {
          this.go({wanted}).then((ok) => {
            if (ok && form.contains(document.activeElement)) document.activeElement.blur();
          });
        }
      });
      this.$('le-skip').addEventListener('submit', (e) => {
        e.preventDefault();
        // the keys are shortcuts again (n would be typed into the reason, Enter would skip
        // the next image too)
        if (this.$('le-skip').contains(document.activeElement)) document.activeElement.blur();
        this.skip(this.$('le-skip-reason').value);
      });
      this.$('le-face').addEventListener('change', (e) => {
        if (!this.edit) return;
        this.edit.face = Number(e.target.value);
        this.selected = null;
        e.target.blur();
        this.draw();
      });
      this.$('le-chart').addEventListener('click', () => this.showChart(true));
      this.$('le-chart-modal').addEventListener('click', () => this.showChart(false));
      this.$('le-help').addEventListener('click', () => { this.$('le-help').hidden = true; });
      this.$('le-points').addEventListener('click', (e) => {
        const row = e.target.closest('[data-index]');
        if (!row || !this.edit) return;
        const index = Number(row.dataset.index);
        this.selected = this.selected === index ? null : index;
        this.draw();
      });
      if (window.ResizeObserver) new ResizeObserver(() => this.onResize()).observe(vp);
    }

    buildPanel() {
      const list = this.$('le-points');
      list.replaceChildren();
      this.rows = this.config.landmarks.map((lm, k) => {
        const row = document.createElement('div');
        row.className = 'le-point-row';
        row.dataset.index = k;
        row.title = `${k}: ${lm.description}`;
        const num = document.createElement('span');
        num.className = 'le-num';
        num.textContent = k;
        const dot = document.createElement('span');
        dot.className = 'le-dot';
        dot.style.background = lm.color;
        const name = document.createElement('span');
        name.textContent = lm.description;
        const state = document.createElement('span');
        state.className = 'le-state';
        row.append(num, dot, name, state);
        list.append(row);
        return {row, state};
      });
      const reasons = this.$('le-skip-reasons');
      for (const reason of this.config.skip_reasons) {
        const option = document.createElement('option');
        option.value = reason;
        reasons.append(option);
      }
      this.$('le-skip-reason').value = this.config.skip_reasons[0];
      this.$('le-skip-reason').maxLength = this.config.max_reason_chars;  // the server's limit
      const table = this.$('le-help-table');
      for (const [key, what] of Object.entries(this.config.shortcuts)) {
        const tr = document.createElement('tr');
        const a = document.createElement('td');
        a.textContent = key;
        const b = document.createElement('td');
        b.textContent = what;
        tr.append(a, b);
        table.append(tr);
      }
      this.root.querySelector('[data-action="predict"]').disabled = !this.config.predict;
      for (const id of ['le-chart-image', 'le-chart-big-image']) {
        this.$(id).src = this.config.chart.url;
      }
      this.$('le-goto-input').placeholder = `go to: number (1-${this.config.count}) or name`;
    }

    // --- talking to the server ----------------------------------------------------------------

    async request(method, url, body) {
      const response = await fetch(url, {
        method, headers: body ? {'content-type': 'application/json'} : {},
        body: body ? JSON.stringify(body) : undefined, cache: 'no-store',
      });
      let answer = null;
      try { answer = await response.json(); } catch (e) { answer = null; }
      if (!response.ok && !(answer && typeof answer === 'object')) {
        throw new Error(`HTTP ${response.status}`);
      }
      if (answer && typeof answer === 'object') answer.httpStatus = response.status;
      return answer;
    }

    enqueue(op) {
      op.seq = ++this.seq;
      this.queue.push(op);
      this.renderSave();
      this.flush();
    }

    async flush() {
      if (this.inFlight || !this.doc || !this.doc.token) return;
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      // at most what the server takes in one request (it refuses more, again and again);
      // the rest go when it has answered
      const ops = this.queue.filter((op) => op.seq > this.applied).slice(0, this.config.max_ops);
      if (!ops.length && this.saved >= this.applied && !this.queue.length) {
        this.wake();
        return;
      }
      this.inFlight = true;
      this.renderSave();
      const token = this.doc.token;
      let answer = null;
      try {
        answer = await this.request('POST', 'annotator/api/edit', {tab: this.tab, token, ops});
      } catch (e) {
        answer = null;
      }
      this.inFlight = false;
      if (!this.doc || token !== this.doc.token) {
        // an answer about the image shown before (Reload, or another image, opened while it
        // was on its way): the edits made since are this image's, and no one else sends them
        this.wake();
        this.flush();
        return;
      }
      if (!answer) {
        this.offline = true;
        this.scheduleRetry();
        this.renderSave();
        this.wake();
        return;
      }
      if (answer.httpStatus === 410) {
        await this.reopen();
        return;
      }
      if (!answer.state) {
        this.offline = answer.httpStatus >= 500;
        this.say(answer.message || `the server answered ${answer.httpStatus}`, 'error');
        this.scheduleRetry();
        this.renderSave();
        this.wake();
        return;
      }
      this.offline = false;
      this.retries = 0;
      const state = answer.state;
      this.applied = state.applied;
      this.saved = state.saved;
      this.queue = this.queue.filter((op) => op.seq > state.saved);
      this.doc = state;
      for (const seq of answer.refused || []) this.refused.add(seq);
      if (state.save_error) {
        this.say(state.save_error, 'error');
        // a save that fails the same way each time is sent again when asked (s, an edit)
        if (!state.conflict && !state.save_permanent) this.scheduleRetry(3000);
      } else if (state.message) {
        this.say(state.message, state.message.startsWith('refused') ? 'error' : '');
      }
      if (this.busy && !this.queue.some((op) => op.seq > this.applied)) this.busy = '';
      this.adopt();
      this.renderHeader();
      this.renderSave();
      this.renderPredict();
      this.watchPrediction();
      if (this.queue.some((op) => op.seq > this.applied)) this.flush();
      this.wake();
    }

    scheduleRetry(delay) {
      if (this.retryTimer) return;
      const wait = delay || RETRY_MS[Math.min(this.retries, RETRY_MS.length - 1)];
      this.retries += 1;
      this.retryTimer = setTimeout(() => { this.retryTimer = null; this.flush(); }, wait);
    }

    wake() {
      const waiters = this.waiters;
      this.waiters = [];
      for (const resolve of waiters) resolve();
    }

    /** Send the edits the server has not applied yet (not waiting for them to be saved), for
     *  at most ``ms``: Reload's, before it drops the page's work. */
    async sendUnsent(ms = 2000) {
      const deadline = performance.now() + ms;
      // Work the server applied and did not save (a conflict, a full disk) is asked about
      // once: a server that lost the tab since (restarted) answers 410, and the page opens
      // the image again and sends that work, for the server to set aside
      let asked = false;
      while (!this.stuck && !this.offline && performance.now() < deadline) {
        const unsent = this.queue.some((op) => op.seq > this.applied);
        if (!this.inFlight && !unsent && (asked || this.applied <= this.saved)) break;
        const woken = new Promise((resolve) => this.waiters.push(resolve));
        if (!this.inFlight) {
          asked = asked || !unsent;
          this.flush();
        }
        await Promise.race([woken, new Promise((r) => setTimeout(r, 250))]);
      }
    }

    /** Wait until every edit is on disk (true), or ``ms`` passed (false). */
    async settle(ms = 4000) {
      const deadline = performance.now() + ms;
      let asked = false;
      while (this.queue.length || this.inFlight) {
        if (this.doc && this.doc.conflict) return false;
        if (performance.now() > deadline) return false;
        const woken = new Promise((resolve) => this.waiters.push(resolve));
        if (this.held()) {
          // Edits the server cannot take now: asked once more (the next answer wakes this),
          // not again and again for the whole wait.
          if (asked) return false;
          asked = true;
          this.flush();
          await Promise.race([woken, new Promise(
            (r) => setTimeout(r, Math.max(deadline - performance.now(), 0)))]);
          continue;
        }
        if (!this.inFlight) this.flush();
        await Promise.race([woken, new Promise((r) => setTimeout(r, 250))]);
      }
      return true;
    }

    /** How many edits are not on disk: those of the page, or (a reloaded page) those the
     *  server applied and could not save. */
    unsaved() {
      return Math.max(this.queue.length, this.applied - this.saved);
    }

    /** Why the page's unsaved edits cannot be saved by sending them again at once ('': they
     *  can, or there are none). */
    held() {
      if (this.stuck) return this.stuck.message;
      return this.doc && this.doc.save_permanent ? this.doc.save_error : '';
    }

    /** The server lost the image (restarted, or forgot this tab among too many: its
     *  MAX_TABS): open it again, send what is not saved. */
    async reopen() {
      const token = this.doc.token;
      // Counted as a request in flight: an edit made meanwhile is not sent with the lost token
      // (its 410 would reopen the image again and replay the same edits twice, the second
      // time over the first's files: a false conflict); it goes with the replayed ones.
      this.inFlight = true;
      let answer = null;
      try {
        // seen: the files the edits were made over; if another tab changed them since, the
        // server refuses to save over them (a conflict) instead of replaying blindly
        answer = await this.request('POST', 'annotator/api/open',
                                    {tab: this.tab, image: this.doc.image, discard: true,
                                     seen: this.doc.seen || null});
      } catch (e) {
        answer = null;
      }
      this.inFlight = false;
      if (!this.doc || this.doc.token !== token) {
        // another image (or Reload) was shown meanwhile: this answer is not about it
        this.wake();
        this.flush();
        return;
      }
      if (!answer) {
        this.offline = true;
        this.scheduleRetry();
        this.renderSave();
        this.wake();
        return;
      }
      if (!answer.ok || !answer.state || !answer.state.token || !answer.state.edit) {
        // Not opened: the edits stay in this page. Not sent to the token of an image opened
        // without its edits (an unreadable one): an edit there is told 410 again, and this
        // would loop; asked again later, as after a lost answer, more slowly each time.
        const image = this.doc.image, count = this.queue.length;
        const gone = answer.reason === 'not_found';
        const message = gone
          ? `not saved: the server lost this tab's image (${LOST_WHY}) and ${image} is gone ` +
            `from the image folder, so your ${count} unsaved edits of it cannot be saved ` +
            '(Reload drops them and opens the first image to do)'
          : `not saved: the server lost this tab's image (${LOST_WHY}) and cannot open ` +
            `${image} again ` +
            `(${answer.message || `it answered ${answer.httpStatus}`}); your ${count} ` +
            'edits are kept in this page and sent again';
        this.stuck = {message, gone};
        this.offline = false;
        this.say(message, 'error');
        this.scheduleRetry();
        this.renderSave();
        this.wake();
        return;
      }
      this.stuck = null;
      // A press not let go yet is taken back (as go() does): its undo step is on the stacks
      // cleared below, and the state sent below would hold its point.
      this.cancelGesture();
      let pending = this.queue;
      const count = this.unsaved();
      // Edits the server applied and did not save that this page holds no op of (a page
      // reloaded while saves failed: the server's answer showed them, the ops stayed there)
      // went with the restart: sending the queue alone dropped them, unsaid.
      const held = this.applied > this.saved && !pending.some((op) => op.seq === this.saved + 1);
      if (held || pending.some((op) => op.op === 'undo' || op.op === 'redo')) {
        // The server's undo history went with the restart: an undo or redo sent again would
        // undo nothing there, and the page then take the server's state, the undo lost
        // unsaid. What the page shows is sent instead, as one edit. A skip or a Predict not
        // answered yet has no (or not all its) effect here: it goes after that, as it was
        // (a skip's navigation waits on its op; a Predict sets the page busy: the last op).
        const last = pending[pending.length - 1];
        const kept = !!last && (last.op === 'skip' ||
                                (last.op === 'predict' && last.seq > this.applied));
        pending = [{op: 'restore', state: this.snapshot()}].concat(kept ? [last] : []);
      }
      this.doc = answer.state;
      this.seq = 0;
      this.applied = 0;
      this.saved = 0;
      this.queue = [];
      this.refused.clear();
      // the server's undo history is gone with it: an undo now would undo nothing there
      this.undoStack = [];
      this.redoStack = [];
      for (const op of pending) {  // renumbered in place: a skip waiting on its op sees it
        op.seq = ++this.seq;
        this.queue.push(op);
      }
      this.say(`the server lost this tab's image (${LOST_WHY}): sending ${count} unsaved ` +
               'edits again');
      this.flush();
    }

    /** Take the server's state when nothing is pending (the page's guesses become facts). */
    adopt() {
      if (!this.doc || !this.doc.edit || this.gesture) return;
      if (this.queue.some((op) => op.seq > this.applied) || this.busy) return;
      const theirs = JSON.stringify(this.doc.edit);
      if (this.edit && JSON.stringify(this.edit) === theirs) return;
      const face = this.edit ? this.edit.face : this.doc.edit.face;
      this.edit = JSON.parse(theirs);
      if (face < this.edit.faces.length) this.edit.face = face;  // the page's choice of face
      this.draw();
    }

    // --- opening images ---------------------------------------------------------------------

    /** Open an image (params of annotator/api/open); true when one is shown. Not when the
     *  edit ``unless`` was refused by the server (its refusal is shown instead). */
    async go(params, {replace = false, history: push = true, discard = false,
                      unless = null, carry = false} = {}) {
      if (this.navigating) return false;
      // Up from the start, while the edits are still being saved: a second n meanwhile is no
      // second navigation, and an edit is refused rather than made to the image being left.
      this.navigating = true;
      // A press or drag not let go yet (n pressed with the mouse button down) is taken back:
      // its release would come when the image is being left (or gone), and its point would
      // be drawn and never saved.
      this.cancelGesture();
      const started = performance.now();
      try {
        if (discard) {
          // Reload: what the page holds unsent goes to the server first, which sets the
          // change it drops aside (.drafts/superseded/); dropped here, it was lost unsaid
          await this.sendUnsent();
        } else if (!(await this.settle())) {
          this.say(this.conflictMessage() || this.held() || 'not saved yet: your edits are ' +
                   'kept in this page until the server has them; try again in a moment', 'error');
          return false;
        }
        if (unless && this.refused.has(unless.seq)) {  // saved, but that edit was refused
          this.say((this.doc && this.doc.message) || `refused: ${unless.op}`, 'error');
          return false;
        }
        const left = this.doc && this.doc.image;
        // what the server said of the image left (a skip's: where its unfinished face went),
        // shown with the next image's words rather than replaced by them
        const carried = carry && this.doc ? (this.doc.message || '') : '';
        this.$('le-loading').classList.add('le-visible');
        let answer;
        try {
          answer = await this.request('POST', 'annotator/api/open', Object.assign(
            {tab: this.tab, current: this.doc ? this.doc.index : -1, discard}, params));
        } catch (e) {
          this.say('the server is unreachable; try again in a moment', 'error');
          return false;
        }
        if (!answer || !answer.state) {
          this.say((answer && answer.message) || 'cannot open that image', 'error');
          return false;
        }
        if (!discard && this.edit) {  // its edits saved: the server keeps its history too
          this.histories.delete(left);
          this.histories.set(left, {undo: this.undoStack, redo: this.redoStack});
          while (this.histories.size > this.config.kept_histories) {
            this.histories.delete(this.histories.keys().next().value);
          }
        }
        const said = answer.ok ? (answer.state.message || '') : answer.message;
        await this.show(answer.state, carried ? [`${left}: ${carried}`, said].filter(Boolean)
          .join('; ') : said, answer.ok ? '' : 'error');
        // Back or Forward pressed meanwhile: the history entry they reached is left as it is,
        // and followed once this image is shown (finally, below)
        if (!this.locationMoved) {
          const url = new URL(location.href);
          url.searchParams.set('image', answer.state.image);
          if (replace || !push) history.replaceState({image: answer.state.image}, '', url);
          else history.pushState({image: answer.state.image}, '', url);
        }
        requestAnimationFrame(() => this.openTimes.push(performance.now() - started));
        return true;  // shown (with its error, if it could not be opened)
      } finally {
        this.navigating = false;
        this.$('le-loading').classList.remove('le-visible');
        if (this.locationMoved) {
          this.locationMoved = false;
          this.followLocation();
        }
      }
    }

    /** Show the image the address names, after Back or Forward. One pressed while another
     *  image opens is remembered and followed when that one is shown: pressed twice, Back goes
     *  back twice. */
    followLocation() {
      const wanted = new URLSearchParams(location.search).get('image');
      if (this.navigating) { this.locationMoved = true; return; }
      if (wanted !== null && (!this.doc || wanted !== this.doc.image)) {
        this.go({image: wanted}, {history: false}).then((shown) => {
          // Refused (edits not saved yet, the image gone...): the address names the image
          // still shown, not the one Back or Forward reached (a reload would open that one).
          // Not while another Back is followed: that one's address stands.
          if (shown || this.navigating || !this.doc) return;
          const url = new URL(location.href);
          url.searchParams.set('image', this.doc.image);
          history.replaceState({image: this.doc.image}, '', url);
        });
      }
    }

    async show(state, message, kind) {
      const sameImage = !!state.url && this.shownUrl === state.url;
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.doc = state;
      // Counted on from the server's: a tab refused to leave its unsaved work (409) answers
      // that work's state, whose edits 1..applied are applied; new ones from 1 would be
      // skipped there as already applied.
      this.seq = state.applied || 0;
      this.applied = state.applied || 0;
      this.saved = state.saved || 0;
      this.queue = [];
      this.refused.clear();
      this.offline = false;
      this.stuck = null;
      this.retries = 0;
      // The image's history as this page left it, if the server took up the same (its step
      // counts say so; a Reload, another tab's save or a restart left it none): the two
      // histories stay in step, each undo here undoing the same edit there.
      const kept = this.histories.get(state.image);
      this.histories.delete(state.image);
      const same = kept && state.edit && kept.undo.length === state.undo &&
        kept.redo.length === state.redo;
      this.undoStack = same ? kept.undo : [];
      this.redoStack = same ? kept.redo : [];
      this.selected = null;
      this.hover = null;
      this.busy = '';
      this.boxMode = false;
      this.gesture = null;
      this.edit = state.edit ? clone(state.edit) : null;
      this.say(message, kind);
      if (state.edit) {
        if (!sameImage) {
          try {
            await this.loadImage(state.url, state.width, state.height);
            this.imageError = '';
          } catch (e) {
            // Not the previous picture under this image's points, and no clicks on nothing
            // (nor on a picture of another size: see loadImage).
            this.hideImage();
            this.imageError = `cannot show ${state.image}: ` +
              `${(e && e.shownOtherwise) || 'the browser could not decode it'} ` +
              '(skip it, or mend the file and Reload)';
            this.say(this.imageError, 'error');
          }
          this.fit();
        }
      } else {
        this.hideImage();
        this.imageError = '';
      }
      // the next image's bytes, and its pixels decoded, into the browser's memory cache (a
      // 4000x3000 JPEG takes tens of ms to decode: n then shows it from the cache); and the
      // next to do's, where u would show another
      for (const url of [state.next_url, state.to_do_url]) {
        if (!url) continue;
        const prefetch = new Image();
        prefetch.src = url;
        prefetch.decode().catch(() => {});  // one it cannot decode is said when opened
      }
      this.renderHeader();
      this.renderSave();
      this.draw();
      this.watchPrediction();
      // A reloaded page shown its tab's work that could not be saved (409): asked again, as
      // the page before the reload did (a conflict waits for Reload instead)
      if (state.save_error && !state.conflict && !state.save_permanent) {
        this.scheduleRetry(3000);
      }
    }

    /** While the model's points for this image are being pre-annotated, ask now and then
     *  whether they are ready (the button then says so). */
    watchPrediction() {
      if (this.predictionTimer || !this.doc || this.doc.prediction !== 'pending') return;
      const token = this.doc.token;
      this.predictionTimer = setTimeout(async () => {
        this.predictionTimer = null;
        if (!this.doc || this.doc.token !== token || this.doc.prediction !== 'pending') return;
        let answer = null;
        try {
          answer = await this.request('GET', 'annotator/api/prediction?' +
                                      new URLSearchParams({tab: this.tab, token}));
        } catch (e) {
          answer = null;  // the server is away: ask again later
        }
        if (!this.doc || this.doc.token !== token) return;
        if (answer && typeof answer.prediction === 'string' &&
            this.doc.prediction === 'pending') {
          this.doc.prediction = answer.prediction;
          this.renderPredict();
        }
        this.watchPrediction();
      }, PREDICTION_POLL_MS);
    }

    hideImage() {
      const img = this.$('landmark-image');
      img.removeAttribute('src');
      img.style.visibility = 'hidden';
      this.shownUrl = null;
    }

    /** Show the picture at ``url``, of ``width`` x ``height`` as training decodes it. Throws
     *  when the browser cannot decode it, or decodes it in another size (``shownOtherwise``
     *  says how): stretched over the annotator's size, each point would be placed elsewhere
     *  in the picture than the person saw it. */
    async loadImage(url, width, height) {
      const img = new Image();
      img.alt = '';
      img.draggable = false;
      img.className = 'le-image';
      img.src = url;
      await img.decode();
      if (img.naturalWidth !== width || img.naturalHeight !== height) {
        const error = new Error('the picture is shown in another size');
        error.shownOtherwise = `the browser shows it as ${img.naturalWidth}x` +
          `${img.naturalHeight}, training decodes it as ${width}x${height} (EXIF orientation?)`;
        throw error;
      }
      img.id = 'landmark-image';
      const old = this.$('landmark-image');
      old.replaceWith(img);
      this.els['landmark-image'] = img;
      this.shownUrl = url;
    }

    // --- the view: zoom and pan ---------------------------------------------------------------

    viewportSize() {
      const vp = this.$('le-viewport');
      return [vp.clientWidth, vp.clientHeight];
    }

    fit() {
      if (!this.doc || !this.doc.edit) return;
      const [vw, vh] = this.viewportSize();
      const {width: W, height: H} = this.doc;
      const s = Math.min(vw / W, vh / H);
      this.view = {s, tx: (vw - W * s) / 2, ty: (vh - H * s) / 2, fit: s};
      this.applyView();
    }

    limits() {
      return [Math.min(this.view.fit, 1) * 0.5, Math.max(MAX_SCALE, this.view.fit * 2)];
    }

    zoomAt(cx, cy, factor) {
      if (!this.doc || !this.doc.edit) return;  // no picture to zoom (none open yet)
      const [lo, hi] = this.limits();
      const s = Math.min(hi, Math.max(lo, this.view.s * factor));
      const k = s / this.view.s;
      this.view.tx = cx - (cx - this.view.tx) * k;
      this.view.ty = cy - (cy - this.view.ty) * k;
      this.view.s = s;
      this.applyView();
    }

    zoomToFace() {
      if (!this.edit) return;
      const face = this.edit.faces[this.edit.face];
      const xs = [], ys = [];
      face.points.forEach((p) => { if (p) { xs.push(p[0]); ys.push(p[1]); } });
      if (face.bbox) { xs.push(face.bbox[0], face.bbox[2]); ys.push(face.bbox[1], face.bbox[3]); }
      if (xs.length < 2) {
        this.say('nothing to zoom on: place two points or draw the face box (b)');
        return;
      }
      const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys);
      const y1 = Math.max(...ys);
      const side = Math.max(x1 - x0, y1 - y0, 16) * 1.7;
      const [vw, vh] = this.viewportSize();
      const [lo, hi] = this.limits();
      const s = Math.min(hi, Math.max(lo, Math.min(vw, vh) / side));
      this.view.s = s;
      this.view.tx = vw / 2 - ((x0 + x1) / 2 + 0.5) * s;
      this.view.ty = vh / 2 - ((y0 + y1) / 2 + 0.5) * s;
      this.applyView();
    }

    applyView() {
      const img = this.$('landmark-image');
      const {s, tx, ty} = this.view;
      // Sized, not scaled: Chromium without a GPU rasterises a scaled-down huge element only
      // in part. The element's box is the image's pixel extent either way.
      img.style.width = `${this.doc.width * s}px`;
      img.style.height = `${this.doc.height * s}px`;
      img.style.transform = `translate(${tx}px, ${ty}px)`;
      img.style.visibility = this.shownUrl ? 'visible' : 'hidden';
      img.classList.toggle('le-pixelated', s >= 4);
      this.$('le-zoom').textContent = s >= 1 ? `${s.toFixed(s < 10 ? 1 : 0)}×`
        : `${Math.round(s * 100)}%`;
      this.drawOverlay();
    }

    onResize() {
      if (!this.doc || !this.doc.edit) return;
      const [vw, vh] = this.viewportSize();
      if (this.lastSize && this.lastSize[0] === vw && this.lastSize[1] === vh) return;
      const wasFit = !this.lastSize || Math.abs(this.view.s - this.view.fit) < 1e-9;
      this.lastSize = [vw, vh];
      const {width: W, height: H} = this.doc;
      this.view.fit = Math.min(vw / W, vh / H);
      if (wasFit) this.fit(); else this.applyView();
    }

    /** The image pixel under a pointer event (pixel centres at integers). */
    imagePoint(e) {
      const rect = this.$('landmark-image').getBoundingClientRect();
      return [(e.clientX - rect.left) * this.doc.width / rect.width - 0.5,
              (e.clientY - rect.top) * this.doc.height / rect.height - 0.5];
    }

    screenOf(x, y) {
      return [this.view.tx + (x + 0.5) * this.view.s, this.view.ty + (y + 0.5) * this.view.s];
    }

    inside(x, y) {
      return x >= -0.5 && y >= -0.5 && x <= this.doc.width - 0.5 && y <= this.doc.height - 0.5;
    }

    clampToImage(x, y) {
      return [Math.min(Math.max(x, -0.5), this.doc.width - 0.5),
              Math.min(Math.max(y, -0.5), this.doc.height - 0.5)];
    }

    // --- editing: the page's copy of annotate.ImageEdit ---------------------------------------

    get face() { return this.edit.faces[this.edit.face]; }

    target() {
      return this.selected !== null ? this.selected : nextIndex(this.face);
    }

    snapshot() {
      const e = this.edit;
      return clone({faces: e.faces, face: e.face, status: e.status,
                    status_reason: e.status_reason, reviewed_at: e.reviewed_at,
                    model: e.model});
    }

    restore(snapshot) {
      Object.assign(this.edit, clone(snapshot));
      this.edit.face = Math.min(this.edit.face, this.edit.faces.length - 1);
    }

    record() {
      this.undoStack.push(this.snapshot());
      if (this.undoStack.length > UNDO_STEPS) this.undoStack.shift();
      this.redoStack = [];
    }

    edited() {
      this.edit.status = this.edit.faces.some((f) => f.predicted) ? 'predicted' : 'annotated';
      this.edit.status_reason = '';
    }

    /** Apply an operation to the page's state, as ImageEdit.apply does on the server. */
    applyLocal(op) {
      const e = this.edit;
      if (op.face !== undefined && op.face !== null) e.face = op.face;
      const face = e.faces[e.face];
      switch (op.op) {
        case 'place': case 'move':
          face.points[op.index] = [op.x, op.y];
          if (face.visibility[op.index] === ABSENT) face.visibility[op.index] = VISIBLE;
          this.edited();
          break;
        case 'flag':
          face.visibility[op.index] = op.flag;
          if (op.flag === ABSENT) face.points[op.index] = null;
          this.edited();
          break;
        case 'remove':
          face.points[op.index] = null;
          face.visibility[op.index] = VISIBLE;
          this.edited();
          break;
        case 'clear_face':
          e.faces[e.face] = emptyFace();
          this.edited();
          break;
        case 'new_face':
          e.faces.push(emptyFace());
          e.face = e.faces.length - 1;
          this.edited();
          break;
        case 'remove_face':
          if (e.faces.length === 1) e.faces[0] = emptyFace();
          else e.faces.splice(e.face, 1);
          e.face = Math.min(e.face, e.faces.length - 1);
          this.edited();
          break;
        case 'box':
          face.bbox = op.box;
          break;
        case 'accept':
          for (const f of e.faces) {
            if (f.predicted) { f.predicted = false; f.scores = null; }
          }
          e.reviewed_at = new Date().toISOString();
          this.edited();
          break;
        case 'skip':
          e.status = 'skipped';
          e.status_reason = op.reason.trim() || 'skipped';
          break;
        default:
          break;
      }
    }

    /** An edit: recorded for undo, drawn at once, sent to the server. */
    commit(op, {draw = true} = {}) {
      this.record();
      this.applyLocal(op);
      this.enqueue(op);
      if (draw) this.draw();
    }

    /** Why no edit can be made now ('': one can): the edit would go to the image being left,
     *  or be dropped when the next one is shown; or a Predict's answer would replace it. */
    waitReason() {
      if (this.navigating) return 'opening another image — wait a moment';
      if (this.busy) return `${this.busy} — wait a moment`;
      // Changed in another tab: work added here could never be saved over theirs, only set
      // aside by Reload (edits made after a conflict were taken, then dropped unsaid)
      if (this.doc && this.doc.conflict) return this.conflictMessage();
      return '';
    }

    canEdit() {
      if (!this.edit) { this.say('no image open: go to another one', 'error'); return false; }
      const wait = this.waitReason();
      if (wait) { this.say(wait); return false; }
      // A press or drag not let go yet (a key pressed with the mouse button down) is taken
      // back first, as go() does: the edit is then made to what the server has too (an undo
      // took the press's own undo step, the server's the edit before; a drag's release
      // restored what the edit had changed), and the release does nothing more.
      this.cancelGesture();
      return true;
    }

    undo() {
      if (!this.canEdit()) return;
      if (!this.undoStack.length) { this.say('nothing to undo'); return; }
      this.redoStack.push(this.snapshot());
      this.restore(this.undoStack.pop());
      this.selected = null;
      this.enqueue({op: 'undo'});
      this.say('undone');
      this.draw();
    }

    redo() {
      if (!this.canEdit()) return;
      if (!this.redoStack.length) { this.say('nothing to redo'); return; }
      this.undoStack.push(this.snapshot());
      this.restore(this.redoStack.pop());
      this.selected = null;
      this.enqueue({op: 'redo'});
      this.say('redone');
      this.draw();
    }

    toggleFlag(flag) {
      if (!this.canEdit()) return;
      // A point just marked absent is no target any more: pressing x again right after
      // unsets it (as o twice does), rather than marking the next point absent too.
      const last = this.lastAbsent;
      const again = flag === ABSENT && this.selected === null && last !== null &&
        last.token === this.doc.token && last.seq === this.seq && last.face === this.edit.face;
      const index = again ? last.index : this.target();
      if (index === null) {
        this.say('the face is complete: select a point (click it, or in the list) first');
        return;
      }
      const current = this.face.visibility[index];
      const value = current === flag ? VISIBLE : flag;
      this.commit({op: 'flag', face: this.edit.face, index, flag: value});
      const name = this.config.landmarks[index].description;
      const word = Object.keys(this.config.visibility).find(
        (key) => this.config.visibility[key] === value);
      let note = `${index}: ${name} is ${word}`;
      if (value === OCCLUDED && !this.face.points[index]) note += ': click where it would be';
      if (value === ABSENT) this.selected = null;
      this.lastAbsent = value === ABSENT
        ? {token: this.doc.token, seq: this.seq, face: this.edit.face, index} : null;
      this.say(note);
      this.draw();
    }

    removeSelected() {
      if (!this.canEdit()) return;
      if (this.selected === null) { this.say('select a point first (click it, or in the list)'); return; }
      const index = this.selected;
      this.selected = null;
      this.commit({op: 'remove', face: this.edit.face, index});
      this.say(`${index} removed`);
    }

    accept() {
      if (!this.canEdit()) return;
      if (!this.edit.faces.some((f) => f.predicted)) {
        this.say('nothing to accept: no predicted points here');
        return;
      }
      this.commit({op: 'accept'});
      this.say('accepted: the points are an annotation now (undo with Ctrl+Z)');
    }

    predict() {
      if (!this.canEdit()) return;
      if (!this.config.predict) {
        this.say('no model: start the annotator with --checkpoint and --config', 'error');
        return;
      }
      // The model's points replace the face's, and the image is saved as predicted at once:
      // one stray m (beside n) over a face placed by hand replaced a finished annotation.
      // Such a face is replaced only when Predict is asked for again straight away.
      const placed = this.face.points.filter((p) => p).length;
      const armed = this.predictArmed;
      const again = armed !== null && armed.token === this.doc.token &&
        armed.seq === this.seq && armed.face === this.edit.face;
      if (placed && !this.face.predicted && !again) {
        this.predictArmed = {token: this.doc.token, seq: this.seq, face: this.edit.face};
        this.say(`Predict replaces the ${placed} point${placed === 1 ? '' : 's'} you placed ` +
                 'on this face with the model\'s: press m (or Predict) again to do it');
        return;
      }
      this.predictArmed = null;
      this.record();
      this.busy = 'predicting';
      this.say('predicting…');
      this.enqueue({op: 'predict', face: this.edit.face});
      this.draw();
    }

    async skip(reason) {
      if (!this.canEdit()) return;
      const op = {op: 'skip', reason: reason || ''};
      this.commit(op);
      // go() saves it first, as navigating: an edit meanwhile is refused (not made to the
      // image skipped), an n is no second navigation; a skip the server refused (a reason
      // over its limit) stays on this image, the refusal shown
      await this.go({go: 'todo'}, {unless: op, carry: true});
    }

    // --- pointer --------------------------------------------------------------------------------

    hitPoint(sx, sy) {
      if (!this.edit) return null;
      let best = null, bestDistance = HIT_RADIUS;
      this.face.points.forEach((p, k) => {
        if (!p) return;
        const [px, py] = this.screenOf(p[0], p[1]);
        const d = Math.hypot(px - sx, py - sy);
        if (d <= bestDistance) { best = k; bestDistance = d; }
      });
      return best;
    }

    hitHandle(sx, sy) {
      if (!this.edit || !this.face.bbox) return null;
      const [x0, y0, x1, y1] = this.face.bbox;
      const corners = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
      for (let c = 0; c < 4; c++) {
        const [px, py] = this.screenOf(corners[c][0], corners[c][1]);
        if (Math.hypot(px - sx, py - sy) <= HANDLE_RADIUS) return c;
      }
      return null;
    }

    local(e) {
      const rect = this.$('le-viewport').getBoundingClientRect();
      return [e.clientX - rect.left, e.clientY - rect.top];
    }

    onPointerDown(e) {
      const started = e.timeStamp;
      if (!this.doc || !this.edit) return;
      if (this.gesture) {
        // A second finger: the two make neither a click nor a drag, so what the first one
        // began is taken back (else its point would be drawn and never sent, and the undo
        // stacks of the page and the server would fall out of step). The same pointer
        // again: its release was lost; that gesture is over too.
        const second = e.pointerId !== this.gesture.id;
        this.cancelGesture();
        if (second) return;
      }
      if (this.imageError) {  // no point on a picture that is not there
        this.say(this.imageError, 'error');
        return;
      }
      this.$('le-viewport').focus({preventScroll: true});
      const [sx, sy] = this.local(e);
      this.pointer = [sx, sy];
      const g = {id: e.pointerId, sx, sy, moved: false, kind: 'press'};
      this.$('le-viewport').setPointerCapture(e.pointerId);
      if (e.button === 1 || e.button === 2 || this.space) {
        g.kind = 'pan';
        g.view = Object.assign({}, this.view);
        this.gesture = g;
        this.$('le-viewport').classList.add('le-panning');
        return;
      }
      if (e.button !== 0) return;
      if (this.waitReason()) {
        // A Predict under way, or another image opening: its answer replaces the points, so
        // a point placed or dragged now would land on points never seen (or on the image
        // left). A drag pans; a click says why it placed nothing (onPointerUp).
        g.waits = true;
        g.hit = null;
        g.handle = null;
        this.gesture = g;
        return;
      }
      const [x, y] = this.imagePoint(e);
      g.x = x;
      g.y = y;
      g.inside = this.inside(x, y);
      if (this.boxMode) {
        g.kind = 'box';
        [g.bx, g.by] = this.clampToImage(x, y);
        this.gesture = g;
        return;
      }
      g.hit = this.hitPoint(sx, sy);
      g.handle = g.hit === null ? this.hitHandle(sx, sy) : null;
      // A click places the target (the selected point, else the next one), even over another
      // point while the face is incomplete; on another point with one selected, or on any
      // point of a complete face, it selects that point instead; on the selected point, it
      // deselects it (onPointerUp), as a click on its row does: the point stays where it is.
      const target = this.target();
      const selects = g.hit !== null && (this.selected !== null || target === null);
      if (target !== null && g.inside && !selects) {
        // Draw the point now; a press that turns into a drag takes it back.
        g.tentative = {op: 'place', face: this.edit.face, index: target, x, y};
        g.redo = this.redoStack;
        g.selected = this.selected;
        this.record();
        this.applyLocal(g.tentative);
        this.selected = null;
        this.gesture = g;
        this.drawOverlay();
        this.renderPanel();
        requestAnimationFrame(() => {
          this.timings.push(performance.now() - started);
          // the frame is painted when the next task runs
          setTimeout(() => this.paintTimings.push(performance.now() - started), 0);
        });
        return;
      }
      this.gesture = g;
    }

    onPointerMove(e) {
      const g = this.gesture;
      const [sx, sy] = this.local(e);
      this.pointer = [sx, sy];  // where + and - zoom
      if (!g) {
        if (this.edit && this.doc) this.setHover(this.hitPoint(sx, sy), sx, sy);
        return;
      }
      if (e.pointerId !== g.id) return;
      if (!g.moved && Math.hypot(sx - g.sx, sy - g.sy) <= PRESS_SLOP) return;
      if (!g.moved) {
        g.moved = true;
        if (g.tentative) this.restore(this.undoStack.pop());  // not a click: take it back
        this.startDrag(g);
      }
      this.dragTo(g, e, sx, sy);
    }

    startDrag(g) {
      if (g.tentative) {
        this.redoStack = g.redo;
        this.selected = g.selected;
        g.tentative = null;
      }
      if (g.kind === 'box') return;
      // A point or corner moves by the drag, not to the pointer: it is grabbed anywhere
      // within HIT_RADIUS of its centre, and jumping there added the grab's offset to a nudge
      // (a 6 px drag 8 px off-centre moved it 14 px).
      if (g.hit !== null && g.hit !== undefined) {
        g.kind = 'point';
        g.before = this.snapshot();
        const [px, py] = this.face.points[g.hit];
        g.offset = [px - g.x, py - g.y];
        this.selected = g.hit;
      } else if (g.handle !== null && g.handle !== undefined) {
        g.kind = 'handle';
        g.before = this.snapshot();
        const box = this.face.bbox, c = g.handle;
        g.offset = [(c === 0 || c === 3 ? box[0] : box[2]) - g.x,
                    (c === 0 || c === 1 ? box[1] : box[3]) - g.y];
      } else {
        g.kind = 'pan';
        g.view = Object.assign({}, this.view);
        this.$('le-viewport').classList.add('le-panning');
      }
    }

    dragTo(g, e, sx, sy) {
      if (g.kind === 'pan') {
        this.view.tx = g.view.tx + (sx - g.sx);
        this.view.ty = g.view.ty + (sy - g.sy);
        this.applyView();
      } else if (g.kind === 'point') {
        const [x, y] = this.grabbedTo(g, e);
        this.face.points[g.hit] = [x, y];
        this.setHover(g.hit, sx, sy);
        this.drawOverlay();
      } else if (g.kind === 'handle') {
        const [x, y] = this.grabbedTo(g, e);
        const box = this.face.bbox.slice();
        const c = g.handle;
        if (c === 0 || c === 3) box[0] = x; else box[2] = x;
        if (c === 0 || c === 1) box[1] = y; else box[3] = y;
        this.face.bbox = box;
        this.drawOverlay();
      } else if (g.kind === 'box') {
        const [x, y] = this.clampToImage(...this.imagePoint(e));
        g.ex = x;
        g.ey = y;
        this.drawOverlay();
      }
    }

    /** Where the dragged point or corner is now: where it was plus the pointer's move. */
    grabbedTo(g, e) {
      const [x, y] = this.imagePoint(e);
      return this.clampToImage(x + g.offset[0], y + g.offset[1]);
    }

    /** Take back what the gesture began (the browser took the pointer away, e.g. for a
     *  scroll, or a second finger came): no point placed or moved, no box drawn. */
    cancelGesture() {
      const g = this.gesture;
      if (!g) return;
      this.gesture = null;
      this.$('le-viewport').classList.remove('le-panning');
      if (g.tentative) {
        this.restore(this.undoStack.pop());
        this.redoStack = g.redo;
        this.selected = g.selected;
      } else if ((g.kind === 'point' || g.kind === 'handle') && g.moved) {
        this.restore(g.before);
      }
      this.draw();
      this.adopt();
    }

    onPointerUp(e, cancelled = false) {
      const g = this.gesture;
      if (!g || e.pointerId !== g.id) return;
      if (cancelled || this.navigating) {  // (go() takes the gesture back already)
        const click = g.waits && !g.moved && !cancelled;
        this.cancelGesture();
        if (click) this.say(this.waitReason());
        return;
      }
      this.gesture = null;
      this.$('le-viewport').classList.remove('le-panning');
      if (g.tentative) {
        this.enqueue(g.tentative);
        this.say('');
        this.draw();
      } else if (g.kind === 'point' && g.moved) {
        const [x, y] = this.face.points[g.hit];
        this.restore(g.before);
        this.commit({op: 'move', face: this.edit.face, index: g.hit, x, y}, {draw: false});
        this.selected = null;
        this.say(`${g.hit} moved`);
        this.draw();
      } else if (g.kind === 'handle' && g.moved) {
        const box = this.boxOf(this.face.bbox);
        this.restore(g.before);
        if (box) this.commit({op: 'box', face: this.edit.face, box});
        else this.draw();
      } else if (g.kind === 'box') {
        this.boxMode = false;
        const box = g.moved ? this.boxOf([g.bx, g.by, g.ex, g.ey]) : null;
        if (!box) {
          this.say('box too small: drag a rectangle around the face (b)');
          this.draw();
        } else {
          this.commit({op: 'box', face: this.edit.face, box});
          if (this.config.predict) this.predict();
          else this.say('box set');
        }
      } else if (!g.moved && g.waits) {  // pressed while waiting: nothing placed
        this.say(this.waitReason() || 'nothing placed (pressed while waiting): click again');
      } else if (!g.moved && g.kind === 'press') {
        if (g.hit !== null && g.hit !== undefined) {
          this.selected = this.selected === g.hit ? null : g.hit;
          this.say(this.selected === null ? '' : `${g.hit} selected: click its place, ` +
                   'drag it, or o / x / Delete');
          this.draw();
        } else if (g.inside && this.target() === null) {
          this.say('face complete: drag a point to move it, select one to re-place it, or ' +
                   'New face for another face');
        } else if (!g.inside && this.target() !== null) {
          // a point is on the picture (training crops from it): one cut off by the frame is
          // absent, or placed by estimate at the edge; a silent click looked like a lost one
          this.say(`nothing placed: ${this.target()} goes on the picture; for a point cut ` +
                   'off by the frame press x (absent), or o (occluded) and click at the edge');
        }
      }
      this.adopt();
    }

    /** A box [x0, y0, x1, y1] (corners, in image pixels) set in order, or null if tiny. */
    boxOf(box) {
      const [a, b, c, d] = box;
      const x0 = Math.min(a, c), x1 = Math.max(a, c), y0 = Math.min(b, d), y1 = Math.max(b, d);
      if (x1 - x0 < 2 || y1 - y0 < 2) return null;
      return [x0, y0, x1, y1];
    }

    onWheel(e) {
      if (!this.doc || !this.edit) return;
      e.preventDefault();
      const [sx, sy] = this.local(e);
      const unit = e.deltaMode === 1 ? 0.05 : e.deltaMode === 2 ? 1 : 0.0015;
      this.zoomAt(sx, sy, Math.exp(-e.deltaY * unit));
    }

    setHover(index, sx, sy) {
      const tip = this.$('le-tooltip');
      if (index === null || index === undefined) {
        if (this.hover !== null) { this.hover = null; this.drawOverlay(); }
        tip.hidden = true;
        this.$('le-viewport').classList.remove('le-on-point');
        return;
      }
      const changed = this.hover !== index;
      this.hover = index;
      const flag = this.face.visibility[index];
      tip.textContent = `${index}: ${this.config.landmarks[index].description}` +
        (flag === OCCLUDED ? ' (occluded)' : '') + (this.face.predicted ? ' (predicted)' : '');
      tip.hidden = false;
      tip.style.left = `${sx + 14}px`;
      tip.style.top = `${sy + 12}px`;
      this.$('le-viewport').classList.add('le-on-point');
      if (changed) this.drawOverlay();
    }

    // --- keys and buttons -------------------------------------------------------------------

    onKeyDown(e) {
      if ((e.ctrlKey || e.metaKey) && letterOf(e) === 's') {
        // in a text field too: the browser's own Ctrl+S would offer to save the page
        e.preventDefault();
        this.action('save');
        return;
      }
      if (isTyping(e.target)) {
        if (e.key === 'Escape') e.target.blur();
        return;
      }
      if (!this.config) return;
      // a focused button (tabbed to) is pressed by them, as everywhere
      if ((e.key === 'Enter' || e.key === ' ') && isPressable(e.target)) return;
      const key = e.key, letter = letterOf(e);
      const ctrl = e.ctrlKey || e.metaKey;
      let handled = true;
      if (ctrl && letter === 'z') {
        if (e.shiftKey) this.redo(); else this.undo();
      } else if (ctrl && letter === 'y') {
        this.redo();
      } else if (ctrl || e.altKey) {
        handled = false;
      } else if (key === ' ') {
        this.space = true;
        this.$('le-viewport').classList.add('le-space');
      } else if (letter === 'z') {
        this.action(e.shiftKey ? 'redo' : 'undo');  // Shift, not Caps Lock, makes it redo
      } else {
        const letters = {
          o: 'occluded', x: 'absent', l: 'labels', f: 'zoom-face', n: 'next', p: 'prev',
          u: 'todo', s: 'save', b: 'box', m: 'predict',
        };
        const keys = {
          Delete: 'remove', Backspace: 'remove', Escape: 'escape', 0: 'fit', '+': 'zoom-in',
          '=': 'zoom-in', '-': 'zoom-out', ArrowRight: 'next', ArrowLeft: 'prev',
          Enter: 'accept', '?': 'help',
        };
        // A key held down repeats: a held m is no second press of Predict's two, which
        // replace the points placed by hand
        if (letter !== null && letter in letters) {
          if (!(e.repeat && letters[letter] === 'predict')) this.action(letters[letter]);
        } else if (letter === null && key in keys) this.action(keys[key]);
        else handled = false;
      }
      if (handled) e.preventDefault();
    }

    releaseSpace() {
      this.space = false;
      this.$('le-viewport').classList.remove('le-space');
    }

    action(name) {
      const [vw, vh] = this.viewportSize();
      switch (name) {
        case 'undo': this.undo(); break;
        case 'redo': this.redo(); break;
        case 'occluded': this.toggleFlag(OCCLUDED); break;
        case 'absent': this.toggleFlag(ABSENT); break;
        case 'remove': this.removeSelected(); break;
        case 'clear':
          if (this.canEdit()) { this.commit({op: 'clear_face', face: this.edit.face}); }
          break;
        case 'new-face':
          if (this.canEdit()) {
            this.selected = null;
            this.commit({op: 'new_face'});
            this.say(`face ${this.edit.faces.length}: place its points, or draw its box (b)`);
          }
          break;
        case 'remove-face':
          if (this.canEdit()) {
            this.selected = null;
            this.commit({op: 'remove_face', face: this.edit.face});
          }
          break;
        case 'box':
          if (this.canEdit()) {
            this.boxMode = !this.boxMode;
            this.say(this.boxMode ? 'drag a rectangle around the face' : '');
            this.draw();
          }
          break;
        case 'predict': this.predict(); break;
        case 'accept': this.accept(); break;
        case 'escape':
          // the box being dragged too (its release would set it), or a press or drag
          this.cancelGesture();
          this.selected = null;
          this.boxMode = false;
          this.$('le-help').hidden = true;
          this.$('le-chart-modal').hidden = true;
          this.draw();
          break;
        case 'labels': this.labels = !this.labels; this.draw(); break;
        case 'zoom-face': this.zoomToFace(); break;
        case 'fit': this.fit(); break;
        // around the mouse when it is over the picture, as the wheel; else around the centre
        case 'zoom-in': this.zoomAt(...(this.pointer || [vw / 2, vh / 2]), 1.5); break;
        case 'zoom-out': this.zoomAt(...(this.pointer || [vw / 2, vh / 2]), 1 / 1.5); break;
        case 'next': this.go({go: 'next'}); break;
        case 'prev': this.go({go: 'prev'}); break;
        case 'todo': this.go({go: 'todo'}); break;
        case 'save': this.saveNow(); break;
        case 'reload': this.reload(); break;
        case 'help': this.$('le-help').hidden = !this.$('le-help').hidden; break;
        default: break;
      }
    }

    /** Open the image again as saved, dropping what could not be saved. An image gone from
     *  the folder since a restart cannot be opened: its edits are dropped all the same (the
     *  page said so), and the first image to do is shown. */
    async reload() {
      if (!this.doc) { this.say('no image open yet: nothing to reload', 'error'); return; }
      const gone = !!(this.stuck && this.stuck.gone);
      if (await this.go({image: this.doc.image}, {discard: true, history: false}) || !gone) {
        return;
      }
      await this.go({go: 'start'}, {discard: true});
    }

    async saveNow() {
      if (!this.queue.length && !this.inFlight) {
        this.say(this.doc && this.doc.save_error ? this.doc.save_error : 'nothing to save: ' +
                 'every edit is saved', this.doc && this.doc.save_error ? 'error' : '');
        if (this.doc && this.doc.save_error) this.flush();
        return;
      }
      const ok = await this.settle();
      this.say(ok ? 'saved' : this.conflictMessage() || this.held() ||
               'not saved yet: the edits are kept in this page', ok ? '' : 'error');
    }

    /** Why the edits are not saved when another tab changed the image's files ('': no
     *  conflict): the server's words (whose change, what Reload does), else the page's. */
    conflictMessage() {
      if (!this.doc || !this.doc.conflict) return '';
      return this.doc.save_error ||
        'not saved: changed in another tab; Reload shows theirs (your change set aside in ' +
        '.drafts/superseded/)';
    }

    showChart(big) {
      this.$('le-chart-modal').hidden = !big;
      this.drawCharts();
    }

    // --- drawing ------------------------------------------------------------------------------

    say(text, kind = '') {
      const node = this.$('le-message');
      node.textContent = text || '';
      node.title = text || '';
      node.dataset.kind = kind;
    }

    draw() {
      this.drawOverlay();
      this.renderPanel();
    }

    drawOverlay() {
      const overlay = this.$('le-overlay');
      const frag = document.createDocumentFragment();
      if (!this.edit || !this.doc || !this.doc.edit) {
        overlay.replaceChildren();
        return;
      }
      const lm = this.config.landmarks;
      const skeleton = this.config.skeleton;
      const screen = (p) => this.screenOf(p[0], p[1]);
      this.edit.faces.forEach((face, f) => {
        if (f === this.edit.face) return;
        const pts = face.points.map((p) => (p ? screen(p) : null));
        if (face.bbox) frag.append(this.boxRect(face.bbox, 'le-box-other'));
        for (const [a, b] of skeleton) {
          if (pts[a] && pts[b]) {
            frag.append(svgEl('line', {class: 'le-line le-other', x1: pts[a][0], y1: pts[a][1],
                                       x2: pts[b][0], y2: pts[b][1], stroke: lm[a].color}));
          }
        }
        pts.forEach((p, k) => {
          if (!p) return;
          frag.append(svgEl('circle', {class: 'landmark-point-other le-other', cx: p[0],
                                       cy: p[1], r: 3, fill: lm[k].color, 'data-index': k,
                                       'data-face': f}));
        });
      });
      const face = this.face;
      const pts = face.points.map((p) => (p ? screen(p) : null));
      if (face.bbox) {
        frag.append(this.boxRect(face.bbox, 'le-box'));
        const [x0, y0, x1, y1] = face.bbox;
        for (const [x, y] of [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) {
          const [hx, hy] = this.screenOf(x, y);
          frag.append(svgEl('rect', {class: 'le-handle', x: hx - 4, y: hy - 4, width: 8,
                                     height: 8}));
        }
      }
      const g = this.gesture;
      if (g && g.kind === 'box' && g.ex !== undefined) {
        frag.append(this.boxRect([g.bx, g.by, g.ex, g.ey], 'le-box'));
      }
      for (const [a, b] of skeleton) {
        if (pts[a] && pts[b]) {
          frag.append(svgEl('line', {class: 'le-line', x1: pts[a][0], y1: pts[a][1],
                                     x2: pts[b][0], y2: pts[b][1], stroke: lm[a].color}));
        }
      }
      const radius = 4.5;
      pts.forEach((p, k) => {
        if (!p) return;
        const occluded = face.visibility[k] === OCCLUDED;
        if (face.predicted) {
          frag.append(svgEl('circle', {class: 'le-predicted-ring', cx: p[0], cy: p[1],
                                       r: radius + 3.5}));
        }
        const point = face.points[k];
        frag.append(svgEl('circle', {
          class: 'landmark-point' + (occluded ? ' le-occluded' : ''), cx: p[0], cy: p[1],
          r: radius, fill: lm[k].color, stroke: occluded ? lm[k].color : '#000',
          'data-index': k, 'data-x': point[0], 'data-y': point[1],
          'data-state': occluded ? 'occluded' : 'visible',
          'data-predicted': face.predicted ? '1' : '0',
        }));
      });
      for (const k of [this.selected, this.hover]) {
        if (k === null || k === undefined || !pts[k]) continue;
        const cls = k === this.selected ? 'le-ring' : 'le-hover';
        if (k === this.selected) {
          frag.append(svgEl('circle', {class: 'le-ring-back', cx: pts[k][0], cy: pts[k][1],
                                       r: 10}));
        }
        frag.append(svgEl('circle', {class: cls, cx: pts[k][0], cy: pts[k][1], r: 10}));
      }
      this.drawLabels(frag, pts);
      overlay.replaceChildren(frag);
    }

    boxRect(box, cls) {
      // corners in image pixels, as points are (pixel centres at integers)
      const [ax, ay] = this.screenOf(box[0], box[1]);
      const [bx, by] = this.screenOf(box[2], box[3]);
      return svgEl('rect', {class: cls, x: Math.min(ax, bx), y: Math.min(ay, by),
                            width: Math.abs(bx - ax), height: Math.abs(by - ay)});
    }

    drawLabels(frag, pts) {
      if (!this.labels) return;
      const placed = pts.filter(Boolean);
      if (!placed.length) return;
      const xs = placed.map((p) => p[0]), ys = placed.map((p) => p[1]);
      const extent = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys));
      // a face too small on screen for every number: only the hovered and selected ones
      const only = placed.length > 3 && extent < CROWDED_FACE_PX
        ? new Set([this.selected, this.hover]) : null;
      placeLabels(pts, 12, 6, only).forEach((at, k) => {
        if (!at) return;
        const text = svgEl('text', {class: 'le-label', x: at[0], y: at[1],
                                    'text-anchor': 'middle'});
        text.textContent = String(k);
        frag.append(text);
      });
    }

    renderPanel() {
      if (!this.config) return;
      const edit = this.edit;
      const prompt = this.$('le-prompt');
      prompt.classList.toggle('le-predicted', !!(edit && edit.faces.some((f) => f.predicted)));
      const faces = edit ? edit.faces.length : 0;
      let text = '';
      if (!edit) {
        text = 'cannot open this image: go to another one';
      } else if (this.boxMode) {
        text = 'Face box: drag a rectangle around the face';
      } else if (edit.status === 'skipped') {
        text = `skipped: ${edit.status_reason}`;
      } else {
        const where = faces > 1 ? `face ${edit.face + 1} of ${faces} · ` : '';
        const target = this.target();
        if (this.face.predicted) {
          text = `${where}predicted, to review: drag the wrong points, Enter to accept`;
        } else if (target === null) {
          // complete by count; the server says when the face is still no annotation
          const problem = this.doc && this.doc.problem;
          text = problem ? `${where}not done, kept as a draft: ${problem}` : `${where}complete`;
        } else {
          const verb = this.selected !== null ? 'place' : 'next';
          const flag = this.face.visibility[target] === OCCLUDED ? ' (occluded: by estimate)'
            : '';
          text = `${where}${verb}: ${target}: ${this.config.landmarks[target].description}${flag}`;
        }
      }
      prompt.textContent = text;
      prompt.title = text;
      // the list of points
      const target = edit ? this.target() : null;
      this.rows.forEach(({row, state}, k) => {
        let label = '', kind = 'empty';
        if (edit) {
          const p = this.face.points[k], flag = this.face.visibility[k];
          if (flag === ABSENT) { label = 'absent'; kind = 'absent'; }
          else if (p && flag === OCCLUDED) { label = 'occluded'; kind = 'occluded'; }
          else if (p) { label = this.face.predicted ? 'predicted' : 'placed'; kind = 'placed'; }
          else if (flag === OCCLUDED) { label = 'occl., to place'; kind = 'occluded'; }
        }
        if (row.dataset.state !== kind) row.dataset.state = kind;
        if (state.textContent !== label) state.textContent = label;
        row.classList.toggle('le-target', k === target && this.selected === null);
        row.classList.toggle('le-selected', k === this.selected);
      });
      if (target !== null && target !== this.shownTarget) {
        this.shownTarget = target;
        const row = this.rows[target].row, list = this.$('le-points');
        if (row.offsetTop < list.scrollTop ||
            row.offsetTop + row.offsetHeight > list.scrollTop + list.clientHeight) {
          list.scrollTop = row.offsetTop - list.clientHeight / 2;
        }
      }
      // faces
      const select = this.$('le-face');
      if (edit && (select.options.length !== faces || Number(select.value) !== edit.face)) {
        select.replaceChildren(...edit.faces.map((_, f) => {
          const option = document.createElement('option');
          option.value = f;
          option.textContent = `${f + 1} of ${faces}`;
          return option;
        }));
        select.value = String(edit.face);
      }
      const set = (name, enabled, active) => {
        const button = this.root.querySelector(`[data-action="${name}"]`);
        button.disabled = !enabled;
        if (active !== undefined) button.classList.toggle('le-active', active);
      };
      set('undo', !!edit && this.undoStack.length > 0);
      set('redo', !!edit && this.redoStack.length > 0);
      set('accept', !!edit && edit.faces.some((f) => f.predicted));
      set('remove', !!edit && this.selected !== null);
      set('box', !!edit, this.boxMode);
      set('labels', true, this.labels);
      set('predict', !!edit && this.config.predict);
      this.renderPredict();
      this.drawCharts();
    }

    /** The Predict button: whether the model's points for this image are ready (instant). */
    renderPredict() {
      const button = this.root.querySelector('[data-action="predict"]');
      if (!button) return;
      let state = this.config && this.config.predict && this.doc && this.doc.edit
        ? (this.doc.prediction || 'idle') : 'off';
      // a box drawn or a face chosen here and not sent yet: the server's answer is for another
      if (this.busy) state = 'idle';
      // the key (m) is in the title and the help: the button is too narrow for both
      const text = {ready: 'Predict ✓', pending: 'Predict …'}[state] || 'Predict m';
      const title = {
        ready: 'Predict the points with the model (m) — ready: pre-annotated, instant',
        pending: 'Predict the points with the model (m) — being pre-annotated in the background',
      }[state] || 'Predict the points with the model (m)';
      if (button.dataset.prediction !== state) button.dataset.prediction = state;
      if (button.textContent !== text) button.textContent = text;
      if (button.title !== title) button.title = title;
    }

    drawCharts() {
      const chart = this.config.chart;
      const target = this.edit ? this.target() : null;
      const draw = (box, image, overlay, font) => {
        const [bw, bh] = [box.clientWidth, box.clientHeight];
        const scale = Math.min(bw / chart.width, bh / chart.height);
        const w = chart.width * scale, h = chart.height * scale;
        const left = (bw - w) / 2, top = (bh - h) / 2;
        for (const node of [image, overlay]) {
          node.style.left = `${left}px`;
          node.style.top = `${top}px`;
          node.style.width = `${w}px`;
          node.style.height = `${h}px`;
        }
        overlay.setAttribute('viewBox', `0 0 ${chart.width} ${chart.height}`);
        const key = `${w}x${h}:${target}`;
        if (overlay.dataset.key === key) return;
        overlay.dataset.key = key;
        const frag = document.createDocumentFragment();
        const unit = 1 / scale;  // viewBox units per screen px
        for (const [a, b] of this.config.skeleton) {
          const pa = chart.points[a], pb = chart.points[b];
          frag.append(svgEl('line', {x1: pa[0], y1: pa[1], x2: pb[0], y2: pb[1],
                                     stroke: this.config.landmarks[a].color,
                                     'stroke-width': 1.2 * unit}));
        }
        chart.points.forEach((p, k) => {
          frag.append(svgEl('circle', {cx: p[0], cy: p[1], r: 2.6 * unit,
                                       fill: this.config.landmarks[k].color,
                                       stroke: '#000', 'stroke-width': 0.6 * unit}));
        });
        if (target !== null) {
          const p = chart.points[target];
          frag.append(svgEl('circle', {cx: p[0], cy: p[1], r: 7 * unit, fill: 'none',
                                       stroke: '#e0115f', 'stroke-width': 2.2 * unit}));
        }
        // numbers: every one on the enlarged chart, the next one's on the small chart
        const screenPts = chart.points.map((p) => [p[0] * scale, p[1] * scale]);
        const only = font < 14 ? new Set([target]) : null;
        placeLabels(screenPts, font, 4, only).forEach((at, k) => {
          if (!at) return;
          const text = svgEl('text', {class: 'le-chart-label', x: at[0] * unit, y: at[1] * unit,
                                      'font-size': font * unit, 'stroke-width': 2.5 * unit,
                                      fill: k === target ? '#e0115f' : '#111'});
          text.textContent = String(k);
          frag.append(text);
        });
        overlay.replaceChildren(frag);
      };
      draw(this.$('le-chart'), this.$('le-chart-image'), this.$('le-chart-overlay'), 11);
      if (!this.$('le-chart-modal').hidden) {
        const box = this.$('le-chart-modal').querySelector('.le-chart-big');
        const size = Math.min(window.innerWidth * 0.8, window.innerHeight * 0.85,
                              chart.height * 1.8 * window.innerWidth / window.innerHeight);
        box.style.width = `${Math.min(window.innerWidth * 0.8, size * chart.width / chart.height)}px`;
        box.style.height = `${Math.min(window.innerHeight * 0.85, size)}px`;
        draw(box, this.$('le-chart-big-image'), this.$('le-chart-big-overlay'), 17);
      }
    }

    renderHeader() {
      const doc = this.doc;
      if (!doc) return;
      const name = this.$('le-name');
      name.textContent = doc.image;
      name.title = doc.file ? `${doc.image} → ${doc.file}` : doc.image;
      const size = doc.width ? ` (${doc.width}×${doc.height})` : '';
      this.$('le-position').textContent = `image ${doc.index + 1} of ${doc.count}${size}`;
      this.$('le-status').textContent = doc.status_label;
      const p = doc.progress;
      this.$('le-progress').textContent =
        `${p.done} done · ${p.predicted} predicted · ${p.to_do} to do`;
      document.title = `${doc.image} · landmark annotator`;
    }

    renderSave() {
      const node = this.$('le-save');
      let state = 'saved', text = 'saved';
      const pending = this.unsaved();
      if (this.doc && this.doc.conflict) {
        state = 'conflict';
        text = 'not saved: conflict';
      } else if (this.stuck || this.offline || (this.doc && this.doc.save_error)) {
        state = 'unsaved';
        text = this.stuck && this.stuck.gone ? `not saved: image gone (${pending})`
          : `not saved yet (${pending})`;
      } else if (pending || this.inFlight) {
        state = 'saving';
        text = 'saving…';
      }
      if (node.dataset.state !== state) node.dataset.state = state;
      if (node.textContent !== text) node.textContent = text;
      node.title = this.held() || (state === 'unsaved'
        ? `${pending} edits are kept in this page and sent again until the server saves them`
        : state === 'conflict' ? 'another tab changed this image: Reload shows theirs' : '');
    }
  }

  window.LandmarkEditor = {
    /** Start the editor in the element gr.HTML rendered (its js_on_load calls this). */
    mount(element) {
      const root = element.querySelector('#landmark-editor') || element;
      if (root.dataset.mounted) return window.landmarkEditor;
      root.dataset.mounted = '1';
      const editor = new Editor(root);
      window.landmarkEditor = editor;
      editor.start().catch((e) => {
        console.error(e);
        editor.say(`the editor failed to start: ${e}`, 'error');
      });
      return editor;
    },
  };
})();
