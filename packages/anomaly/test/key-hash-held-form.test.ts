/**
 * Review of the long-key hash. A key over 200 characters is held as its start, `…` and a hash of
 * it: 200 characters. A key of 200 characters or fewer was held as itself, so a client that picks
 * keys could send one spelled like the held form of another's long key (no search: one SHA-256),
 * and the two shared a slot: their series mixed, and one's calls raised and acted on the other.
 */
import { createHash } from 'node:crypto';
import { createBus, ManualClock } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

const victim = `user/${'x'.repeat(300)}`;
/** The held form of `victim` as the watch wrote it: 177 characters, `…`, 22 of base64url SHA-256. */
const spelled = `${victim.slice(0, 177)}…${createHash('sha256').update(victim, 'utf16le').digest('base64url').slice(0, 22)}`;

function watchOf(breakerOf: (key: string) => { name: string; open(): void } | undefined) {
  const watch = anomalyWatch({
    bus: createBus(),
    clock: new ManualClock(1_000_000),
    interval: 1_000,
    raiseAfter: 1,
    detector: 'baseline',
    actions: { openBreaker: { breakerOf, maxShare: 0.5 } },
  });
  cleanups.push(() => watch.dispose());
  return watch;
}

describe('anomalyWatch: a short key spelled as a long key is held', () => {
  it('is watched apart, and its slow calls open no breaker for the long key', () => {
    expect(spelled).toHaveLength(200);
    const given: string[] = [];
    const watch = watchOf((key) => {
      given.push(key);
      return { name: key, open: () => {} };
    });
    const names = [victim, 'b', 'c', 'd'];
    const interval = (attack: boolean) => {
      for (const n of names) for (let i = 0; i < 20; i++) watch.observe(n, 20 + (i % 3), 'success');
      if (attack) for (let i = 0; i < 200; i++) watch.observe(spelled, 400 + (i % 3), 'success');
      watch.flush();
    };
    for (let i = 0; i < 40; i++) interval(false);
    interval(true);
    expect(given.map((k) => (k === victim ? 'victim' : k === spelled ? 'spelled' : k))).not.toContain('victim');
    expect(watch.snapshot().keys).toHaveLength(5);
  });
});
