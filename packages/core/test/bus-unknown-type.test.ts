import { afterEach, describe, expect, it, vi } from 'vitest';
import { createBus, eventTypes } from '../src/index.js';

// A typo from JavaScript (`breaker.opened` for `breaker.open`) subscribed silently and never fired:
// the user's alert was never wired, and nothing said so.
describe('bus.on() with a type this core does not know', () => {
  afterEach(() => vi.restoreAllMocks());

  it('warns once per type, naming it, and still subscribes (a newer package may emit it)', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const b = createBus();
    const seen: string[] = [];
    const on = b.on.bind(b) as (type: string, listener: (e: { type: string }) => void) => () => void;
    on('breaker.opened', (e) => seen.push(e.type));
    on('breaker.opened', () => {});
    b.once('breaker.opened' as never, () => {});
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]?.[0])).toContain('"breaker.opened"');
    expect(warn.mock.calls[0]?.[1]).toMatchObject({ type: 'HoldfastWarning', code: 'HOLDFAST_UNKNOWN_EVENT' });
    // Still delivered: a newer package's event on an older core's bus reaches its listener.
    b.emit({ type: 'breaker.opened', source: 's', time: 1 } as never);
    expect(seen).toEqual(['breaker.opened']);
  });

  it('says nothing for every known type and for *', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const b = createBus();
    for (const type of eventTypes) b.on(type, () => {});
    b.on('*', () => {});
    expect(warn).not.toHaveBeenCalled();
  });

  it('a type that is no string is refused, naming what it got', () => {
    const b = createBus();
    const on = b.on.bind(b) as (type: unknown, listener: () => void) => () => void;
    expect(() => on(undefined, () => {})).toThrow(/bus\.on\(\): type must be an event type string \(got undefined\)/);
    expect(() => on({ type: 'breaker.open' }, () => {})).toThrow(/got an object/);
  });
});
