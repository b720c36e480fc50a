/**
 * An order service guarded by the idempotency middleware on Redis, run as a child process by
 * test/idempotency-failover.test.ts. argv: framework (express | fastify). `POST /topology`
 * with { topology, durable } points it at a Redis: { standalone: port } | { sentinels: [...],
 * name } | { cluster: [...] }. Prints
 * `listening <port>` once up, and `exec <key>` each time the handler runs (the side effect
 * that must not repeat).
 */
import type { AddressInfo } from 'node:net';
import { type IdempotencyStore, type RedisStore, redisStore } from '@holdfast/idempotency';
import { idempotency as expressIdempotency } from '@holdfast/idempotency/express';
import { idempotency as fastifyIdempotency } from '@holdfast/idempotency/fastify';
import express from 'express';
import Fastify from 'fastify';
import { Cluster, Redis } from 'ioredis';

type Topology =
  | { standalone: number }
  | { sentinels: { host: string; port: number }[]; name: string }
  | { cluster: { host: string; port: number }[] };

const framework = process.argv[2] as 'express' | 'fastify';
const fast = { retryStrategy: () => 50, maxRetriesPerRequest: 1, connectTimeout: 500 };

function connect(topology: Topology): Redis | Cluster {
  const client =
    'standalone' in topology
      ? new Redis(topology.standalone, '127.0.0.1', fast)
      : 'sentinels' in topology
        ? new Redis({
            ...fast,
            sentinels: topology.sentinels,
            name: topology.name,
            failoverDetector: true,
            sentinelRetryStrategy: () => 50,
          })
        : new Cluster(topology.cluster, { clusterRetryStrategy: () => 50, redisOptions: fast });
  client.on('error', () => {});
  // ioredis ends a Sentinel client for good when its failoverDetector fires while it is already
  // reconnecting (ioredis#1683: "Connection is closed" on every command after a failover, for
  // some processes only); docs/idempotency.md gives this workaround.
  if ('sentinels' in topology) {
    client.on('end', () => {
      if (client === current?.client) client.connect().catch(() => {});
    });
  }
  return client;
}

// The test points the service at each scenario's Redis in turn (POST /topology), so one pair of
// processes serves every scenario: the store the middleware holds delegates to the current one.
let client: Redis | Cluster | undefined;
let current: RedisStore | undefined;
const unset = () => Promise.reject(new Error('no topology yet'));
const store: IdempotencyStore = {
  claim: (...args) => current?.claim(...args) ?? unset(),
  complete: (...args) => current?.complete(...args) ?? unset(),
  release: (...args) => current?.release(...args) ?? unset(),
};
function useTopology(body: { topology: Topology; durable: boolean }): void {
  const previous = client;
  client = connect(body.topology);
  current = redisStore({
    client,
    commandTimeout: 500,
    ...(body.durable ? { waitForReplicas: { replicas: 1, timeoutMs: 300 } } : {}),
  });
  previous?.disconnect(); // not current's any more: not revived
}

const options = {
  store,
  scope: 'global' as const,
  required: true,
  leaseMs: 5_000,
  storeTimeoutMs: 1_000,
  completeTimeoutMs: 6_000,
};
let n = 0;
const handle = (key: string) => {
  process.stdout.write(`exec ${key}\n`);
  return { order: `${process.pid}-${++n}` };
};

if (framework === 'express') {
  const app = express();
  app.post('/topology', express.json(), (req, res) => {
    useTopology(req.body);
    res.status(204).end();
  });
  app.post('/orders', expressIdempotency(options), express.json(), (req, res) => {
    res.status(201).json(handle(String(req.get('idempotency-key'))));
  });
  const server = app.listen(0, '127.0.0.1', () => {
    process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
  });
} else {
  const app = Fastify();
  await app.register(fastifyIdempotency, options);
  app.post('/topology', { config: { idempotency: false } }, async (req, reply) => {
    useTopology(req.body as { topology: Topology; durable: boolean });
    return reply.code(204).send();
  });
  app.post('/orders', async (req, reply) => reply.code(201).send(handle(String(req.headers['idempotency-key']))));
  await app.listen({ port: 0, host: '127.0.0.1' });
  process.stdout.write(`listening ${(app.server.address() as AddressInfo).port}\n`);
}
process.on('SIGTERM', () => process.exit(0));
