/**
 * The holdfast demo, run as a drill: local upstreams misbehave on a script (the drill's steps)
 * while a fleet of well-behaved clients (the drill's load) drives traffic through resilientFetch
 * and through an idempotent orders endpoint; at the end the drill checks its objectives. One
 * process, the in-memory store, no Redis. About 20 seconds; `DEMO_SCALE=0.3` plays the faults 3.3
 * times faster (the recovery after them keeps its length), `DEMO_SEED=n` replays the clients'
 * jitter, `DEMO_JSON=path` writes the drill's JSON result there.
 */
import { setMaxListeners } from 'node:events';
import { writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { type DrillDriver, drill } from '@holdfast/chaos';
import { bus, type EventType } from '@holdfast/core';
import { dashboard } from '@holdfast/dashboard';
import { resilientFetch } from '@holdfast/fetch';
import { memoryStore } from '@holdfast/idempotency';
import { idempotency } from '@holdfast/idempotency/express';
import express, { type ErrorRequestHandler, type Response as ExpressResponse } from 'express';
import { Pace, seeded } from './fleet.js';
import { type Step, Upstream } from './upstreams.js';

const SCALE = Number(process.env.DEMO_SCALE ?? 1);
const SEED = process.env.DEMO_SEED === undefined ? undefined : Number(process.env.DEMO_SEED);
const JSON_PATH = process.env.DEMO_JSON || undefined;
if (!(SCALE > 0 && SCALE <= 10))
  throw new Error(`DEMO_SCALE must be a number in (0, 10], got ${process.env.DEMO_SCALE}`);
if (SEED !== undefined && !Number.isInteger(SEED)) throw new Error(`DEMO_SEED must be an integer, got ${SEED}`);
const CLIENTS = 8;
/** Each client places orders and checks stock, at most this many requests a second for each. */
const PER_SECOND = 5;
/** How long traffic goes on once the last fault is over; recovery is measured in its second half. */
const RECOVERY_MS = 4_000;
const random = SEED === undefined ? Math.random : seeded(SEED);
const started = Date.now();
const elapsed = () => ((Date.now() - started) / 1000).toFixed(1);

// ---- The script: a latency spike, bursts of 503s, one instance that dies and comes back ----
// A list of timed steps (ms from the start of traffic), played as they are: scaled by DEMO_SCALE.
type Fault = Step & { readonly upstream: string };
const script: readonly Fault[] = [
  { at: 2_000, upstream: 'inventory', kind: 'error', status: 503 },
  { at: 2_600, upstream: 'inventory', kind: 'ok' },
  { at: 3_000, upstream: 'payments-a', kind: 'slow', ms: 1_500 },
  { at: 5_000, upstream: 'payments-b', kind: 'error', status: 503 },
  { at: 6_000, upstream: 'payments-a', kind: 'ok' },
  { at: 7_000, upstream: 'payments-c', kind: 'down' },
  { at: 8_000, upstream: 'payments-b', kind: 'ok' },
  { at: 9_000, upstream: 'inventory', kind: 'error', status: 503 },
  { at: 11_000, upstream: 'inventory', kind: 'ok' },
  { at: 12_000, upstream: 'payments-c', kind: 'up' },
].map((step) => ({ ...step, at: Math.round(step.at * SCALE) }) as Fault);
const FAULTS_END = Math.max(...script.map((step) => step.at));
const TRAFFIC_MS = FAULTS_END + RECOVERY_MS;
/** The final window: from here to the end no fault is playing and breakers have had time to probe. */
const RECOVERED_FROM = FAULTS_END + RECOVERY_MS / 2;
/** What the drill holds the demo to. */
const OBJECTIVES = {
  /** Recovered: once the faults are over, at most 5% of the requests sent in the final window fail. */
  maxFinalFailedShare: 0.05,
  /** The faults are felt, but most requests still get through (retries, failover, the idempotent replay). */
  maxFailedShare: 0.25,
  /** No order is created twice. */
  maxDuplicates: 0,
};
const what = (step: Fault) =>
  step.kind === 'error'
    ? `${step.upstream} answers ${step.status}`
    : step.kind === 'slow'
      ? `${step.upstream} slows to ${step.ms} ms`
      : step.kind === 'ok'
        ? `${step.upstream} is fine again`
        : `${step.upstream} goes ${step.kind}`;

// ---- What the bus tells us --------------------------------------------------------------
const seen = new Map<EventType, number>();
const off = bus.on('*', (e) => seen.set(e.type, (seen.get(e.type) ?? 0) + 1));
const count = (type: EventType) => seen.get(type) ?? 0;

// ---- Upstreams that misbehave on the script ----------------------------------------------
// Payments honours Idempotency-Key, as Stripe does: a charge is applied once per key.
const charges = new Map<string, number>();
const chargeRoute =
  (name: string) =>
  (req: import('node:http').IncomingMessage, _body: string, res: import('node:http').ServerResponse) => {
    const key = String(req.headers['idempotency-key'] ?? 'none');
    if (!charges.has(key)) charges.set(key, 0);
    charges.set(key, (charges.get(key) ?? 0) + (req.headers['x-replay-safe'] ? 0 : 1));
    res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ charge: key, by: name }));
  };
const payments = ['payments-a', 'payments-b', 'payments-c'].map((name) => new Upstream(name, chargeRoute(name)));
const inventory = new Upstream('inventory', (_req, _body, res) => {
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"sku":"kettle","stock":12}');
});
// ---- The service under test: POST /orders, idempotent, charging through resilientFetch ----
let toPayments: ReturnType<typeof resilientFetch>; // made once the upstreams have their ports
const executions = new Map<string, number>(); // how often the handler really ran, per order key
const created = new Map<string, number>(); // how often it created the order (201), per order key
const app = express();
const live = dashboard({ title: 'holdfast demo' });
app.use(live);
let conflicts = 0; // 409s the idempotency middleware answered: a duplicate arrived while the first still ran
app.use((_req, res, next) => {
  res.once('finish', () => {
    if (res.statusCode === 409) conflicts++;
  });
  next();
});
const problem = (res: ExpressResponse, status: number, title: string) =>
  void res.status(status).type('application/problem+json').json({ type: 'about:blank', title, status });
app.post(
  '/orders',
  // Stands in for authentication: the client it names scopes the keys (none, or a bad one: 401).
  // A body that is not JSON is refused here too, before a key is claimed.
  (req, res, next) => {
    const client = req.get('x-client');
    if (client === undefined || !/^[\w-]{1,64}$/.test(client)) return problem(res, 401, 'Send one x-client header');
    if (!req.is('application/json')) return problem(res, 415, 'Send the order as application/json');
    res.locals.client = client;
    next();
  },
  // Before the body parser: the fingerprint covers the body's bytes.
  idempotency({ store: memoryStore({ maxEntries: 100_000 }), scope: (req) => req.res?.locals.client }),
  express.json(),
  async (req, res) => {
    const key = `${res.locals.client}/${req.headers['idempotency-key']}`;
    executions.set(key, (executions.get(key) ?? 0) + 1);
    try {
      const charge = await toPayments('/charges', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': `charge:${key}` },
        body: JSON.stringify(req.body),
      });
      if (!charge.ok) {
        await charge.arrayBuffer();
        return problem(res, 502, `Payments answered ${charge.status}`);
      }
      created.set(key, (created.get(key) ?? 0) + 1);
      res.status(201).json({ order: key, charge: await charge.json() });
    } catch {
      // Payments cannot take the charge now: tell the client when to come back, as a refusal
      // should (and nothing of the error: its message names internal hosts).
      res.set('retry-after', '1');
      problem(res, 503, 'Payments unavailable; retry with the same Idempotency-Key');
    }
  },
);
// A body parser's refusal (bad JSON, too large) as a problem; anything else a 500 without internals.
app.use(((error, _req, res, next) => {
  if (res.headersSent) return next(error);
  const status = error.expose && error.status >= 400 && error.status < 500 ? error.status : 500;
  problem(res, status, status === 500 ? 'Internal error' : error.message);
}) as ErrorRequestHandler);

async function main() {
  await Promise.all([...payments, inventory].map((u) => u.start()));
  toPayments = resilientFetch({
    name: 'payments',
    baseUrls: payments.map((p) => p.url),
    timeout: { perTry: 800, total: 2_000 },
    // The demo's faults last seconds: an instance's breaker probes again after one, not after 30.
    breaker: { defaults: { openFor: 1_000, minimumCalls: 5, window: { duration: 2_000, buckets: 4 } } },
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  console.log(`holdfast demo: live dashboard at ${api}${live.path} (for the next ${TRAFFIC_MS / 1000} s)`);
  console.log(
    `${CLIENTS} clients, each at most ${PER_SECOND} orders and ${PER_SECOND} stock checks a second, backing off on failures\n`,
  );

  const lag = monitorEventLoopDelay({ resolution: 20 });
  lag.enable();
  const upstreams = new Map([...payments, inventory].map((u) => [u.name, u]));
  const steps = script.map((step) => ({
    at: step.at,
    name: what(step),
    run: () => upstreams.get(step.upstream)?.apply(step),
  }));

  // ---- A fleet of clients that retry, and back off when refused ------------------------
  const sofar = { requests: 0, ok: 0, failed: 0, replayed: 0 }; // for the progress line
  const failures = new Map<string, number>(); // why requests sent in the final window failed
  const client = resilientFetch({
    name: 'client',
    // Longer than the orders endpoint takes to fail over between payments (2 s at most).
    timeout: { perTry: 2_500, total: 8_000 },
    retry: { maxAttempts: 4, statuses: [409, 429, 502, 503, 504] },
    breaker: { defaults: { openFor: 1_500, minimumCalls: 5, window: { duration: 2_000, buckets: 4 } } },
  });
  const pace = () => new Pace({ perSecond: PER_SECOND, backoff: 100, maxBackoff: 2_000, random });
  /** The drill's load: every client's calls, each on its turn, timed and counted by the drill's `send`. */
  const fleet: DrillDriver = async (send, stop) => {
    const t0 = Date.now();
    setMaxListeners(CLIENTS * 2 * 4, stop); // every call in flight listens to it, a few times over
    /** One client's calls to one service: each on its turn, and the pace told how it went. */
    const loop = async (call: (n: number) => Promise<Response>) => {
      const manners = pace();
      for (let n = 0; ; n++) {
        await manners.turn();
        if (stop.aborted) return;
        const sentAt = Date.now();
        const outcome = await send(
          () => call(n),
          (r) => r.ok,
        ).catch((error: unknown) => error);
        const ok = outcome instanceof Response && outcome.ok;
        if (stop.aborted && !ok) return; // cut off by the end of the run: the drill counts it apart
        sofar.requests++;
        if (ok) sofar.ok++;
        else sofar.failed++;
        if (ok) manners.succeeded();
        else manners.failed(outcome);
        if (!ok && sentAt - t0 >= RECOVERED_FROM) {
          const why =
            outcome instanceof Response ? `HTTP ${outcome.status}` : String((outcome as Error)?.name ?? outcome);
          failures.set(why, (failures.get(why) ?? 0) + 1);
        }
        if (outcome instanceof Response) {
          if (outcome.headers.get('idempotent-replayed') === 'true') sofar.replayed++;
          await outcome.arrayBuffer();
        }
      }
    };
    const clients = Array.from({ length: CLIENTS }, (_, c) => {
      const order = (n: number) => {
        // Orders 0, 0, 1, 2, ..., 9, 10, 10, 11, ...: one in ten is sent twice, as after a lost response.
        const id = Math.floor((n * 10) / 11);
        return client(`${api}/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': `order-${id}`, 'x-client': `client-${c}` },
          body: JSON.stringify({ sku: 'kettle', qty: 1 + (id % 3) }),
          signal: stop,
        });
      };
      return Promise.all([loop(order), loop(() => client(`${inventory.url}/items/kettle`, { signal: stop }))]);
    });
    await Promise.all(clients);
  };

  const tty = process.stdout.isTTY === true;
  const line = () =>
    `t=${elapsed()}s  requests ${sofar.requests}  ok ${sofar.ok}  failed ${sofar.failed}  retries ${count('retry.attempt')}  ` +
    `breaker opens ${count('breaker.open')}  failovers ${count('failover.switch') + count('failover.eject')}  replays ${sofar.replayed}  ` +
    `| ${[...payments, inventory].map((u) => `${u.name} ${u.state}`).join(', ')}`;
  const progress = setInterval(
    () => {
      if (tty) process.stdout.write(`\r\x1b[K${line()}`);
      else console.log(line());
    },
    tty ? 200 : 2_000,
  );

  const result = await drill({
    name: 'holdfast demo',
    load: { drive: fleet, duration: TRAFFIC_MS },
    steps,
    finalWindow: TRAFFIC_MS - RECOVERED_FROM,
    objectives: OBJECTIVES,
    duplicates: () => [...created.values()].reduce((sum, n) => sum + (n - 1), 0),
    print: false, // printed below, beside the demo's own summary
  });
  clearInterval(progress);
  lag.disable();
  if (tty) process.stdout.write('\n');

  live.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await Promise.all([...payments, inventory].map((u) => u.dispose()));
  client.dispose();
  toPayments.dispose();
  off();

  const { load, final } = result;
  const reruns = [...executions.values()].reduce((sum, n) => sum + (n - 1), 0);
  const rows: [string, number][] = [
    ['requests sent by clients (answered or failed)', load.sent],
    ['  answered ok', load.succeeded],
    ['  failed after retries', load.failed],
    ['requests cut off by the end of the run', load.cut],
    ['retries', count('retry.attempt')],
    ['retries refused by the budget', count('retry.budgetExhausted')],
    [
      'breaker transitions (open / half-open / close)',
      count('breaker.open') + count('breaker.halfOpen') + count('breaker.close'),
    ],
    ['calls rejected by an open breaker', count('breaker.reject')],
    ['failovers (switches + ejections)', count('failover.switch') + count('failover.eject')],
    ['idempotent replays', count('idempotency.replay')],
    ['duplicates that arrived mid-run (409, retried later)', conflicts],
    ['orders created', created.size],
    ['handler re-runs after a failed first run', reruns],
    ['charges applied by payments', charges.size],
    ['duplicate executions (orders created twice)', result.duplicates ?? 0],
    [`requests sent in the final ${(TRAFFIC_MS - RECOVERED_FROM) / 1000} s (faults over)`, final.sent],
    ['  of which answered ok', final.sent - final.failed],
    ['longest the event loop was held up (ms)', Math.round(lag.max / 1e6)],
  ];
  console.log(`\nholdfast demo, ${elapsed()} s\n`);
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${String(v).padStart(7)}`);
  const share = final.sent === 0 ? 0 : (100 * (final.sent - final.failed)) / final.sent;
  console.log(`\n  recovered: ${share.toFixed(1)}% of requests answered ok once the faults were over`);
  if (failures.size > 0) console.log(`  failed then: ${[...failures].map(([why, n]) => `${why} ${n}`).join(', ')}`);
  console.log(`\n${result.report}`);
  if (JSON_PATH) {
    await writeFile(JSON_PATH, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`\nthe drill's JSON result: ${JSON_PATH}`);
  }
  if (!result.passed) process.exitCode = 1;
}

await main();
