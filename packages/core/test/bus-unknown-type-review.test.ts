/**
 * bus.on()'s unknown-type warning and non-string refusal, attacked: arguments swapped (the
 * listener first), types made per tenant, a type holding a line break and credentials, and a
 * second copy of @holdfast/core (same major, newer) whose packages subscribe to its own types on
 * the shared global bus an older copy made.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createBus } from '../src/index.js';

afterEach(() => {
  vi.restoreAllMocks();
  vi.doUnmock('../src/events.js');
  vi.resetModules();
});

type LooseOn = (type: unknown, listener: unknown) => () => void;

describe('bus.on() attacked (review)', () => {
  it('arguments swapped: the TypeError says "a function", never the function source (it may hold a key)', () => {
    const b = createBus();
    const on = b.on.bind(b) as LooseOn;
    const listener = () => 'Bearer sk_live_51Hx';
    expect(() => on(listener, 'breaker.open')).toThrow('bus.on(): type must be an event type string (got a function)');
    expect(() => on(Symbol('t'), () => {})).toThrow(/\(got a symbol\)/);
  });

  it('types made per tenant: a few warnings at most, however many types', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const b = createBus();
    const on = b.on.bind(b) as LooseOn;
    for (let i = 0; i < 1_000; i++) on(`tenant-${i}.alert`, () => {});
    const told = warn.mock.calls.filter((c) => (c[1] as { code?: string })?.code === 'HOLDFAST_UNKNOWN_EVENT');
    expect(told.length).toBeGreaterThan(0);
    expect(told.length).toBeLessThanOrEqual(10);
  });

  it('a type with a line break, credentials and 100 kB: one line, no password, short', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const b = createBus();
    const on = b.on.bind(b) as LooseOn;
    on('x\n(node:1) Warning: forged https://app:hunter2@db/x', () => {});
    on(`long.${'y'.repeat(100_000)}`, () => {});
    const [forged, long] = warn.mock.calls.map((c) => String(c[0]));
    expect(forged).not.toContain('\n');
    expect(forged).not.toContain('hunter2');
    expect(long?.length).toBeLessThan(500);
  });

  it("a newer copy's types on the global bus an older copy made: no warning (both copies know them)", async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const older = await import('../src/index.js');
    vi.resetModules();
    // The newer copy: the same major, one event type more.
    vi.doMock('../src/events.js', async (importOriginal) => {
      const real = await importOriginal<typeof import('../src/events.js')>();
      return { ...real, eventTypes: [...real.eventTypes, 'breaker.drained'] };
    });
    const newer = await import('../src/index.js');
    expect(newer.bus).toBe(older.bus);
    // What collect() and the dashboard do: subscribe to every type their copy knows.
    for (const type of newer.eventTypes) newer.bus.on(type, () => {});
    expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([]);
    // A typo is still told.
    (newer.bus.on as LooseOn)('breaker.drainedd', () => {});
    expect(warn).toHaveBeenCalledTimes(1);
  });
});
