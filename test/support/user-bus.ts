import { EventEmitter } from 'node:events';
import type { Bus } from '@holdfast/core';

/** What a user's adapter hands back from `on()`: `this` (as emitter.on() does), or an unsubscribe. */
export type AdapterOff = (emitter: EventEmitter, type: string, listener: (event: unknown) => void) => unknown;

/**
 * A bus of the user's own: an adapter over an EventEmitter whose `on()` and `once()` return what
 * `off` makes of each subscription. `listeners()` counts the listeners still on the emitter.
 */
export function emitterBus(off: AdapterOff): { bus: Bus; emitter: EventEmitter; listeners(): number } {
  const emitter = new EventEmitter();
  const bus = {
    on(type: string, listener: (event: unknown) => void) {
      emitter.on(type, listener);
      return off(emitter, type, listener);
    },
    once(type: string, listener: (event: unknown) => void) {
      emitter.once(type, listener);
      return off(emitter, type, listener);
    },
    wants: () => true,
    emit: (event: { type: string }) => void emitter.emit(event.type, event),
  } as unknown as Bus;
  const listeners = () => emitter.eventNames().reduce((n, name) => n + emitter.listenerCount(name), 0);
  return { bus, emitter, listeners };
}

/** An adapter whose `on()` returns `this`, as an EventEmitter's does: no unsubscribe at all. */
export const returnsEmitter: AdapterOff = (emitter) => emitter;

/** An adapter whose unsubscribe works, but throws for the first subscription it handed out. */
export function throwsOnce(): AdapterOff {
  let first = true;
  return (emitter, type, listener) => {
    const broken = first;
    first = false;
    return () => {
      if (broken) throw new Error('adapter closed');
      emitter.off(type, listener);
    };
  };
}

/**
 * The broken adapters, for `it.each`: its name, what it makes of each subscription, and how many
 * of `subscribed` listeners no unsubscribe can take off (all, with no unsubscribe; the one that throws).
 */
export function brokenAdapters(): [string, AdapterOff, (subscribed: number) => number][] {
  return [
    ['returns the emitter', returnsEmitter, (subscribed) => subscribed],
    ['throws for one subscription', throwsOnce(), () => 1],
  ];
}
