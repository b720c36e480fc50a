import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const example = join(root, 'examples', 'nest-style');

describe('examples/nest-style: controllers and services with decorators, experimentalDecorators: true', () => {
  let inventory: Server;
  let inventoryRequests = 0;
  let child: ChildProcess | undefined;
  let url = '';

  beforeAll(async () => {
    // The dependency: its first answer is a 503, then it has 5 of everything.
    inventory = createServer((req, res) => {
      inventoryRequests++;
      if (inventoryRequests === 1) {
        res.writeHead(503);
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ sku: req.url?.split('/').pop(), available: 5 }));
    });
    await new Promise<void>((r) => inventory.listen(0, '127.0.0.1', r));

    // Type-check as a NestJS project would (legacy decorators), then emit with tsc's legacy transform.
    const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', example], {
      encoding: 'utf8',
      timeout: 90_000,
    });
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.status).toBe(0);
    const dist = join(example, 'dist');
    mkdirSync(dist, { recursive: true });
    for (const file of ['main.ts', 'http.ts']) {
      const { outputText } = ts.transpileModule(readFileSync(join(example, file), 'utf8'), {
        compilerOptions: { experimentalDecorators: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
      });
      if (file === 'main.ts') expect(outputText).toContain('__decorate('); // legacy emit, not __esDecorate
      writeFileSync(join(dist, file.replace(/\.ts$/, '.js')), outputText);
    }
    const port = (inventory.address() as AddressInfo).port;
    child = spawn(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', join(dist, 'main.js')], {
      cwd: example,
      env: { ...process.env, PORT: '0', INVENTORY_URL: `http://127.0.0.1:${port}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    url = await new Promise<string>((resolveUrl, reject) => {
      child?.stdout?.on('data', (d: Buffer) => {
        const m = /listening (\S+)/.exec(d.toString());
        if (m) resolveUrl(m[1] as string);
      });
      child?.once('exit', (code) => reject(new Error(`the example exited (${code}): ${stderr}`)));
    });
  }, 120_000);

  afterAll(async () => {
    if (child?.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    await new Promise((r) => inventory.close(r));
  });

  it('retries the dependency behind @retry, places an order once per key, answers bad input with 4xx problem+json', async () => {
    const stock = await fetch(`${url}/stock/kettle`);
    expect(stock.status).toBe(200);
    expect(await stock.json()).toEqual({ sku: 'kettle', available: 5 });
    expect(inventoryRequests).toBe(2); // the 503, retried by @retry on the service method

    const post = (key: string | undefined, body: string) =>
      fetch(`${url}/orders`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-account': 'acme',
          ...(key ? { 'idempotency-key': key } : {}),
        },
        body,
      });
    const order = JSON.stringify({ sku: 'kettle', quantity: 2 });
    const first = await post('o-1', order);
    const again = await post('o-1', order);
    expect(first.status).toBe(200);
    const placed = await first.json();
    expect(placed).toEqual({ id: 'o-1', sku: 'kettle', quantity: 2, number: 1 });
    expect(await again.json()).toEqual(placed); // @idempotent: the stored result, not a second order
    expect(await (await post('o-2', order)).json()).toMatchObject({ number: 2 });

    for (const [key, body, status] of [
      ['o-3', '{not json', 400],
      [undefined, order, 400],
      ['o-4', JSON.stringify({ sku: 'kettle', quantity: 0 }), 400],
      ['o-5', JSON.stringify({ sku: 'kettle', quantity: 10 }), 409],
    ] as const) {
      const res = await post(key, body);
      expect(res.status).toBe(status);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
    }
  });

  it('answers a reused key with 422, a key in use with 409, keys per account, a huge body with 413: never a 503 for bad input', async () => {
    const post = (key: string, body: string, account = 'acme') =>
      fetch(`${url}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key, 'x-account': account },
        body,
      }).then(async (res) => ({ status: res.status, type: res.headers.get('content-type'), body: await res.text() }));
    const order = (quantity: number) => JSON.stringify({ sku: 'kettle', quantity });

    const first = await post('r-1', order(1));
    expect(first.status, first.body).toBe(200);
    // Another client, the same key, another body: not the first client's order, not a 503.
    const reused = await post('r-1', order(2));
    expect({ status: reused.status, type: reused.type }, reused.body).toEqual({
      status: 422,
      type: 'application/problem+json',
    });
    // Another account's r-1 is its own order, never a replay of acme's.
    const other = await post('r-1', order(1), 'globex');
    expect(other.status, other.body).toBe(200);
    expect(JSON.parse(other.body).number).not.toBe(JSON.parse(first.body).number);

    // Concurrent requests with one key: one runs, the others 409 (or the replay once it is done).
    const same = await Promise.all(Array.from({ length: 6 }, () => post('r-2', order(1))));
    expect(same.filter((a) => a.status === 200).length, JSON.stringify(same)).toBeGreaterThanOrEqual(1);
    for (const a of same) expect([200, 409], a.body).toContain(a.status);
    expect(new Set(same.filter((a) => a.status === 200).map((a) => a.body)).size).toBe(1);

    const huge = await post('r-3', JSON.stringify({ sku: 'k'.repeat(2_000_000), quantity: 1 }));
    expect(huge.status, huge.body.slice(0, 200)).toBe(413);
    const noAccount = await post('r-4', order(1), '');
    expect(noAccount.status, noAccount.body).toBe(401);
    const text = await fetch(`${url}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', 'idempotency-key': 'r-5', 'x-account': 'acme' },
      body: order(1),
    });
    expect(text.status).toBe(415);
  });

  it('stops on SIGTERM and exits by itself', async () => {
    child?.kill('SIGTERM');
    const [code] = (await once(child as ChildProcess, 'exit')) as [number | null];
    expect(code).toBe(0);
  });
});
