import { Agent } from 'node:http';
import { createRequire } from 'node:module';
import { load } from './http-server.js';

// The bytes the Fastify plugin's memoryStore() keeps per record: a server in this process, RECORDS
// first requests (a fresh key each, the body of bench/http-server.ts) after a warm-up, the heap
// (and array buffers, where a Buffer's bytes live) measured after a full collection before and
// after them. Deterministic (no timing); after a build, as it loads `dist/`. Run:
// `cd bench && node --expose-gc --import tsx http-retained.ts`.

const RECORDS = Number(process.env.RECORDS ?? 20_000);
const WARMUP = Number(process.env.WARMUP ?? 2_000);

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

function used(): number {
  (gc as () => void)();
  (gc as () => void)();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}

const require = createRequire(import.meta.url);
const { memoryStore } = require('@holdfast/idempotency');
const { idempotency } = require('@holdfast/idempotency/fastify');
const store = memoryStore({ maxEntries: RECORDS + WARMUP + 10 });
const app = require('fastify')();
await app.register(idempotency, { store, scope: 'global' });
let n = 0;
app.post('/orders', async (_req: unknown, reply: { code(s: number): { send(b: unknown): unknown } }) =>
  reply.code(201).send({ id: ++n, amount: 4200 }),
);
await app.listen({ port: 0, host: '127.0.0.1' });
const port = app.server.address().port;
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
let fresh = 0;
const key = () => `key-${++fresh}`;
await load(port, WARMUP, key, 1, agent);
const before = used();
const size = store.size;
await load(port, RECORDS, key, 1, agent);
const after = used();
const kept = store.size - size;
console.log(
  `${kept} records: ${Math.round((after - before) / kept)} bytes retained per record (heap and array buffers, after a full collection); the store counts ${Math.round(store.bytes / store.size)} against maxBytes`,
);
agent.destroy();
await app.close();
