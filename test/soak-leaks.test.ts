/**
 * What grows without bound in a service that runs for weeks: each `it` is a leak a soak run
 * found (scripts driving each package for minutes, sampled after forced GC), shrunk to a
 * bounded count that fails without its fix. Counts, never timings.
 *
 * npx vitest run test/soak-leaks.test.ts
 */

import { once } from 'node:events';
import type { Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { breakerRegistry } from '@holdfast/breaker';
import { createBus, createPolicyRegistry } from '@holdfast/core';
import { memoryStore } from '@holdfast/idempotency';
import { idempotency } from '@holdfast/idempotency/express';
import { bulkhead } from '@holdfast/limit';
import { loadShedding } from '@holdfast/limit/express';
import { attributeNames, instrument, metricNames } from '@holdfast/otel';
import { collect } from '@holdfast/prometheus';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import express from 'express';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';

describe('per-host breakers that come and go (breakerRegistry eviction), watched by the exporters', () => {
  /**
   * 300 hosts through a registry of 10, each with a call still running when its breaker is
   * evicted, the calls settling afterwards. Soak: with maxKeys 200 and maxPolicies 500, the
   * Prometheus label set held 500 names (300 of them dead) within 10,000 calls, and every
   * breaker made after that was reported as `_other`.
   */
  async function churn(bus: ReturnType<typeof createBus>, policies: ReturnType<typeof createPolicyRegistry>) {
    const hosts = breakerRegistry({ name: 'hosts', bus, policies, maxKeys: 10 });
    const settle: (() => void)[] = [];
    const running: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      const call = () =>
        new Promise<string>((resolve, reject) =>
          settle.push(() => (i % 2 ? resolve('ok') : reject(new Error('ECONNRESET')))),
        );
      running.push(hosts.execute(`host-${i}`, call).catch(() => undefined));
    }
    for (const done of settle) done();
    await Promise.all(running);
    return hosts;
  }

  const policyLabels = (text: string) => new Set([...text.matchAll(/policy="([^"]*)"/g)].map((m) => m[1]));

  it('Prometheus: the labels are those of the breakers held, not of every host a call outlived', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const registry = new Registry();
    const stop = collect({ bus, policies, registry, maxPolicies: 50 });
    const hosts = await churn(bus, policies);
    const labels = policyLabels(await registry.metrics());
    expect(labels.has('_other')).toBe(false);
    expect(labels.size).toBe(hosts.size);
    hosts.dispose();
    expect(policyLabels(await registry.metrics()).size).toBe(0);
    stop();
  });

  it('OpenTelemetry: the call counters are those of the breakers held', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
    const meterProvider = new MeterProvider({ readers: [reader] });
    const stop = instrument({ bus, policies, meterProvider, spans: false, maxPolicies: 50 });
    const hosts = await churn(bus, policies);
    await reader.forceFlush();
    const calls = exporter
      .getMetrics()
      .flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics))
      .filter((m) => m.descriptor.name === metricNames.breakerCalls)
      .flatMap((m) => m.dataPoints as { attributes: Record<string, unknown> }[]);
    const names = new Set(calls.map((p) => p.attributes[attributeNames.policy]));
    expect(names.has('_other')).toBe(false);
    expect(names.size).toBe(hosts.size);
    stop();
    hosts.dispose();
    await meterProvider.shutdown();
  });
});

describe('Express: loadShedding() in front of idempotency(), clients that hang up mid-body', () => {
  /**
   * Soak: every client that left before its body was whole kept its place in the bulkhead (and its
   * request in memory) for holdAfterHangUp, though no handler ran: idempotency() dropped the
   * request without ending its response. 20 such clients filled 20 places for the full 10 s.
   */
  it('a request dropped because its client left frees its place at once', async () => {
    const places = bulkhead({ maxConcurrent: 100, policies: false });
    const app = express();
    app.use(loadShedding({ policy: places, holdAfterHangUp: 60_000 }));
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus() }));
    app.use(express.json());
    let ran = 0;
    app.post('/charges', (_req, res) => {
      ran++;
      res.status(201).json({ ok: true });
    });
    const closed: Promise<unknown>[] = [];
    const server: Server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    server.on('request', (_req, res) => closed.push(once(res, 'close').then(() => res.statusCode)));
    const { port } = server.address() as AddressInfo;
    const body = '{"amount":4200}';
    try {
      for (let i = 0; i < 20; i++) {
        const socket = connect(port, '127.0.0.1');
        await once(socket, 'connect');
        const head = `POST /charges HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: k-${i}\r\nContent-Length: ${body.length}\r\n\r\n`;
        // Half the clients leave after the headers, half in the middle of the body.
        socket.write(i % 2 ? head : head + body.slice(0, 6));
        while (closed.length <= i) await new Promise((r) => setImmediate(r));
        socket.destroy();
      }
      // An access log shows nginx's "client closed request" for each, not a 200 for what never ran.
      expect(new Set(await Promise.all(closed))).toEqual(new Set([499]));
      for (let turn = 0; turn < 50 && places.running > 0; turn++) await new Promise((r) => setTimeout(r, 10));
      expect(places.running).toBe(0);
      expect(ran).toBe(0);
    } finally {
      server.closeAllConnections();
      server.close();
      places.dispose();
    }
  });
});
