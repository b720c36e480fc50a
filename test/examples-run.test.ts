import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PgPair, postgresAvailable, startPgPair } from './support/postgres.js';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

// The examples run as examples/README.md says, as processes: each example's `start` script (what
// `pnpm --filter <example> start` runs) in its folder. test/examples.test.ts drives the same code
// in process; this is what a user sees: a script that ends exits by itself, a service stops on
// Ctrl-C (SIGINT), and an unreachable Redis is reported, not thrown as ioredis' "Unhandled error
// event" over and over.

const root = join(import.meta.dirname, '..');
const LIMIT_MS = 30_000;

interface Run {
  readonly child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** Resolves once `pattern` was printed; rejects past LIMIT_MS. */
  printed(pattern: RegExp): Promise<RegExpExecArray>;
  /** Resolves to how it ended; a process still running after LIMIT_MS is killed and says so. */
  readonly ended: Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }>;
  /** Ctrl-C: SIGINT. */
  interrupt(): void;
}

/** Runs `examples/<name>`'s start script in its folder, with `env` added. */
function start(name: string, env: Record<string, string>): Run {
  const dir = join(root, 'examples', name);
  const script = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts
    .start;
  // `node <args>`: run with this Node, as pnpm would run it with the one on PATH.
  const [program, ...args] = script.split(/\s+/);
  if (program !== 'node') throw new Error(`examples/${name}: start is not a node command: ${script}`);
  const child = spawn(process.execPath, args, {
    cwd: dir,
    env: { ...process.env, NODE_OPTIONS: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const waiting = new Set<() => void>();
  const onData = (d: Buffer) => {
    output += d;
    for (const check of waiting) check();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  let killed = false;
  const guard = setTimeout(() => {
    killed = true;
    signal('SIGKILL');
  }, LIMIT_MS);
  const signal = (sig: NodeJS.Signals) => child.kill(sig);
  const ended = once(child, 'exit').then(([code, signal]) => {
    clearTimeout(guard);
    for (const check of waiting) check();
    return { code: code as number | null, signal: signal as NodeJS.Signals | null, killed };
  });
  const printed = (pattern: RegExp) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(output);
        if (m) resolve(m);
        else if (child.exitCode !== null || child.signalCode !== null)
          reject(new Error(`${name} exited before printing ${pattern}:\n${output}`));
        else return;
        waiting.delete(check);
      };
      waiting.add(check);
      check();
    });
  return { child, output: () => output, printed, ended, interrupt: () => signal('SIGINT') };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const post = (url: string, key: string) =>
  fetch(`${url}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, 'x-account': 'acme' },
    body: JSON.stringify({ sku: 'kettle', amount: 4200 }),
  });

let redis: RedisServer;
beforeAll(async () => {
  redisAvailable();
  [redis] = (await startRedis(1)) as [RedisServer];
});
afterAll(stopAllRedis);

describe('examples, run as their README says', () => {
  it('worker: processes its messages and exits by itself', async () => {
    const run = start('worker', {});
    expect(await run.ended, run.output()).toEqual({ code: 0, signal: null, killed: false });
    expect(run.output()).toContain('handler ran 200 times');
  });

  for (const name of ['orders-express', 'orders-fastify']) {
    it(`${name}: answers POST /orders on Redis and stops on Ctrl-C`, async () => {
      const run = start(name, { REDIS_URL: redis.url, PORT: '0' });
      const [, url] = (await run.printed(/listening on (http:\/\/\S+)/)) as unknown as [string, string];
      const key = `${name}-${Date.now()}`;
      const first = await post(url, key);
      expect(first.status).toBe(201);
      await first.arrayBuffer();
      const again = await post(url, key);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      await again.arrayBuffer();
      run.interrupt();
      expect(await run.ended, run.output()).toEqual({ code: 0, signal: null, killed: false });
    });

    it(`${name}: with Redis unreachable, answers 503, says so once, and stops on Ctrl-C`, async () => {
      const run = start(name, { REDIS_URL: `redis://127.0.0.1:${await closedPort()}`, PORT: '0' });
      const [, url] = (await run.printed(/listening on (http:\/\/\S+)/)) as unknown as [string, string];
      const res = await post(url, `${name}-down`);
      expect(res.status).toBe(503);
      await res.arrayBuffer();
      run.interrupt();
      expect(await run.ended, run.output()).toEqual({ code: 0, signal: null, killed: false });
      expect(run.output()).not.toContain('Unhandled error event');
      expect(run.output().match(/ECONNREFUSED/g)?.length ?? 0, run.output()).toBeLessThanOrEqual(1);
    });
  }
});

describe('examples/nest-style, run as its README says', () => {
  it('stops on Ctrl-C and exits 0, also with a client that never finishes its request', async () => {
    const run = start('nest-style', { PORT: '0', INVENTORY_URL: `http://127.0.0.1:${await closedPort()}` });
    const [, url] = (await run.printed(/listening (http:\/\/\S+)/)) as unknown as [string, string];
    const { connect } = await import('node:net');
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write('POST /orders HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{');
    run.interrupt();
    expect(await run.ended, run.output()).toEqual({ code: 0, signal: null, killed: false });
    socket.destroy();
  });
});

describe.skipIf(!postgresAvailable())('examples/db-failover, run as its README says', () => {
  let pair: PgPair | undefined;
  beforeAll(async () => {
    pair = await startPgPair();
  }, 120_000);
  afterAll(async () => {
    await pair?.stop();
  });

  it('places an order on a new PostgreSQL pair and a cart on Redis, and exits by itself', async () => {
    const url = (n: { port: number; connection: { user: string; database: string } }) =>
      `postgres://${n.connection.user}@127.0.0.1:${n.port}/${n.connection.database}`;
    const { primary, replica } = pair as PgPair;
    const run = start('db-failover', {
      PG_SERVERS: `${url(primary)},${url(replica)}`,
      REDIS_SERVERS: redis.url,
    });
    expect(await run.ended, run.output()).toEqual({ code: 0, signal: null, killed: false });
    expect(run.output()).toMatch(/orders: \d+/);
    expect(run.output()).toMatch(/cart 42: \{ kettle: '\d+' \}/);
    // Roles found on the first check, while the clients were still connecting.
    expect(run.output()).not.toContain('unreachable');
  });
});
