import { createHash } from 'node:crypto';
import { limitsScript, limitsSection } from './limits.js';

/** Escapes text for an HTML attribute value. */
function attr(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The page's style sheet (inline; the Content-Security-Policy allows it by its hash). */
const STYLE = `
:root { color-scheme: light dark; --bg:#f7f7f8; --card:#fff; --fg:#1b1d21; --muted:#5b6270; --line:#dfe2e7;
  --ok:#1a7f37; --warn:#9a6700; --bad:#c62828; --off:#6e7781; --spark:#3867d6; }
@media (prefers-color-scheme: dark) { :root { --bg:#15171b; --card:#1e2127; --fg:#e8eaee; --muted:#a0a7b4;
  --line:#333843; --ok:#4ac26b; --warn:#d4a72c; --bad:#ff6b6b; --off:#8c959f; --spark:#7aa2ff; } }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; gap:1rem; align-items:baseline; flex-wrap:wrap; padding:1rem 1.5rem; border-bottom:1px solid var(--line); background:var(--card); }
header h1 { font-size:1.35rem; margin:0; }
#connection { color:var(--muted); }
main { padding:1rem 1.5rem 2rem; display:grid; gap:1.25rem; max-width:1200px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:.75rem 1rem 1rem; overflow-x:auto; }
h2 { font-size:1.1rem; margin:.25rem 0 .75rem; }
h3 { font-size:1rem; margin:1rem 0 .5rem; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
caption { text-align:left; color:var(--muted); padding-bottom:.35rem; }
th, td { text-align:left; padding:.4rem .6rem; border-bottom:1px solid var(--line); vertical-align:middle; }
th { font-weight:600; color:var(--muted); font-size:.85rem; text-transform:uppercase; letter-spacing:.03em; }
tbody th { font-weight:600; color:var(--fg); font-size:inherit; text-transform:none; letter-spacing:normal; }
td.num, th.num { text-align:right; }
/* A long name wraps anywhere: it must not push a table's state and numbers out of sight. */
tbody th, h3, #log li { overflow-wrap:anywhere; }
table + h3, p + h3 { margin-top:1.25rem; }
.state { font-weight:700; white-space:nowrap; }
.state::before { display:inline-block; width:1.2em; }
.s-closed, .s-pass, .s-up, .s-ok { color:var(--ok); }
.s-closed::before, .s-pass::before, .s-up::before, .s-ok::before { content:"\\25CF"; }
.s-open, .s-fail, .s-down, .s-isolated, .s-fenced { color:var(--bad); }
.s-open::before, .s-fail::before, .s-down::before, .s-fenced::before { content:"\\2716"; } .s-isolated::before { content:"\\2298"; }
.s-halfOpen, .s-warn, .s-exhausted { color:var(--warn); }
.s-halfOpen::before, .s-warn::before, .s-exhausted::before { content:"\\25D0"; }
.s-disabled, .s-drained, .s-other { color:var(--off); } .s-disabled::before, .s-drained::before, .s-other::before { content:"\\25CB"; }
#verdict { font-size:1.25rem; margin:0 0 .5rem; }
.empty { color:var(--muted); margin:.25rem 0; }
svg.spark { vertical-align:middle; overflow:visible; }
svg.spark polyline { fill:none; stroke:var(--spark); stroke-width:1.5; }
svg.spark circle { fill:var(--spark); }
svg.chart polyline.value { fill:none; stroke:var(--spark); stroke-width:1.5; }
svg.chart polyline.baseline { fill:none; stroke:var(--off); stroke-width:1; stroke-dasharray:3 2; }
svg.chart circle { fill:var(--bad); }
#log { margin:0; padding-left:1.25rem; max-height:12rem; overflow:auto; }
#log li { margin:.15rem 0; } #log time { color:var(--muted); margin-right:.5rem; }
.visually-hidden { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }
`;

/** The page's script (inline; the Content-Security-Policy allows it by its hash). */
const SCRIPT = `
(function () {
  'use strict';
  var base = document.querySelector('meta[name="holdfast-base"]').content;
  var STATE_WORDS = { closed: 'Closed', open: 'Open', halfOpen: 'Half-open', isolated: 'Isolated', disabled: 'Disabled',
    pass: 'Pass', warn: 'Warn', fail: 'Fail', up: 'Up', down: 'Down', drained: 'Drained', fenced: 'Fenced', ok: 'OK', exhausted: 'Exhausted' };
  var IDEM_WORDS = { claim: 'Claimed', replay: 'Replayed', conflict: 'Conflicts', mismatch: 'Mismatches',
    release: 'Released', takeover: 'Taken over', lost: 'Responses lost', staleCompletion: 'Stale completions', storeError: 'Store errors' };
  function idemOrder(k) { var i = Object.keys(IDEM_WORDS).indexOf(k); return i < 0 ? 99 : i; }
  function $(id) { return document.getElementById(id); }
  // Bidirectional overrides and isolates in a name would reorder what the page shows (a name
  // "\\u202Egnp.exe" reads "exe.png"): they are shown as their code points instead.
  function shown(text) {
    return String(text).replace(/[\u202A-\u202E\u2066-\u2069]/g, function (c) {
      return '<U+' + c.charCodeAt(0).toString(16).toUpperCase() + '>';
    });
  }
  function el(tag, props, children) {
    var node = document.createElement(tag);
    if (props) for (var k in props) { if (k === 'text') node.textContent = shown(props[k]); else node.setAttribute(k, props[k]); }
    (children || []).forEach(function (c) { if (c != null) node.appendChild(typeof c === 'string' ? document.createTextNode(shown(c)) : c); });
    return node;
  }
  function word(state) { return STATE_WORDS[state] || String(state); }
  function badge(state, tag) {
    var cls = STATE_WORDS[state] ? 's-' + state : 's-other';
    return el(tag || 'span', { 'class': 'state ' + cls, text: word(state) });
  }
  function pct(x) { return x == null ? '\\u2014' : (Math.round(x * 1000) / 10) + '%'; }
  function ms(x) { return x == null ? '\\u2014' : (x < 10 ? Math.round(x * 10) / 10 : Math.round(x)) + ' ms'; }
  function num(x) { return x == null ? '\\u2014' : String(x); }
  function table(caption, heads, rows, rowName) {
    var thead = el('thead', null, [el('tr', null, heads.map(function (h) {
      return el('th', { scope: 'col', 'class': h.num ? 'num' : '', text: h.label });
    }))]);
    var tbody = el('tbody', null, rows.map(function (cells) {
      return el('tr', { 'data-name': cells[0] }, cells.map(function (c, i) {
        var h = heads[i];
        if (i === 0 && rowName) return el('th', { scope: 'row', text: c });
        var td = el('td', { 'class': (h.num ? 'num ' : '') + (h.cls || '') });
        if (c instanceof Node) td.appendChild(c); else td.textContent = shown(c);
        return td;
      }));
    }));
    return el('table', null, [el('caption', { text: caption }), thead, tbody]);
  }
  function fill(id, node, emptyText) {
    var box = $(id); box.textContent = '';
    box.appendChild(node || el('p', { 'class': 'empty', text: emptyText }));
  }
  function spark(points) {
    var w = 120, h = 28, ns = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', 'spark'); svg.setAttribute('width', w); svg.setAttribute('height', h);
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h); svg.setAttribute('role', 'img');
    if (!points.length) { svg.setAttribute('aria-label', 'No calls yet'); return svg; }
    var max = Math.max.apply(null, points), min = Math.min.apply(null, points), span = max - min || 1;
    var step = points.length > 1 ? w / (points.length - 1) : 0;
    var xy = points.map(function (p, i) { return [i * step, h - 2 - ((p - min) / span) * (h - 4)]; });
    var line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', xy.map(function (p) { return p[0].toFixed(1) + ',' + p[1].toFixed(1); }).join(' '));
    var dot = document.createElementNS(ns, 'circle'), last = xy[xy.length - 1];
    dot.setAttribute('cx', last[0]); dot.setAttribute('cy', last[1]); dot.setAttribute('r', 2.5);
    svg.appendChild(line); svg.appendChild(dot);
    svg.setAttribute('aria-label', 'Latency of the last ' + points.length + ' calls: from ' + ms(min) + ' to ' + ms(max) +
      ', latest ' + ms(points[points.length - 1]));
    return svg;
  }

  // A metric's last intervals: its value (solid), its baseline (dashed), anomalous intervals as dots.
  function chart(name, points) {
    var w = 160, h = 36, ns = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', 'chart'); svg.setAttribute('width', w); svg.setAttribute('height', h);
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h); svg.setAttribute('role', 'img');
    var all = [];
    points.forEach(function (p) { if (p.value != null) all.push(p.value); if (p.expected != null) all.push(p.expected); });
    var marked = points.filter(function (p) { return p.anomalous; }).length;
    svg.setAttribute('aria-label', shown(name) + ' over the last ' + points.length + ' intervals, ' + marked + ' anomalous');
    if (!all.length) return svg;
    var max = Math.max.apply(null, all), min = Math.min.apply(null, all), span = max - min || 1;
    var step = points.length > 1 ? w / (points.length - 1) : 0;
    var y = function (v) { return h - 2 - ((v - min) / span) * (h - 4); };
    ['expected', 'value'].forEach(function (field) {
      var line = document.createElementNS(ns, 'polyline');
      line.setAttribute('class', field === 'value' ? 'value' : 'baseline');
      line.setAttribute('points', points.map(function (p, i) {
        return p[field] == null ? null : (i * step).toFixed(1) + ',' + y(p[field]).toFixed(1);
      }).filter(Boolean).join(' '));
      svg.appendChild(line);
    });
    points.forEach(function (p, i) {
      if (!p.anomalous || p.value == null) return;
      var dot = document.createElementNS(ns, 'circle');
      dot.setAttribute('cx', i * step); dot.setAttribute('cy', y(p.value)); dot.setAttribute('r', 2.5);
      svg.appendChild(dot);
    });
    return svg;
  }
  function renderAnomalies(list) {
    $('anomaly-section').hidden = !list.length;
    if (!list.length) return;
    var names = list[0].metrics.map(function (m) { return m.name; });
    // Two watches on one bus chart a key apart: name the watch then.
    var many = list.some(function (a) { return a.watch !== list[0].watch; });
    fill('anomalies', table('Each metric per interval: value (solid), baseline (dashed), anomalies (dots)',
      [{ label: 'Key' }, { label: 'Status' }].concat(names.map(function (n) { return { label: n }; })),
      list.map(function (a) {
        return [many ? a.key + ' (' + a.watch + ')' : a.key, el('span', { 'class': 'state ' + (a.raised ? 's-fail' : 's-pass'), text: a.raised ? 'Anomaly' : 'Usual' })]
          .concat(a.metrics.map(function (m) { return chart(m.name, m.points); }));
      }), true));
  }

${limitsScript}
  function render(s) {
    if (s.anomalies) renderAnomalies(s.anomalies);
    if (s.limits) renderLimits(s.limits);
    var ready = s.health.ready, failing = s.health.checks.filter(function (c) { return c.status !== 'pass'; });
    var verdict = $('verdict');
    verdict.className = 'state s-' + s.health.status;
    verdict.textContent = (ready ? 'Ready' : 'Not ready') + ' \\u2014 ' + (failing.length ? failing.length + ' of ' +
      s.health.checks.length + ' checks need attention' : (s.health.checks.length ? 'all ' + s.health.checks.length +
      ' checks pass' : 'no policies registered'));
    fill('checks', failing.length ? table('Checks that do not pass', [{ label: 'Policy' }, { label: 'Kind' },
      { label: 'Status' }, { label: 'Why' }], failing.map(function (c) {
        return [c.name, c.kind, badge(c.status), c.reason];
      }), true) : null, '');

    fill('breakers', s.breakers.length ? table('State, failure rate and latency of each breaker', [
      { label: 'Breaker' }, { label: 'State', cls: 'state-cell' }, { label: 'Failure rate', num: true },
      { label: 'Calls', num: true }, { label: 'p50', num: true }, { label: 'p99', num: true },
      { label: 'Latency, recent calls' }], s.breakers.map(function (b) {
        return [b.name, badge(b.state), pct(b.failureRate), num(b.calls), ms(b.latency.p50), ms(b.latency.p99), spark(b.recent)];
      }), true) : null, 'No breakers yet.');

    var sets = $('failovers'); sets.textContent = '';
    if (!s.failovers.length) sets.appendChild(el('p', { 'class': 'empty', text: 'No failover sets yet.' }));
    s.failovers.forEach(function (f) {
      var up = f.endpoints.filter(function (e) { return e.up; }).length;
      sets.appendChild(el('h3', { text: f.name + ' \\u2014 ' + up + ' of ' + f.endpoints.length + ' endpoints up' +
        (f.panic ? ', in panic' : '') + (f.active ? ', active: ' + f.active : '') +
        (f.splitBrain ? ', split brain: ' + f.splitBrain.endpoints.join(', ') + ' tie, no writes' : '') }));
      sets.appendChild(table('Endpoints of ' + f.name + (f.mode ? ' (' + f.mode + ')' : ''), [{ label: 'Endpoint' },
        { label: 'Available', cls: 'state-cell' }, { label: 'Health' }, { label: 'Role' }, { label: 'In flight', num: true },
        { label: 'Ejection' }], f.endpoints.map(function (e) {
          return [e.name, badge(e.role === 'drained' || e.role === 'fenced' ? e.role : e.up ? 'up' : 'down'), e.health || '\\u2014',
            e.role || '\\u2014', num(e.inFlight), e.ejection || '\\u2014'];
        }), true));
    });

    var counters = $('counters'); counters.textContent = '';
    counters.appendChild(el('h3', { text: 'Retries' }));
    counters.appendChild(s.retries.length ? table('Retry counters since the page\\'s server started', [{ label: 'Retry policy' },
      { label: 'Retries', num: true }, { label: 'Gave up', num: true }, { label: 'Refused by budget', num: true }],
      s.retries.map(function (r) { return [r.name, num(r.attempts), num(r.giveUps), num(r.budgetRejections)]; }), true)
      : el('p', { 'class': 'empty', text: 'No retries yet.' }));
    if (s.budgets.length) counters.appendChild(el('h3', { text: 'Retry budgets' }));
    if (s.budgets.length) counters.appendChild(table('Share of calls each budget lets retry', [{ label: 'Budget' }, { label: 'State', cls: 'state-cell' },
      { label: 'Balance', num: true }, { label: 'Refused', num: true }], s.budgets.map(function (b) {
        return [b.name, badge(b.exhausted ? 'exhausted' : 'ok'), num(b.balance), num(b.refused)];
      }), true));
    var idemKeys = [];
    s.idempotency.forEach(function (i) { Object.keys(i.counts).forEach(function (k) { if (idemKeys.indexOf(k) < 0) idemKeys.push(k); }); });
    idemKeys.sort(function (a, b) { return idemOrder(a) - idemOrder(b); });
    counters.appendChild(el('h3', { text: 'Idempotency keys' }));
    counters.appendChild(s.idempotency.length ? table('Idempotency key events since the page\\'s server started', [{ label: 'Policy' }].concat(idemKeys.map(function (k) {
      return { label: IDEM_WORDS[k] || k, num: true };
    })), s.idempotency.map(function (i) {
      return [i.name].concat(idemKeys.map(function (k) { return num(i.counts[k] || 0); }));
    }), true) : el('p', { 'class': 'empty', text: 'No idempotent requests yet.' }));
    renderChaos(s.chaos);
    $('updated').textContent = 'Updated ' + new Date(s.time).toLocaleTimeString();
  }

  function renderChaos(c) {
    if (!c) return;
    var shown = c.active || c.injected.length > 0 || c.toxics.length > 0 || c.drill;
    $('chaos-section').hidden = !shown;
    $('chaos-banner').hidden = !c.active;
    var box = $('chaos'); box.textContent = '';
    if (c.drill) box.appendChild(el('p', { text: 'Drill ' + c.drill.name + ': ' + (c.drill.phase === 'end' ?
      (c.drill.passed ? 'ended, objectives held' : 'ended, objectives missed') : c.drill.phase === 'step' ? 'step ' + c.drill.step : 'running') }));
    if (c.toxics.length) box.appendChild(table('Fault proxy toxics on now', [{ label: 'Proxy' }, { label: 'Toxic' },
      { label: 'Kind' }, { label: 'Direction' }, { label: 'Target' }], c.toxics.map(function (t) {
        return [t.proxy, t.name, t.toxic, t.direction, t.target];
      }), true));
    if (c.injected.length) box.appendChild(table('Faults injected into calls', [{ label: 'Injected by' }, { label: 'Kind' },
      { label: 'Last injected' }, { label: 'Count', num: true }, { label: 'Last' }], c.injected.map(function (i) {
        return [i.source, i.kind, i.detail, num(i.count), new Date(i.last).toLocaleTimeString()];
      }), true));
  }

  function describe(e) {
    var who = e.source;
    switch (e.type) {
      case 'breaker.open': return 'Breaker ' + who + ' is now Open' + (e.failureRate != null ? ' (failure rate ' + pct(e.failureRate) + ')' : '');
      case 'breaker.halfOpen': return 'Breaker ' + who + ' is now Half-open: probing';
      case 'breaker.close': return 'Breaker ' + who + ' is now Closed';
      case 'breaker.isolate': return 'Breaker ' + who + ' is now Isolated';
      case 'breaker.disable': return 'Breaker ' + who + ' is now Disabled';
      case 'failover.switch': return 'Failover ' + who + ' switched to ' + e.to + (e.from ? ' from ' + e.from : '') + ' (' + e.reason + ')';
      case 'failover.eject': return 'Failover ' + who + ' ejected ' + e.endpoint;
      case 'failover.restore': return 'Failover ' + who + ' restored ' + e.endpoint;
      case 'failover.panic': return 'Failover ' + who + (e.active ? ' is in panic: ' : ' left panic: ') + e.healthy + ' of ' + e.total + ' healthy';
      case 'failover.splitBrain': return 'Failover ' + who + (e.active ? ' is in a split brain: ' : e.disposed ? ' was disposed in a split brain: ' : ' left a split brain: ') + e.endpoints.join(', ');
      case 'chaos.toxic': return 'Chaos: ' + who + (e.active ? ' put on ' : ' took off ') + e.toxic + ' (' + e.name + ') toward ' + e.target;
      case 'chaos.drill': return 'Chaos: drill ' + who + (e.phase === 'start' ? ' started' : e.phase === 'step' ? ': ' + e.step : e.passed ? ' ended, objectives held' : ' ended, objectives missed');
      case 'health.change': return 'Endpoint ' + e.endpoint + ' of ' + who + ' is now ' + (e.healthy ? 'healthy' : 'unhealthy');
      default: return who + ': ' + e.type;
    }
  }
  function announce(e) {
    var text = describe(e), log = $('log');
    $('live').textContent = shown(text);
    // A time no Date holds (a custom clock's NaN) must not throw here and lose the entry.
    var at = new Date(e.time), valid = isFinite(at.getTime());
    log.insertBefore(el('li', null, [el('time', valid ? { datetime: at.toISOString(), text: at.toLocaleTimeString() }
      : { text: 'unknown time' }), text]), log.firstChild);
    while (log.children.length > 20) log.removeChild(log.lastChild);
    $('log-empty').hidden = true;
  }

  fetch(base + '/snapshot').then(function (r) { return r.json(); }).then(render).catch(function () {});
  if (!window.EventSource) { $('connection').textContent = 'Not live: this browser has no EventSource'; return; }
  (function follow() {
    var source = new EventSource(base + '/events');
    source.onopen = function () { $('connection').textContent = 'Live'; };
    // Refused (503: maxClients pages follow already), the browser gives up for good: ask again later.
    source.onerror = function () {
      if (source.readyState !== 2) { $('connection').textContent = 'Reconnecting\\u2026'; return; }
      $('connection').textContent = 'Not live: the server is busy, trying again in 10 s';
      setTimeout(follow, 10000);
    };
    source.addEventListener('snapshot', function (m) { render(JSON.parse(m.data)); });
    source.addEventListener('change', function (m) { announce(JSON.parse(m.data)); });
  })();
})();
`;

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/**
 * The page's Content-Security-Policy: its own inline script and style (by hash), requests to its
 * own origin (the snapshot and the event stream), and nothing else: no other script, no markup
 * from a name could run even if one were ever parsed as HTML; no plugin, form, base or frame.
 */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The dashboard: one self-contained page (inline CSS and script, no build step, no network but
 * its own `<base>/snapshot` and `<base>/events`). Names are set with `textContent`, never parsed
 * as HTML. States are words with a symbol; colour only repeats them.
 */
export function page(base: string, title: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<meta name="holdfast-base" content="${attr(base)}">
<title>${attr(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>${attr(title)}</h1>
  <p id="connection">Connecting&hellip;</p>
  <p id="updated" class="empty"></p>
</header>
<main>
  <section aria-labelledby="h-chaos" id="chaos-section" hidden>
    <h2 id="h-chaos">Injected faults (chaos)</h2>
    <p id="chaos-banner" class="state s-warn" hidden>Faults are being injected on purpose: failures below may be a drill, not an outage.</p>
    <div id="chaos"></div>
  </section>
  <section aria-labelledby="h-health">
    <h2 id="h-health">Health</h2>
    <p id="verdict" class="state s-other">Unknown</p>
    <div id="checks"></div>
  </section>
  <section aria-labelledby="h-changes">
    <h2 id="h-changes">Recent changes</h2>
    <div id="live" role="status" aria-live="polite" aria-atomic="true" class="visually-hidden"></div>
    <ol id="log" reversed></ol>
    <p id="log-empty" class="empty">No state changes yet.</p>
  </section>
  <section aria-labelledby="h-breakers">
    <h2 id="h-breakers">Circuit breakers</h2>
    <div id="breakers"></div>
  </section>
  <section aria-labelledby="h-failovers">
    <h2 id="h-failovers">Failover sets</h2>
    <div id="failovers"></div>
  </section>
  ${limitsSection}
  <section aria-labelledby="h-anomalies" id="anomaly-section" hidden>
    <h2 id="h-anomalies">Anomalies</h2>
    <div id="anomalies"></div>
  </section>
  <section aria-labelledby="h-counters">
    <h2 id="h-counters">Retries and idempotency</h2>
    <div id="counters"></div>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
