/**
 * The holdfast demo: local upstreams misbehave on a script while clients that retry drive
 * traffic through resilientFetch and through an idempotent orders endpoint. One process, the
 * in-memory store, no Redis. About 20 seconds.
 */
import type { AddressInfo } from 'node:net';
import { bus, type EventType } from '@holdfast/core';
import { dashboard } from '@holdfast/dashboard';
import { resilientFetch } from '@holdfast/fetch';
import { memoryStore } from '@holdfast/idempotency';
import { idempotency } from '@holdfast/idempotency/express';
import express from 'express';
import { Upstream } from './upstreams.js';

const TRAFFIC_MS = Number(process.env.DEMO_TRAFFIC_MS ?? 16_000);
const CLIENTS = 8;
const started = Date.now();
const elapsed = () => ((Date.now() - started) / 1000).toFixed(1);

// ---- What the bus tells us --------------------------------------------------------------
const seen = new Map<EventType, number>();
const off = bus.on('*', (e) => seen.set(e.type, (seen.get(e.type) ?? 0) + 1));
const count = (type: EventType) => seen.get(type) ?? 0;

// ---- Upstreams that misbehave on a script -----------------------------------------------
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
const [payA, payB, payC] = payments as [Upstream, Upstream, Upstream];

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
app.post(
  '/orders',
  express.json(),
  idempotency({
    store: memoryStore({ maxEntries: 100_000 }),
    scope: (req) => String(req.headers['x-client'] ?? 'anonymous'),
  }),
  async (req, res) => {
    const key = `${req.headers['x-client']}/${req.headers['idempotency-key']}`;
    executions.set(key, (executions.get(key) ?? 0) + 1);
    try {
      const charge = await toPayments('/charges', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': `charge:${key}` },
        body: JSON.stringify(req.body),
      });
      if (!charge.ok) return void res.status(502).json({ error: `payments answered ${charge.status}` });
      created.set(key, (created.get(key) ?? 0) + 1);
      res.status(201).json({ order: key, charge: await charge.json() });
    } catch (error) {
      res.status(503).json({ error: (error as Error).message });
    }
  },
);

async function main() {
  await Promise.all([...payments, inventory].map((u) => u.start()));
  toPayments = resilientFetch({
    name: 'payments',
    baseUrls: payments.map((p) => p.url),
    timeout: { perTry: 400, total: 3_000 },
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  console.log(`holdfast demo: live dashboard at ${api}${live.path} (for the next ${TRAFFIC_MS / 1000} s)\n`);

  // The script: a latency spike, bursts of 503s, and one instance that dies and comes back.
  payA.play([
    { at: 3_000, kind: 'slow', ms: 700 },
    { at: 6_000, kind: 'ok' },
  ]);
  payB.play([
    { at: 5_000, kind: 'error', status: 503 },
    { at: 8_000, kind: 'ok' },
  ]);
  payC.play([
    { at: 7_000, kind: 'down' },
    { at: 12_000, kind: 'up' },
  ]);
  inventory.play([
    { at: 2_000, kind: 'error', status: 503 },
    { at: 2_600, kind: 'ok' },
    { at: 9_000, kind: 'error', status: 503 },
    { at: 11_000, kind: 'ok' },
  ]);

  // ---- Clients that retry ----------------------------------------------------------------
  const totals = { requests: 0, ok: 0, failed: 0, replayed: 0 };
  const client = resilientFetch({
    name: 'client',
    timeout: { perTry: 300, total: 5_000 },
    retry: { maxAttempts: 4, statuses: [409, 429, 502, 503, 504] },
    breaker: { defaults: { openFor: 1_500, minimumCalls: 5, window: { duration: 2_000, buckets: 4 } } },
  });
  const stopAt = Date.now() + TRAFFIC_MS;
  const clients = Array.from({ length: CLIENTS }, async (_, c) => {
    for (let n = 0; Date.now() < stopAt; n++) {
      const sends = n % 10 === 0 ? 2 : 1; // one order in ten is sent twice, as after a lost response
      for (let s = 0; s < sends; s++) {
        totals.requests++;
        const res = await client(`${api}/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': `order-${n}`, 'x-client': `client-${c}` },
          body: JSON.stringify({ sku: 'kettle', qty: 1 + (n % 3) }),
        }).catch(() => undefined);
        if (res?.ok) totals.ok++;
        else totals.failed++;
        if (res?.headers.get('idempotent-replayed') === 'true') totals.replayed++;
        await res?.arrayBuffer();
      }
      totals.requests++;
      const stock = await client(`${inventory.url}/items/kettle`).catch(() => undefined);
      if (stock?.ok) totals.ok++;
      else totals.failed++;
      await stock?.arrayBuffer();
    }
  });

  const tty = process.stdout.isTTY === true;
  const line = () =>
    `t=${elapsed()}s  requests ${totals.requests}  ok ${totals.ok}  failed ${totals.failed}  retries ${count('retry.attempt')}  ` +
    `breaker opens ${count('breaker.open')}  failovers ${count('failover.switch') + count('failover.eject')}  replays ${totals.replayed}  ` +
    `| ${[...payments, inventory].map((u) => `${u.name} ${u.state}`).join(', ')}`;
  const progress = setInterval(
    () => {
      if (tty) process.stdout.write(`\r\x1b[K${line()}`);
      else console.log(line());
    },
    tty ? 200 : 2_000,
  );

  await Promise.all(clients);
  clearInterval(progress);
  if (tty) process.stdout.write('\n');

  live.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await Promise.all([...payments, inventory].map((u) => u.dispose()));
  client.dispose();
  toPayments.dispose();
  off();

  const duplicates = [...created.values()].reduce((sum, n) => sum + (n - 1), 0);
  const reruns = [...executions.values()].reduce((sum, n) => sum + (n - 1), 0);
  const rows: [string, number][] = [
    ['requests sent by clients', totals.requests],
    ['  answered ok', totals.ok],
    ['  failed after retries', totals.failed],
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
    ['duplicate executions (orders created twice)', duplicates],
  ];
  console.log(`\nholdfast demo, ${elapsed()} s\n`);
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${String(v).padStart(7)}`);
  if (duplicates > 0) process.exitCode = 1;
}

await main();
