'use strict';
// cc-wallboard's page: takes the server's snapshot, then its patches and
// status changes (Server-Sent Events), draws every queue and agent, and
// ticks the timers. Every name from the data is set with textContent or a
// data- attribute, never parsed as HTML: agent, queue and caller names are
// whatever was configured or dialled.
(() => {
  const LONG_CALL_MS = 10 * 60 * 1000; // a queue call this long turns red
  const WAIT_WARN_S = 30;              // the longest wait turns amber...
  const WAIT_ALERT_S = 90;             // ...then red
  const CALLERS_SHOWN = 6;
  const TICKER_SHOWN = 12;
  const REOPEN_MS = 5000;              // after the server refused the stream

  const data = { agents: new Map(), queues: new Map(), members: new Map(), ticker: [] };
  let offset = 0; // server clock minus this browser's clock, ms
  const views = new Map(); // queue name -> view; '' is the agents in no queue
  const rows = new Map();  // agent name -> Set of its <li> (one per queue)

  // What tests and the benchmark read back (through WebDriver).
  const stats = window.wallboard = { frames: 0, lastId: '', lastApplyMs: 0, maxApplyMs: 0, snapshotApplyMs: 0, log: [] };

  const $ = (id) => document.getElementById(id);
  const now = () => Date.now() + offset;
  const pad = (n) => String(n).padStart(2, '0');
  function dur(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return `${d}d ${pad(h)}h`;
    if (h) return `${h}:${pad(m)}:${pad(s % 60)}`;
    return `${m}:${pad(s % 60)}`;
  }
  const clock = (ms) => { const t = new Date(ms); return `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`; };
  // Queue names in natural order: queue-2 before queue-10.
  const byName = (a, b) => a.localeCompare(b, undefined, { numeric: true });
  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }
  function clone(id) { return $(id).content.firstElementChild.cloneNode(true); }

  // The colour family of an agent, as contact-center boards usually show it.
  function tone(a) {
    if (a.status === 'Logged Out') return 'off';
    if (a.status === 'On Break') return 'break';
    if (a.state === 'Receiving') return 'ringing';
    if (a.state === 'In a queue call') return 'talking';
    if (a.status.startsWith('Available') && a.state === 'Waiting') return 'ready';
    return 'idle';
  }

  // ---- views -------------------------------------------------------------
  function queueView(name) {
    let v = views.get(name);
    if (v) return v;
    const root = clone('queue-tpl');
    root.dataset.queue = name;
    if (name === '') root.classList.add('noqueue');
    setText(root.querySelector('.qname'), name === '' ? 'Agents in no queue' : name);
    const stat = (c) => root.querySelector(`.stat.${c}`);
    v = { root, tiers: '', agents: root.querySelector('.agents'), callers: root.querySelector('.callers'),
      waiting: stat('waiting'), longest: stat('longest'), answering: stat('answering'), abandoned: stat('abandoned') };
    views.set(name, v);
    // Queues in name order; the agents in no queue last.
    let before = null;
    if (name !== '') {
      const next = [...views.keys()].filter((n) => n !== '' && byName(n, name) > 0).sort(byName)[0];
      before = next === undefined ? views.get('')?.root ?? null : views.get(next).root;
    }
    $('queues').insertBefore(root, before);
    return v;
  }

  function dropView(name) {
    const v = views.get(name);
    if (!v) return;
    for (const li of v.agents.children) rows.get(li.dataset.agent)?.delete(li);
    v.root.remove();
    views.delete(name);
  }

  function drawAgent(li) {
    const a = data.agents.get(li.dataset.agent) || { status: '', state: '', since: null };
    const t = tone(a);
    li.className = `agent ${t}`;
    li.dataset.status = a.status;
    li.dataset.state = a.state;
    li.dataset.tone = t;
    li.dataset.since = a.since ?? '';
    setText(li.querySelector('.status'), a.status);
    setText(li.querySelector('.state'), a.state);
    tickAgent(li);
  }

  function tickAgent(li) {
    const since = Number(li.dataset.since);
    setText(li.querySelector('.time'), since ? dur(now() - since) : '–');
    li.classList.toggle('long', li.dataset.tone === 'talking' && since > 0 && now() - since >= LONG_CALL_MS);
  }

  // The agent list of a queue view, in tier order; rebuilt only when the tiers change.
  function setAgents(v, names) {
    const key = JSON.stringify(names);
    if (v.tiers === key) return;
    v.tiers = key;
    for (const li of v.agents.children) rows.get(li.dataset.agent)?.delete(li);
    v.agents.replaceChildren(...names.map((name) => {
      const li = clone('agent-tpl');
      li.dataset.agent = name;
      setText(li.querySelector('.name'), name);
      if (!rows.has(name)) rows.set(name, new Set());
      rows.get(name).add(li);
      drawAgent(li);
      return li;
    }));
  }

  function drawQueue(name) {
    const q = data.queues.get(name);
    if (!q) return dropView(name);
    const v = queueView(name);
    setText(v.waiting.querySelector('.num'), String(q.waiting));
    v.waiting.classList.toggle('some', q.waiting > 0);
    setText(v.answering.querySelector('.num'), String(q.answering));
    setText(v.abandoned.querySelector('.num'), String(q.abandoned));
    v.longest.dataset.since = q.longest_wait_since ?? '';
    tickQueue(v);
    setAgents(v, q.agents.map((t) => t.name));
  }

  function tickQueue(v) {
    const since = Number(v.longest.dataset.since);
    const waited = since ? (now() - since * 1000) / 1000 : 0;
    setText(v.longest.querySelector('.num'), since ? dur(waited * 1000) : '–');
    v.longest.classList.toggle('warn', since > 0 && waited >= WAIT_WARN_S && waited < WAIT_ALERT_S);
    v.longest.classList.toggle('alert', since > 0 && waited >= WAIT_ALERT_S);
  }

  // Waiting callers first (longest wait first), then those being answered.
  function drawCallers(name) {
    const v = views.get(name);
    if (!v) return;
    const order = { Waiting: 0, Trying: 0, Answered: 1 };
    const all = [...(data.members.get(name)?.values() || [])]
      .filter((m) => m.state in order)
      .sort((a, b) => order[a.state] - order[b.state] || a.since - b.since);
    const items = all.slice(0, CALLERS_SHOWN).map((m) => {
      const li = clone('caller-tpl');
      li.classList.add(m.state);
      li.dataset.since = m.since;
      setText(li.querySelector('.cid'), [m.cid_number, m.cid_name].filter(Boolean).join(' ') || 'unknown caller');
      const with_ = m.agent ? ` ${m.agent}` : '';
      setText(li.querySelector('.cstate'), m.state === 'Answered' ? `with${with_}` : m.state === 'Trying' ? `ringing${with_}` : 'waiting');
      setText(li.querySelector('.time'), dur(now() - m.since * 1000));
      return li;
    });
    if (all.length > CALLERS_SHOWN) {
      const more = document.createElement('li');
      more.className = 'more';
      more.textContent = `+${all.length - CALLERS_SHOWN} more`;
      items.push(more);
    }
    v.callers.replaceChildren(...items);
  }

  // Agents that are in no queue's tier list get a card of their own.
  function drawNoQueue() {
    const inQueue = new Set();
    for (const q of data.queues.values()) for (const t of q.agents) inQueue.add(t.name);
    const names = [...data.agents.keys()].filter((n) => !inQueue.has(n)).sort(byName);
    if (names.length === 0) return dropView('');
    setAgents(queueView(''), names);
  }

  function drawTotals() {
    let waiting = 0, talking = 0, ready = 0;
    for (const q of data.queues.values()) waiting += q.waiting;
    for (const a of data.agents.values()) {
      const t = tone(a);
      if (t === 'talking') talking++;
      if (t === 'ready') ready++;
    }
    setText($('t-waiting'), String(waiting));
    setText($('t-talking'), String(talking));
    setText($('t-ready'), String(ready));
  }

  function tickText(t) {
    const who = t.agent || 'an agent', caller = t.caller || 'a caller', queue = t.queue || 'a queue';
    switch (t.action) {
      case 'agent-status-change': return `${who} is ${t.detail}`;
      case 'agent-state-change': return `${who}: ${t.detail}`;
      case 'agent-add': return `${who} was added`;
      case 'agent-contact-change': return `${who} has a new contact`;
      case 'member-queue-start': return `${caller} is waiting in ${queue}`;
      case 'member-queue-resume': return `${caller} is back in ${queue}`;
      case 'agent-offering': return `${caller} is offered to ${who}`;
      case 'bridge-agent-start': return `${who} answered ${caller}`;
      case 'bridge-agent-end': return `${who} ended a call`;
      case 'bridge-agent-fail': return `${who} did not take ${caller}`;
      case 'member-queue-end': return t.detail === 'Abandoned' ? `${caller} gave up in ${queue}` : `${caller} left ${queue}`;
      default: return `${t.action}${t.agent ? ` ${t.agent}` : ''}`;
    }
  }

  function drawTicker() {
    $('ticker').replaceChildren(...data.ticker.slice(-TICKER_SHOWN).reverse().map((t) => {
      const li = document.createElement('li');
      li.dataset.action = t.action;
      const time = document.createElement('time');
      time.textContent = clock(t.at);
      li.append(time, document.createTextNode(` ${tickText(t)}`));
      return li;
    }));
  }

  // ---- data --------------------------------------------------------------
  function setStatus(s) {
    document.body.dataset.status = s.redis;
    const conn = { live: 'live', connecting: 'connecting', reconnecting: 'reconnecting', waiting: 'waiting', offline: 'offline' };
    setText($('conn'), conn[s.redis] || s.redis);
    const text = {
      connecting: 'Connecting to Redis…',
      reconnecting: `Reconnecting to Redis… (lost ${s.since ? clock(s.since) : ''}: ${s.detail || ''})`,
      waiting: `Waiting for the state mirror: ${s.detail || ''}`,
      offline: s.detail || 'Reconnecting to the wallboard server…',
    }[s.redis];
    setText($('banner'), text || '');
  }

  function applySnapshot(m) {
    data.agents = new Map(Object.entries(m.agents));
    data.queues = new Map(Object.entries(m.queues));
    data.members = new Map(Object.entries(m.members).map(([q, ms]) => [q, new Map(Object.entries(ms))]));
    data.ticker = m.ticker;
    for (const name of [...views.keys()]) if (!data.queues.has(name)) dropView(name);
    for (const name of [...data.queues.keys()].sort(byName)) { drawQueue(name); drawCallers(name); }
    drawNoQueue();
    for (const set of rows.values()) for (const li of set) drawAgent(li);
    drawTotals();
    drawTicker();
    setStatus(m.status);
  }

  function applyPatch(p) {
    const queues = new Set(), callers = new Set();
    let listed = false; // an agent or tier list changed: recheck the no-queue card
    for (const [name, a] of Object.entries(p.agents)) {
      listed ||= !a || !data.agents.has(name);
      if (a) data.agents.set(name, a); else data.agents.delete(name);
      for (const li of rows.get(name) || []) drawAgent(li);
    }
    for (const [name, q] of Object.entries(p.queues)) {
      listed = true;
      if (q) data.queues.set(name, q); else data.queues.delete(name);
      queues.add(name);
    }
    for (const [q, ms] of Object.entries(p.members)) {
      const held = data.members.get(q) || new Map();
      for (const [uuid, m] of Object.entries(ms)) if (m) held.set(uuid, m); else held.delete(uuid);
      if (held.size) data.members.set(q, held); else data.members.delete(q);
      callers.add(q);
    }
    for (const name of queues) drawQueue(name);
    for (const name of callers) drawCallers(name);
    if (listed) drawNoQueue();
    drawTotals();
    if (p.ticker.length) { data.ticker = data.ticker.concat(p.ticker).slice(-TICKER_SHOWN); drawTicker(); }
  }

  function onFrame(kind, ev) {
    const t0 = performance.now();
    const m = JSON.parse(ev.data);
    offset = m.server_time - Date.now();
    if (kind === 'snapshot') applySnapshot(m);
    else if (kind === 'patch') applyPatch(m);
    else setStatus(m.status);
    void document.body.offsetHeight; // include style and layout in the time measured
    const ms = performance.now() - t0;
    stats.frames++;
    stats.lastApplyMs = ms;
    stats.maxApplyMs = Math.max(stats.maxApplyMs, ms);
    if (kind === 'snapshot') stats.snapshotApplyMs = ms;
    const changes = kind === 'patch'
      ? Object.keys(m.agents).length + Object.keys(m.queues).length + Object.values(m.members).reduce((n, q) => n + Object.keys(q).length, 0)
      : 0;
    stats.log.push({ seq: stats.frames, kind, ms, changes });
    if (stats.log.length > 200) stats.log.shift();
    if (ev.lastEventId) stats.lastId = ev.lastEventId;
  }

  function open() {
    const token = new URLSearchParams(location.search).get('token');
    const es = new EventSource(token ? `events?token=${encodeURIComponent(token)}` : 'events');
    for (const kind of ['snapshot', 'patch', 'status']) es.addEventListener(kind, (ev) => onFrame(kind, ev));
    es.onerror = () => {
      // The browser retries a dropped connection by itself (and the server
      // sends a fresh snapshot); an HTTP error closes it for good, so reopen.
      if (es.readyState === EventSource.CLOSED) {
        setStatus({ redis: 'offline', detail: 'The wallboard refused the event stream (is the token in the URL right?); retrying…' });
        setTimeout(open, REOPEN_MS);
      } else {
        setStatus({ redis: 'offline' });
      }
    };
  }

  function tick() {
    setText($('clock'), clock(now()));
    for (const v of views.values()) {
      tickQueue(v);
      for (const li of v.callers.children) if (li.dataset.since) setText(li.querySelector('.time'), dur(now() - li.dataset.since * 1000));
    }
    for (const set of rows.values()) for (const li of set) tickAgent(li);
  }
  tick();
  setInterval(tick, 1000);
  open();
})();
