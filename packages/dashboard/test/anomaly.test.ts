import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Script } from 'node:vm';
import { createBus, createPolicyRegistry } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type DashboardSnapshot, dashboard } from '../src/index.js';

const metric = (name: string, value: number, expected: number, score: number) => ({ name, value, expected, score });

describe('dashboard: anomaly charts', () => {
  it('charts each watched metric with its baseline and marks the anomalous intervals', async () => {
    const bus = createBus();
    const dash = dashboard({ bus, policies: createPolicyRegistry() });
    const server = createServer((req, res) => dash(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/holdfast`;
    try {
      for (let i = 0; i < 70; i++) {
        const slow = i === 65;
        bus.emit({
          type: 'anomaly.score',
          source: 'anomaly',
          time: i,
          key: 'api/b',
          score: slow ? 0.7 : 0.1,
          raised: slow,
          metrics: [metric('latencyP99', slow ? 300 : 20, 21, slow ? 0.7 : 0.1), metric('errorRate', Number.NaN, 0, 0)],
        });
      }
      const snap = (await (await fetch(`${base}/snapshot`)).json()) as DashboardSnapshot;
      const [chart] = snap.anomalies;
      expect(chart?.key).toBe('api/b');
      expect(chart?.raised).toBe(false);
      const p99 = chart?.metrics.find((m) => m.name === 'latencyP99')?.points ?? [];
      expect(p99).toHaveLength(60);
      expect(p99.filter((p) => p.anomalous).map((p) => p.value)).toEqual([300]);
      expect(p99[0]).toEqual({ value: 20, expected: 21, anomalous: false });
      expect(chart?.metrics.find((m) => m.name === 'errorRate')?.points[0]?.value).toBeNull();
      const html = await (await fetch(base)).text();
      expect(html).toContain('id="h-anomalies"');
      const script = html.slice(html.indexOf('<script>') + 8, html.lastIndexOf('</script>'));
      expect(() => new Script(script)).not.toThrow();
    } finally {
      dash.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
