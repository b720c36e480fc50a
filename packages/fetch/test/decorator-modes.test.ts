import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createBus, HoldfastConfigError } from '@holdfast/core';
import { memoryStore } from '@holdfast/idempotency';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { idempotent, retry } from '../src/decorators.js';
import { withBreaker, withIdempotency, withRetry, withTimeout } from '../src/index.js';

const root = resolve(import.meta.dirname, '../../..');
const fixture = join(import.meta.dirname, 'fixtures', 'legacy-decorators');
const bus = createBus();

describe('the with* wrappers keep this', () => {
  it('withRetry, withBreaker, withTimeout and withIdempotency call fn with the this they are called with', async () => {
    class Client {
      tries = 0;
      constructor(readonly host: string) {}
      getRetried = withRetry(
        async function (this: Client, path: string) {
          if (++this.tries < 2) throw new Error('reset');
          return `${this.host}${path}`;
        },
        { bus, budget: false, backoff: { initialDelay: 0 } },
      );
      getGuarded = withBreaker(
        async function (this: Client) {
          return this.host;
        },
        { bus, policies: false },
      );
      getTimed = withTimeout(
        async function (this: Client) {
          return this.host;
        },
        1_000,
        { bus },
      );
      charge = withIdempotency(
        async function (this: Client, id: string) {
          return `${this.host} charged ${id}`;
        },
        { store: memoryStore(), key: (id) => id, bus },
      );
    }
    const client = new Client('api.local');
    await expect(client.getRetried('/a')).resolves.toBe('api.local/a');
    expect(client.tries).toBe(2);
    await expect(client.getGuarded()).resolves.toBe('api.local');
    await expect(client.getTimed()).resolves.toBe('api.local');
    await expect(client.charge('o-1')).resolves.toBe('api.local charged o-1');
    // As a prototype method too.
    const proto = {
      n: 7,
      twice: withRetry(
        async function (this: { n: number }) {
          return this.n * 2;
        },
        { bus },
      ),
    };
    await expect(proto.twice()).resolves.toBe(14);
  });
});

describe('decorator options and misuse', () => {
  it('@idempotent({ key: 1 }) and withIdempotency with a bad key are refused where they are given, by the public name', () => {
    const store = memoryStore();
    const bad = { store, key: 1 as unknown as () => string };
    expect(() => idempotent(bad)).toThrow(HoldfastConfigError);
    expect(() => idempotent(bad)).toThrow(/^@idempotent: key must be a function .*\(got 1\)/);
    expect(() => withIdempotency(async () => 1, bad)).toThrow(/^withIdempotency: key must be a function/);
    expect(() => idempotent({ store, key: () => 'k', fingerprint: 'x' as unknown as () => string })).toThrow(
      /^@idempotent: fingerprint must be a function \(got "x"\)/,
    );
  });

  it('a decorator on a field, or called by hand, says which mode and what it decorates', () => {
    const decorate = retry({ bus }) as (...args: unknown[]) => unknown;
    expect(() => decorate(undefined, { kind: 'field', name: 'count' })).toThrow(
      "@retry decorates methods only (TC39 decorators): 'count' is a field",
    );
    expect(() => decorate({}, 'count', undefined)).toThrow(
      "@retry decorates methods only (experimentalDecorators): 'count' is a property",
    );
    expect(() => decorate({}, 'value', { get: () => 1 })).toThrow(
      "@retry decorates methods only (experimentalDecorators): 'value' is an accessor",
    );
    expect(() => decorate(() => 1)).toThrow(/@retry\(\.\.\.\) is a method decorator/);
  });
});

describe('the decorators with experimentalDecorators: true (NestJS, Angular)', () => {
  it('tsc accepts the same import in legacy mode, and the emitted code retries, breaks, times out and dedupes', () => {
    // Type-check the fixture as a legacy-decorators project would.
    const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', fixture], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.status).toBe(0);
    // Emit it with tsc's own legacy-decorator transform, then run it in a fresh process.
    const source = readFileSync(join(fixture, 'service.ts'), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: {
        experimentalDecorators: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.ESNext,
      },
    });
    expect(outputText).toContain('__decorate('); // legacy emit, not TC39's __esDecorate
    const dist = join(fixture, 'dist');
    mkdirSync(dist, { recursive: true });
    writeFileSync(join(dist, 'service.mjs'), outputText);
    const child = spawnSync(
      process.execPath,
      ['--conditions=@holdfast/source', '--import', 'tsx', join(dist, 'service.mjs')],
      { cwd: fixture, encoding: 'utf8', timeout: 60_000 },
    );
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(JSON.parse(child.stdout)).toEqual({
      stock: 'east:kettle:3',
      calls: 3,
      broken: 'east is down',
      open: expect.stringContaining('circuit'),
      slow: expect.stringMatching(/timed out|20 ms/),
      charge: ['east charged o-1', 'east charged o-1'],
      charges: 1,
      onProperty: "@retry decorates methods only (experimentalDecorators): 'calls' is a property",
      badKey: expect.stringMatching(/^E_CONFIG: @idempotent: key must be a function/),
    });
  }, 120_000);
});
