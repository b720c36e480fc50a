/**
 * An order service guarded by the idempotency middleware on Redis, run as a child process by
 * test/idempotency-failover.test.ts. argv: framework (express | fastify), then the topology as
 * JSON: { standalone: port } | { sentinels: [...], name } | { cluster: [...] }. Prints
 * `listening <port>` once up, and `exec <key>` each time the handler runs (the side effect
 * that must not repeat).
 */
import type { AddressInfo } from 'node:net';
import { redisStore } from '@holdfast/idempotency';
import { idempotency as expressIdempotency } from '@holdfast/idempotency/express';
import { idempotency as fastifyIdempotency } from '@holdfast/idempotency/fastify';
import express from 'express';
import Fastify from 'fastify';
import { Cluster, Redis } from 'ioredis';

type Topology =
  | { standalone: number }
  | { sentinels: { host: string; port: number }[]; name: string }
  | { cluster: { host: string; port: number }[] };

const [framework, topologyJson, durable] = process.argv.slice(2) as [string, string, string | undefined];
const topology = JSON.parse(topologyJson) as Topology;
const fast = { retryStrategy: () => 50, maxRetriesPerRequest: 1, connectTimeout: 500 };
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

const store = redisStore({
  client,
  commandTimeout: 500,
  ...(durable === 'durable' ? { waitForReplicas: { replicas: 1, timeoutMs: 300 } } : {}),
});
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
  app.post('/orders', expressIdempotency(options), express.json(), (req, res) => {
    res.status(201).json(handle(String(req.get('idempotency-key'))));
  });
  const server = app.listen(0, '127.0.0.1', () => {
    process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
  });
} else {
  const app = Fastify();
  await app.register(fastifyIdempotency, options);
  app.post('/orders', async (req, reply) => reply.code(201).send(handle(String(req.headers['idempotency-key']))));
  await app.listen({ port: 0, host: '127.0.0.1' });
  process.stdout.write(`listening ${(app.server.address() as AddressInfo).port}\n`);
}
process.on('SIGTERM', () => process.exit(0));
