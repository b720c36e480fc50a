/**
 * breakerRegistry keys as a JavaScript caller passes them: a tenant id that is a number, a URL
 * object, the function first (`execute(fn, { key })`, the shape other registries take). Each is
 * refused with a TypeError that names the key, not "key.indexOf is not a function", and makes
 * no breaker. A call rejects; it does not throw synchronously.
 */
import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { breakerRegistry } from '../src/index.js';

const notKeys: [string, unknown][] = [
  ['a number', 42],
  ['undefined', undefined],
  ['a URL object', new URL('http://user:hunter2@db1:5432/orders')],
  ['a function (fn passed first)', () => 1],
];

function registry() {
  return breakerRegistry({ name: 'hosts', clock: new ManualClock(0), bus: createBus(), policies: false });
}

describe('breakerRegistry: a key that is not a string', () => {
  it.each(notKeys)('execute() with %s rejects with a TypeError naming the key; no breaker is made', async (_, key) => {
    const hosts = registry();
    let runs = 0;
    let call: Promise<unknown> | undefined;
    expect(() => {
      call = hosts.execute(key as string, () => ++runs);
    }).not.toThrow();
    const error = await call?.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/^hosts: key must be a string \(got /);
    expect((error as Error).message).not.toContain('hunter2');
    expect(runs).toBe(0);
    expect(hosts.size).toBe(0);
  });

  it.each(notKeys)('get() with %s throws a TypeError naming the key', (_, key) => {
    const hosts = registry();
    expect(() => hosts.get(key as string)).toThrow(/^hosts: key must be a string \(got /);
    expect(hosts.size).toBe(0);
  });

  it('a string key still works, the empty string included', async () => {
    const hosts = registry();
    await expect(hosts.execute('', () => 'ran')).resolves.toBe('ran');
    await expect(hosts.execute('42', () => 'ran')).resolves.toBe('ran');
    expect(hosts.size).toBe(2);
  });
});

describe('breakerRegistry: a key nobody can read (review)', () => {
  const revocable = Proxy.revocable({}, {});
  revocable.revoke();
  const unreadable: [string, unknown][] = [
    [
      'a Proxy whose getters throw',
      new Proxy(
        {},
        {
          get() {
            throw new Error('getter threw');
          },
        },
      ),
    ],
    ['a revoked Proxy', revocable.proxy],
    // A class name is code, not data, but one set at run time may be anything.
    ['an instance of a class named by a URL', new (urlNamed())()],
  ];

  it.each(unreadable)('execute() with %s rejects with the TypeError, never throws', async (_, key) => {
    const hosts = registry();
    let call: Promise<unknown> | undefined;
    expect(() => {
      call = hosts.execute(key as string, () => 'ran');
    }).not.toThrow();
    const error = await call?.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as Error).message).toMatch(/^hosts: key must be a string \(got an object\)$/);
    expect(() => hosts.get(key as string)).toThrow(/^hosts: key must be a string \(got an object\)$/);
  });
});

/** A class whose name was set at run time to a URL with its password. */
function urlNamed(): new () => object {
  const made = class {};
  Object.defineProperty(made, 'name', { value: 'https://app:hunter2@db/x' });
  return made;
}
