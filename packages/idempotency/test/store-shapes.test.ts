import { runInNewContext } from 'node:vm';
import express from 'express';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { type IdempotencyStore, idempotent, memoryStore } from '../src/index.js';

/** A custom store as a class: its methods on the prototype, none of them own. */
class ClassStore implements IdempotencyStore {
  readonly #inner = memoryStore();
  claim(...a: Parameters<IdempotencyStore['claim']>) {
    return this.#inner.claim(...a);
  }
  complete(...a: Parameters<IdempotencyStore['complete']>) {
    return this.#inner.complete(...a);
  }
  release(...a: Parameters<IdempotencyStore['release']>) {
    return this.#inner.release(...a);
  }
  extend(...a: Parameters<NonNullable<IdempotencyStore['extend']>>) {
    return this.#inner.extend(...a);
  }
}

function shapes(): [string, IdempotencyStore][] {
  const inner = memoryStore();
  const plain = {
    claim: inner.claim.bind(inner),
    complete: inner.complete.bind(inner),
    release: inner.release.bind(inner),
    extend: inner.extend.bind(inner),
  };
  const getters = {
    get claim() {
      return plain.claim;
    },
    get complete() {
      return plain.complete;
    },
    get release() {
      return plain.release;
    },
  };
  // An object of another realm (vm): its functions are not this realm's Function.
  const foreign = runInNewContext(
    '({ claim: (...a) => s.claim(...a), complete: (...a) => s.complete(...a), release: (...a) => s.release(...a), extend: (...a) => s.extend(...a) })',
    { s: plain },
  ) as IdempotencyStore;
  return [
    ['a class (methods on the prototype)', new ClassStore()],
    ['a transparent Proxy around a plain store', new Proxy(plain, {})],
    [
      'a Proxy with only get/has traps over an empty target',
      new Proxy({} as IdempotencyStore, { get: (_, p) => (plain as Record<PropertyKey, unknown>)[p] }),
    ],
    ['an object of getters', getters],
    ['a frozen object', Object.freeze({ ...plain })],
    ['an object of another realm (vm)', foreign],
    ['an object without a prototype', Object.assign(Object.create(null) as object, plain)],
  ];
}

describe('a custom store of any shape with the members is taken, and runs once per key', () => {
  for (const [index, [name]] of shapes().entries()) {
    it(name, async () => {
      const store = (shapes()[index] as [string, IdempotencyStore])[1]; // its own records
      let runs = 0;
      const job = idempotent(async () => ++runs, { store, key: () => 'k' });
      expect([await job(undefined), await job(undefined), runs]).toEqual([1, 1, 1]);
      expect(() => express().use(expressIdempotency({ store, scope: 'global' }))).not.toThrow();
      const app = Fastify();
      await app.register(fastifyIdempotency, { store, scope: 'global' });
      await app.close();
    });
  }

  it('a store whose member is a getter returning a number is named (store.release must be a function)', () => {
    const inner = memoryStore();
    const store = {
      claim: inner.claim.bind(inner),
      complete: inner.complete.bind(inner),
      get release() {
        return 3;
      },
    };
    expect(() => idempotent(async () => 1, { store: store as never, key: () => 'k' })).toThrow(
      /store\.release must be a function/,
    );
  });
});
