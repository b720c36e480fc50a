/**
 * Scenarios of test/observability-hostile-review.test.ts that may crash or hold a process: each
 * runs here, in a child process, as a user's service would (the dashboard mounted per its README)
 * and prints one JSON line `{ result }` at the end. A crash shows as no result and a non-zero code.
 *
 * node --conditions=@holdfast/source --import tsx test/support/observability-child.ts <scenario>
 */
import { once } from 'node:events';
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const scenario = process.argv[2] ?? '';
const report = (result: unknown) => process.stdout.write(`${JSON.stringify({ result })}\n`);
const port = (server: Server) => (server.address() as AddressInfo).port;

/** A queue whose depth is a bigint (process.hrtime.bigint() and BigInt counters are common). */
async function nonJsonSnapshot(framework: 'node' | 'express'): Promise<void> {
  const { registerSnapshot } = await import('@holdfast/core');
  const { circuitBreaker } = await import('@holdfast/breaker');
  const { dashboard } = await import('@holdfast/dashboard');
  const queue = { snapshot: () => ({ depth: 10n, healthy: true }) as never };
  const unregister = registerSnapshot('queue', 'jobs', queue);
  const payments = circuitBreaker({ name: 'payments' });
  const dash = dashboard({ path: '/holdfast' });
  let server: Server;
  if (framework === 'express') {
    const { default: express } = await import('express');
    const app = express();
    app.use(dash);
    server = app.listen(0, '127.0.0.1');
  } else {
    server = createServer((req, res) => dash(req, res)).listen(0, '127.0.0.1');
  }
  await once(server, 'listening');
  const res = await fetch(`http://127.0.0.1:${port(server)}/holdfast/snapshot`);
  const body = await res.text();
  report({ status: res.status, body: body.slice(0, 2000) });
  dash.close();
  server.close();
  payments.dispose();
  unregister();
}

/** Reads the first chunk of an event stream; resolves with everything read when it ends. */
function openStream(url: string): Promise<{ first: Promise<void>; ended: Promise<string> }> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let text = '';
      let gotFirst: () => void = () => {};
      const first = new Promise<void>((r) => {
        gotFirst = r;
      });
      const ended = new Promise<string>((r) => {
        res.on('end', () => r(text));
        res.on('close', () => r(text));
        res.on('error', () => r(text));
      });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        gotFirst();
      });
      resolve({ first, ended });
    }).on('error', reject);
  });
}

/** dash.close() from inside a bus listener while a page follows the events. */
async function closeInListener(): Promise<void> {
  const { createBus, createPolicyRegistry } = await import('@holdfast/core');
  const { circuitBreaker } = await import('@holdfast/breaker');
  const { dashboard } = await import('@holdfast/dashboard');
  const bus = createBus();
  const policies = createPolicyRegistry();
  const dash = dashboard({ bus, policies, path: '/holdfast' });
  // e.g. "take the ops page down when a drill opens the breaker"; any close() during a dispatch.
  bus.on('breaker.open', () => dash.close());
  const server = createServer((req, res) => dash(req, res)).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const stream = await openStream(`http://127.0.0.1:${port(server)}/holdfast/events`);
  await stream.first;
  const payments = circuitBreaker({ name: 'payments', bus, policies });
  payments.open();
  await stream.ended;
  await new Promise((r) => setTimeout(r, 300)); // the settle timer (50 ms) has had its chance
  report({ closed: dash.clients === 0 });
  server.close();
  payments.dispose();
}

/** A page follows the events; the service shuts down the way the README says. */
async function shutdown(how: 'dash.close' | 'server.close'): Promise<void> {
  const { createBus, createPolicyRegistry } = await import('@holdfast/core');
  const { dashboard } = await import('@holdfast/dashboard');
  const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), path: '/holdfast', interval: 200 });
  const server = createServer((req, res) => dash(req, res)).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const stream = await openStream(`http://127.0.0.1:${port(server)}/holdfast/events`);
  await stream.first;
  if (how === 'dash.close') dash.close();
  server.close();
  const text = await stream.ended;
  report({ streamEnded: true, gotSnapshot: text.includes('event: snapshot'), clients: dash.clients });
  // Nothing else: the process must now exit on its own.
}

/** Another major of @holdfast/core got here first: this one must warn that the bus is split. */
async function busSplit(): Promise<void> {
  const warnings: string[] = [];
  process.on('warning', (w) => warnings.push((w as { code?: string }).code ?? w.name));
  (globalThis as Record<symbol, unknown>)[Symbol.for('@holdfast/core/bus-versions')] = new Map([[1, '1.4.0']]);
  await import('@holdfast/core');
  await new Promise((r) => setImmediate(r));
  report({ warnings });
}

const scenarios: Record<string, () => Promise<void>> = {
  'non-json-snapshot-node': () => nonJsonSnapshot('node'),
  'non-json-snapshot-express': () => nonJsonSnapshot('express'),
  'close-in-listener': closeInListener,
  'shutdown-dash-close': () => shutdown('dash.close'),
  'shutdown-server-close': () => shutdown('server.close'),
  'bus-split': busSplit,
};

const run = scenarios[scenario];
if (run === undefined) {
  process.stderr.write(`unknown scenario "${scenario}"\n`);
  process.exitCode = 2;
} else {
  await run();
}
