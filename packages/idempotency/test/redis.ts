import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { type RedisServer, startRedis, stopAllRedis } from '../../../test/support/redis.js';

const clients = new Set<Redis>();

/** An ioredis client of a test's own; errors are expected (servers get killed), so they are kept quiet. */
export function connect(server: RedisServer, options: RedisOptions = {}): Redis {
  const client = new Redis(server.port, server.host, options);
  client.on('error', () => {});
  clients.add(client);
  return client;
}

export function disconnectAll(): void {
  for (const client of clients) client.disconnect();
  clients.clear();
}

/**
 * A redis-server of the describe block's own, and a client on it: started before its tests,
 * stopped after them with every client (`after` first: children to kill, say).
 */
export function useRedisServer(after?: () => void): { readonly server: RedisServer; readonly client: Redis } {
  const used = {} as { server: RedisServer; client: Redis };
  beforeAll(async () => {
    [used.server] = (await startRedis(1)) as [RedisServer];
    used.client = connect(used.server);
  });
  afterAll(async () => {
    after?.();
    disconnectAll();
    await stopAllRedis();
  });
  return used;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Watches a server with MONITOR. `commandsDuring(fn)` lists the commands clients sent while `fn`
 * ran: each one is a round trip. Commands that scripts run inside Redis (source "lua") are not.
 */
export async function watchCommands(server: RedisServer) {
  const monitor = await connect(server).monitor();
  const marker = connect(server);
  const lines: { command: string; arg: string; source: string }[] = [];
  const waiters = new Map<string, () => void>();
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    const [command = '', arg = ''] = args;
    lines.push({ command: command.toLowerCase(), arg, source });
    if (command.toLowerCase() === 'echo') waiters.get(arg)?.();
  });
  let seq = 0;
  const mark = async () => {
    const id = `mark-${++seq}`;
    const seen = new Promise<void>((resolve) => waiters.set(id, resolve));
    await marker.echo(id);
    await seen;
    waiters.delete(id);
    return lines.findIndex((l) => l.command === 'echo' && l.arg === id);
  };
  return {
    async commandsDuring<T>(fn: () => Promise<T>): Promise<[T, string[]]> {
      const from = await mark();
      const result = await fn();
      const to = await mark();
      const sent = lines.slice(from + 1, to).filter((l) => l.source !== 'lua');
      return [result, sent.map((l) => l.command)];
    },
    /** Every command clients sent, and every command scripts ran, while `fn` ran. */
    async allDuring(fn: () => Promise<unknown>): Promise<{ command: string; source: string }[]> {
      const from = await mark();
      await fn();
      const to = await mark();
      return lines
        .slice(from + 1, to)
        .map(({ command, source }) => ({ command, source: source === 'lua' ? 'lua' : 'client' }));
    },
    close: () => monitor.disconnect(),
  };
}
