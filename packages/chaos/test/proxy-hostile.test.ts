/**
 * Hostile review of the fault proxy: byte integrity through every toxic, half-close, toxics
 * coming off while bytes are held, a thousand connections, upstreams that refuse, reset, never
 * answer or restart, and a lost reply against a real redis-server. Loopback only; bounded.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { HoldfastConfigError } from '@holdfast/core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { type FaultProxy, faultProxy, type Toxic } from '../src/index.js';

const MB10 = Buffer.alloc(10 * 1024 * 1024);
for (let i = 0; i < MB10.length; i++) MB10[i] = (i * 7919 + (i >> 13)) & 0xff;
const sha = (b: Buffer | Buffer[]) =>
  createHash('sha256')
    .update(Array.isArray(b) ? Buffer.concat(b) : b)
    .digest('hex');
const WANT = sha(MB10);

const servers: Server[] = [];
const proxies: FaultProxy[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  for (const s of servers.splice(0)) s.close();
});

async function listen(handler: (s: Socket) => void, port = 0): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    handler(s);
  });
  servers.push(server);
  server.listen({ port, host: '127.0.0.1', backlog: 2048 });
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function proxyTo(port: number): Promise<FaultProxy> {
  const p = await faultProxy({ target: { port } });
  proxies.push(p);
  return p;
}

function client(p: FaultProxy): Socket {
  const s = connect({ port: p.port, host: '127.0.0.1', allowHalfOpen: true });
  s.on('error', () => {});
  sockets.push(s);
  return s;
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('faultProxy, hostile: bytes', () => {
  it('half-close: the client ends its write side, the server replies 10 MB and ends; a slow reader gets every byte', async () => {
    const port = await listen((s) => {
      s.on('data', () => {});
      s.on('end', () => s.end(MB10));
    });
    const p = await proxyTo(port);
    for (const pause of [1, 5, 20]) {
      const c = client(p);
      await once(c, 'connect');
      c.end('request');
      const got: Buffer[] = [];
      c.on('data', (b: Buffer) => {
        got.push(b);
        c.pause(); // a slow reader: the proxy's pumps back up
        setTimeout(() => c.resume(), pause);
      });
      await once(c, 'close');
      // Before the fix, most runs: 9,861,120 of 10,485,760 bytes, then a clean FIN.
      expect(Buffer.concat(got).length, `pause ${pause} ms`).toBe(MB10.length);
      expect(sha(got)).toBe(WANT);
    }
  }, 60_000);

  for (const toxic of [
    { type: 'latency', latency: 100 },
    { type: 'blackhole', direction: 'downstream' },
  ] as Toxic[]) {
    it(`half-close: a reply held by a ${toxic.type} toxic when the server closes is still delivered`, async () => {
      const port = await listen((s) => {
        s.on('data', () => {});
        s.on('end', () => s.end('pong'));
      });
      const p = await proxyTo(port);
      const held = p.add(toxic);
      const c = client(p);
      await once(c, 'connect');
      let got = '';
      c.on('data', (b) => (got += b));
      const closed = once(c, 'close');
      c.end('ping'); // the client's write side ends first, as `nc -N` or an HTTP/1.0 client does
      await tick(200);
      held.remove();
      await closed;
      // Before the fix: '' (the upstream socket closed once both its sides had ended, and the
      // proxy destroyed the link with the reply still queued in it).
      expect(got).toBe('pong');
    });
  }

  const flipped: Toxic[] = [
    { type: 'latency', latency: 2, jitter: 2, direction: 'both' },
    { type: 'slicer', size: 333, direction: 'both' },
    { type: 'bandwidth', rate: 200_000_000, direction: 'both' },
    { type: 'blackhole' },
  ];
  for (const toxic of flipped) {
    it(`10 MB each way with a ${toxic.type} toxic flipped on and off every 3 ms: same sha256 both ways`, async () => {
      let upstreamSaw = '';
      const port = await listen((s) => {
        const h = createHash('sha256');
        s.on('data', (b) => h.update(b));
        s.on('end', () => {
          upstreamSaw = h.digest('hex');
          s.end();
        });
        s.write(MB10);
      });
      const p = await proxyTo(port);
      const c = client(p);
      await once(c, 'connect');
      const got: Buffer[] = [];
      c.on('data', (b: Buffer) => got.push(b));
      const closed = once(c, 'close');
      let on: { remove(): void } | undefined;
      let flips = 0;
      const flip = setInterval(() => {
        flips++;
        if (on) {
          on.remove();
          on = undefined;
        } else on = p.add(toxic);
      }, 3);
      for (let i = 0; i < MB10.length; i += 65_536) {
        if (!c.write(MB10.subarray(i, i + 65_536))) await once(c, 'drain');
      }
      c.end();
      await closed;
      clearInterval(flip);
      expect(flips).toBeGreaterThan(2);
      expect(Buffer.concat(got).length).toBe(MB10.length);
      expect(sha(got)).toBe(WANT);
      expect(upstreamSaw).toBe(WANT);
    }, 60_000);
  }

  it('a latency toxic with heavy jitter keeps byte order (1,000 numbered chunks)', async () => {
    const port = await listen((s) => s.pipe(s));
    const p = await faultProxy({ target: { port }, random: () => Math.random() });
    proxies.push(p);
    p.add({ type: 'latency', latency: 20, jitter: 20, direction: 'both' });
    const c = client(p);
    await once(c, 'connect');
    const got: Buffer[] = [];
    c.on('data', (b: Buffer) => got.push(b));
    const sent: Buffer[] = [];
    for (let i = 0; i < 1_000; i++) {
      const b = Buffer.from(`${String(i).padStart(4, '0')};`);
      sent.push(b);
      c.write(b);
      if (i % 50 === 0) await tick(1);
    }
    while (Buffer.concat(got).length < 5_000) await tick(10);
    expect(Buffer.concat(got).toString()).toBe(Buffer.concat(sent).toString());
  }, 30_000);

  it('bandwidth: never more than rate bytes per second plus one tenth-second piece (counted, not timed)', async () => {
    const port = await listen((s) => s.write(Buffer.alloc(200_000, 1)));
    const p = await proxyTo(port);
    p.add({ type: 'bandwidth', rate: 50_000 });
    const c = client(p);
    let n = 0;
    const started = performance.now();
    const samples: { at: number; n: number }[] = [];
    c.on('data', (b: Buffer) => {
      n += b.length;
      samples.push({ at: performance.now() - started, n });
    });
    await tick(1_000);
    c.destroy();
    expect(n).toBeGreaterThan(0);
    // Every observation: bytes so far <= rate * elapsed + one piece (rate / 10).
    for (const s of samples) expect(s.n).toBeLessThanOrEqual((50_000 * s.at) / 1_000 + 5_000);
  });
});

describe('faultProxy, hostile: toxics coming off while bytes are held', () => {
  it('a bandwidth toxic removed part way through a chunk stops throttling it', async () => {
    const port = await listen((s) => s.write(Buffer.alloc(60_000, 1)));
    const p = await proxyTo(port);
    const bw = p.add({ type: 'bandwidth', rate: 1_000 });
    const c = client(p);
    let n = 0;
    c.on('data', (b: Buffer) => {
      n += b.length;
    });
    while (n === 0) await tick(10);
    bw.remove();
    // At 1,000 bytes/s the rest of the chunk took a minute more; removed, it comes at once.
    // Before the fix: 8,000 of 60,000 bytes 500 ms after the removal.
    for (let i = 0; i < 300 && n < 60_000; i++) await tick(10);
    expect(n).toBe(60_000);
  }, 10_000);

  it('restore() lifts a slicer for the bytes it holds now', async () => {
    const port = await listen((s) => s.write(Buffer.alloc(10_000, 2)));
    const p = await proxyTo(port);
    p.add({ type: 'slicer', size: 100, delay: 1_000 });
    const c = client(p);
    let n = 0;
    c.on('data', (b: Buffer) => {
      n += b.length;
    });
    while (n === 0) await tick(10);
    await p.restore();
    for (let i = 0; i < 300 && n < 10_000; i++) await tick(10);
    expect(n).toBe(10_000); // 99 pieces 1 s apart before the fix
  }, 10_000);

  it('a latency toxic removed lets the chunk it was holding through at once', async () => {
    let got = '';
    const port = await listen((s) => s.on('data', (b) => (got += b)));
    const p = await proxyTo(port);
    const lag = p.add({ type: 'latency', latency: 60_000, direction: 'upstream' });
    const c = client(p);
    await once(c, 'connect');
    c.write('ping');
    await tick(100);
    expect(got).toBe('');
    lag.remove();
    for (let i = 0; i < 300 && got === ''; i++) await tick(10);
    expect(got).toBe('ping'); // a minute later before the fix
  }, 10_000);

  it('a limit toxic taken off and added again under its name counts from zero', async () => {
    const port = await listen((s) => s.on('data', (b) => s.write(b)));
    const p = await proxyTo(port);
    const c = client(p);
    let n = 0;
    c.on('data', (b: Buffer) => {
      n += b.length;
    });
    p.add({ type: 'limit', bytes: 100, name: 'cap' }).remove();
    p.add({ type: 'limit', bytes: 100, name: 'cap' });
    c.write(Buffer.alloc(80));
    while (n < 80) await tick(5);
    p.add({ type: 'limit', bytes: 100, name: 'cap' }); // "since the toxic was added": 100 more
    c.write(Buffer.alloc(80));
    for (let i = 0; i < 100 && n < 160; i++) await tick(5);
    expect(n).toBe(160); // 100, then closed, before the fix
    expect(c.destroyed || c.readableEnded).toBe(false);
  });

  it('a bandwidth toxic on one connection: removing an unrelated toxic does not lift it', async () => {
    const port = await listen((s) => s.write(Buffer.alloc(20_000, 1)));
    const p = await proxyTo(port);
    p.add({ type: 'bandwidth', rate: 10_000 });
    const c = client(p);
    let n = 0;
    const started = performance.now();
    c.on('data', (b: Buffer) => {
      n += b.length;
    });
    while (n === 0) await tick(5);
    for (let i = 0; i < 20; i++) p.add({ type: 'latency', latency: 1, direction: 'upstream' }).remove();
    await tick(300);
    const elapsed = performance.now() - started;
    expect(n).toBeLessThanOrEqual((10_000 * elapsed) / 1_000 + 1_000);
  });
});

describe('faultProxy, hostile: many connections, close, and the process exits', () => {
  it('1,000 concurrent connections with toxics on, frozen, then close(): no link, no socket left', async () => {
    const port = await listen((s) => {
      s.on('data', (b) => s.write(b));
      s.on('end', () => s.end());
    });
    const p = await proxyTo(port);
    p.add({ type: 'latency', latency: 10, jitter: 10, direction: 'both' });
    p.add({ type: 'bandwidth', rate: 100_000 });
    p.add({ type: 'reset', after: 60_000 });
    const all: Socket[] = [];
    let echoed = 0;
    await Promise.all(
      Array.from({ length: 1_000 }, async (_, i) => {
        const s = client(p);
        all.push(s);
        await once(s, 'connect');
        s.write(`hello ${i}`);
        await once(s, 'data');
        echoed++;
      }),
    );
    expect(echoed).toBe(1_000);
    expect(p.connections()).toHaveLength(1_000);
    p.freeze();
    for (const s of all.slice(0, 100)) s.write('held');
    await p.close();
    expect(p.connections()).toEqual([]);
    expect(p.snapshot()).toMatchObject({ listening: false, connections: 0, accepted: 1_000 });
    // Each client saw its connection end (a FIN, or a reset for the ones with bytes held).
    const ended = (s: Socket) => s.destroyed || s.readableEnded;
    for (let i = 0; i < 100 && !all.every(ended); i++) await tick(10);
    expect(all.filter((s) => !ended(s))).toHaveLength(0);
    const upstream = servers[0] as Server;
    const open = () => new Promise<number>((r) => upstream.getConnections((_, n) => r(n)));
    for (let i = 0; i < 100 && (await open()) > 0; i++) await tick(10);
    expect(await open()).toBe(0);
  }, 60_000);

  it('a child with 200 connections, a frozen proxy and timed toxics exits on its own after close()', async () => {
    const child = spawn(
      process.execPath,
      ['--conditions=@holdfast/source', '--import', 'tsx', join(import.meta.dirname, 'support/proxy-exit-child.ts')],
      { cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const [code, signal] = await once(child, 'exit');
    clearTimeout(timer);
    expect({ code, signal, out: out.trim().split('\n').at(-1) }).toEqual({
      code: 0,
      signal: null,
      out: 'closed 200',
    });
  }, 30_000);
});

describe('faultProxy, hostile: upstreams that misbehave', () => {
  it('an upstream that resets: the client sees a reset, the link goes', async () => {
    const port = await listen((s) => s.on('data', () => s.resetAndDestroy()));
    const p = await proxyTo(port);
    const c = client(p);
    await once(c, 'connect');
    const error = once(c, 'error');
    c.write('x');
    expect((await error)[0]).toMatchObject({ code: 'ECONNRESET' });
    for (let i = 0; i < 100 && p.connections().length > 0; i++) await tick(5);
    expect(p.connections()).toEqual([]);
  });

  it('an upstream that accepts and never reads nor answers: close() still ends it', async () => {
    const port = await listen(() => {});
    const p = await proxyTo(port);
    const c = client(p);
    await once(c, 'connect');
    c.write(Buffer.alloc(4 * 1024 * 1024)); // more than the kernel buffers: the pumps back up
    await tick(200);
    expect(p.connections()).toHaveLength(1);
    await p.close();
    expect(p.connections()).toEqual([]);
  });

  it('the upstream restarts on the same port: connections during the outage are reset, later ones work', async () => {
    const first = new Set<Socket>();
    const upstream = createServer((s) => {
      first.add(s);
      s.on('error', () => {});
      s.on('data', () => s.write('A'));
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    const port = (upstream.address() as AddressInfo).port;
    const p = await proxyTo(port);
    const ask = async () => {
      const c = client(p);
      const answer = new Promise<string>((resolve) => {
        c.on('data', (b) => resolve(String(b)));
        c.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`));
        c.on('close', () => resolve('closed'));
      });
      c.write('?');
      const said = await answer;
      c.destroy();
      return said;
    };
    expect(await ask()).toBe('A');
    for (const s of first) s.destroy();
    await new Promise((r) => upstream.close(r));
    expect(await ask()).toBe('error ECONNRESET');
    await listen((s) => {
      s.on('data', () => s.write('B'));
      s.on('end', () => s.end());
    }, port);
    expect(await ask()).toBe('B');
    for (let i = 0; i < 100 && p.connections().length > 0; i++) await tick(5);
    expect(p.snapshot()).toMatchObject({ accepted: 3, connections: 0 });
  });

  it('close() while the upstream is still connecting (a SYN never answered is not on loopback: a paused accept instead)', async () => {
    const port = await listen((s) => s.pause());
    const p = await proxyTo(port);
    const c = client(p);
    p.freeze();
    c.write('x');
    await tick(50);
    await p.close();
    expect(p.connections()).toEqual([]);
  });
});

describe('faultProxy, hostile: options', () => {
  it('every bad toxic is a HoldfastConfigError naming the option', async () => {
    const port = await listen(() => {});
    const p = await proxyTo(port);
    const bad: [unknown, RegExp][] = [
      [{ type: 'latency', latency: -1 }, /latency/],
      [{ type: 'latency', latency: Number.NaN }, /latency/],
      [{ type: 'latency', latency: 1e12 }, /latency.*2147483647/],
      [{ type: 'latency', latency: 10, jitter: Number.POSITIVE_INFINITY }, /jitter/],
      [{ type: 'bandwidth', rate: 0 }, /rate/],
      [{ type: 'bandwidth', rate: 0.5 }, /rate/],
      [{ type: 'drop', chunks: 0 }, /chunks/],
      [{ type: 'drop', bytes: -3 }, /bytes/],
      [{ type: 'slicer', size: 0 }, /size/],
      [{ type: 'limit', bytes: -1 }, /bytes/],
      [{ type: 'reset', after: Number.NaN }, /after/],
      [{ type: 'latency', latency: 1, direction: 'sideways' }, /direction/],
      [{ type: 'latency', latency: 1, connection: -1 }, /connection/],
      [{ type: 'latency', latency: 1, lantecy: 5 }, /lantecy/],
      [{ type: 'toxic' }, /type.*latency/],
      [{}, /type/],
    ];
    for (const [toxic, message] of bad) {
      expect(() => p.add(toxic as Toxic), JSON.stringify(toxic)).toThrow(HoldfastConfigError);
      expect(() => p.add(toxic as Toxic), JSON.stringify(toxic)).toThrow(message);
    }
    expect(p.snapshot().toxics).toEqual([]);
    await expect(faultProxy({ target: { port: 70_000 } })).rejects.toThrow(/target.port/);
    await expect(faultProxy({ target: { port }, port: -1 })).rejects.toThrow(/port/);
    await expect(faultProxy({ target: { port, host: '' } })).rejects.toThrow(/target.host/);
  });
});

describe.skipIf(!redisAvailable())('faultProxy, hostile: a lost reply against redis-server', () => {
  let redis: RedisServer;
  afterAll(async () => {
    await stopAllRedis();
  });

  /** A raw RESP connection: what goes out and what comes back, byte for byte. */
  function resp(port: number): { socket: Socket; got: () => string; send(...args: string[]): void } {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    sockets.push(socket);
    let got = '';
    socket.on('data', (b) => (got += b));
    return {
      socket,
      got: () => got,
      send: (...args) => socket.write(`*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join('')}`),
    };
  }

  it('drop chunks:1 (downstream): INCR runs on the server, its reply never arrives, the next reply arrives whole', async () => {
    [redis] = (await startRedis(1)) as [RedisServer];
    const p = await proxyTo(redis.port);
    const direct = resp(redis.port);
    const through = resp(p.port);
    await once(through.socket, 'connect');
    through.send('PING');
    while (through.got() !== '+PONG\r\n') await tick(5);
    p.add({ type: 'drop', chunks: 1 });
    through.send('INCR', 'lost');
    // The command ran: the server's own count says so (asked directly until INCR has landed).
    let asked = 0;
    while (!direct.got().endsWith('$1\r\n1\r\n') && asked < 200) {
      direct.send('GET', 'lost');
      asked++;
      await tick(5);
    }
    expect(direct.got()).toMatch(/\$1\r\n1\r\n$/);
    await tick(200);
    expect(through.got()).toBe('+PONG\r\n'); // nothing more came back
    expect(p.snapshot().toxics).toEqual([]); // the drop is spent
    through.send('INCR', 'lost');
    while (through.got().length < '+PONG\r\n:2\r\n'.length) await tick(5);
    await tick(50);
    expect(through.got()).toBe('+PONG\r\n:2\r\n'); // no fragment of the lost reply
  }, 30_000);
});
