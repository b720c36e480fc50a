import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { anomalyWatch } from '@holdfast/anomaly';
import { type Bus, createBus, createPolicyRegistry, ManualClock, shieldBus } from '@holdfast/core';
import { dashboard } from '@holdfast/dashboard';
import { instrument } from '@holdfast/otel';
import { collect } from '@holdfast/prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';

// The four entry points that listen on a bus of the user's own (shieldBus at construction), fed
// buses that misbehave at construction. What construction did must be undone when it throws.
type Stop = () => void;
const entries = (): [string, (bus: Bus) => Stop, () => number][] => {
  const registry = new Registry();
  return [
    [
      'dashboard',
      (bus) => dashboard({ bus, clock: new ManualClock(0), policies: createPolicyRegistry() }).close,
      () => 0,
    ],
    [
      'instrument',
      (bus) => instrument({ bus, meterProvider: new MeterProvider(), policies: createPolicyRegistry() }),
      () => 0,
    ],
    [
      'collect',
      (bus) => collect({ bus, registry, policies: createPolicyRegistry() }),
      () => registry.getMetricsAsArray().length,
    ],
    [
      'anomalyWatch',
      (bus) => {
        const w = anomalyWatch({ bus, clock: new ManualClock(0), interval: 1000 });
        return () => w.dispose();
      },
      () => 0,
    ],
  ];
};

/** A user's bus over an EventEmitter whose on() throws at its `failAt`-th call. */
function failingBus(failAt: number, replay?: { type: string }) {
  const emitter = new EventEmitter();
  let calls = 0;
  const on = (type: string, listener: (event: unknown) => void) => {
    if (++calls === failAt) throw new Error('adapter not ready');
    emitter.on(type, listener);
    if (replay !== undefined && replay.type === type) listener(replay);
    return () => emitter.off(type, listener);
  };
  const bus = {
    on,
    once: on,
    wants: () => true,
    emit: (e: { type: string }) => void emitter.emit(e.type, e),
  } as unknown as Bus;
  const listeners = () => emitter.eventNames().reduce((n, name) => n + emitter.listenerCount(name), 0);
  return { bus, listeners };
}

describe('bus entry points on hostile user buses (review)', () => {
  it('an on() that throws at construction: the error is thrown, no listener nor metric is left', () => {
    const results: unknown[] = [];
    for (const [name, start, left] of entries()) {
      const { bus, listeners } = failingBus(3);
      let error: unknown;
      try {
        start(bus);
      } catch (e) {
        error = e;
      }
      results.push([name, String(error), listeners(), left()]);
    }
    expect(results).toEqual(entries().map(([name]) => [name, 'Error: adapter not ready', 0, 0]));
  });
  it('an on() that hands the listener an event at once: construction finishes, stop() takes every listener off', () => {
    for (const type of ['breaker.open', 'breaker.success']) {
      for (const [name, start] of entries()) {
        const { bus, listeners } = failingBus(0, {
          type,
          source: 'replayed',
          time: 0,
          latency: 1,
          from: 'closed',
          to: 'open',
        } as never);
        let stop: Stop | undefined;
        expect(() => {
          stop = start(bus);
        }, `${name} ${type}`).not.toThrow();
        stop?.();
        stop?.();
        expect([name, type, listeners()]).toEqual([name, type, 0]);
      }
    }
  });
  it('close() from inside a listener, then close() again', () => {
    for (const [name, start] of entries()) {
      const bus = createBus();
      let stop: Stop = () => {};
      bus.on('breaker.open', () => stop());
      stop = start(bus);
      expect(() => bus.emit({ type: 'breaker.open', source: 'b', time: 0 } as never), name).not.toThrow();
      expect(() => stop(), name).not.toThrow();
    }
  });
  it('two entry points on one user bus, and a shielded bus shielded again is the same bus', () => {
    const { bus, listeners } = failingBus(0);
    const stops = entries().map(([, start]) => start(bus));
    for (const stop of stops) stop();
    expect(listeners()).toBe(0);
    const once = shieldBus(bus, 'a');
    expect(shieldBus(once, 'b')).toBe(once);
  });

  it("dashboard(): a page opened when the bus's on() throws gets a 503, no listener is left, the process goes on", async () => {
    const counted = failingBus(0);
    const dashboard0 = dashboard({ bus: counted.bus, clock: new ManualClock(0), policies: createPolicyRegistry() });
    const atConstruction = counted.listeners();
    dashboard0.close();
    // Its second on() for the page's feed throws.
    const { bus, listeners } = failingBus(atConstruction + 2);
    const dash = dashboard({ bus, clock: new ManualClock(0), policies: createPolicyRegistry() });
    const server = createServer(dash);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const uncaught: unknown[] = [];
    const record = (error: unknown) => uncaught.push(error);
    process.prependListener('uncaughtException', record);
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/holdfast/events`);
      expect([res.status, uncaught.length, listeners(), dash.clients]).toEqual([503, 0, atConstruction, 0]);
      await res.body?.cancel();
    } finally {
      process.off('uncaughtException', record);
      dash.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
