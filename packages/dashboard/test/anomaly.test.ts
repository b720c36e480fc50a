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

  const score = (key: string, i: number, raised = false, source = 'anomaly') =>
    ({
      type: 'anomaly.score',
      source,
      time: i,
      key,
      score: raised ? 0.9 : 0.1,
      raised,
      metrics: [metric('latencyP99', raised ? 300 : 20, 21, raised ? 0.9 : 0.1)],
    }) as const;
  const charts = (dash: ReturnType<typeof dashboard>) => {
    // The snapshot as the page gets it, without a server.
    let body = '';
    dash(
      { method: 'GET', url: '/holdfast/snapshot' } as never,
      { writeHead: () => undefined, end: (text: string) => void (body = text) } as never,
    );
    return (JSON.parse(body) as DashboardSnapshot).anomalies;
  };

  it('60 or 200 keys scored every interval: the 50 charted keep their history (it dropped and remade one a score)', () => {
    for (const keys of [60, 200]) {
      const bus = createBus();
      const dash = dashboard({ bus, policies: createPolicyRegistry() });
      try {
        for (let i = 0; i < 10; i++) for (let k = 0; k < keys; k++) bus.emit(score(`host-${k}`, i));
        const list = charts(dash);
        expect(list).toHaveLength(50);
        for (const chart of list) expect(chart.metrics[0]?.points).toHaveLength(10);
      } finally {
        dash.close();
      }
    }
  });

  it('keys their watch stopped scoring give their place to new ones', () => {
    const bus = createBus();
    const dash = dashboard({ bus, policies: createPolicyRegistry() });
    try {
      for (let i = 0; i < 3; i++) for (let k = 0; k < 50; k++) bus.emit(score(`old-${k}`, i));
      for (let i = 3; i < 8; i++) for (let k = 0; k < 50; k++) bus.emit(score(`new-${k}`, i));
      expect(charts(dash).filter((c) => c.key.startsWith('new-'))).toHaveLength(50);
    } finally {
      dash.close();
    }
  });

  it('a key the watch forgot while raised leaves the page: no anomaly shown on what nobody watches', () => {
    const bus = createBus();
    const dash = dashboard({ bus, policies: createPolicyRegistry() });
    try {
      bus.emit(score('host-a', 1, true));
      bus.emit(score('host-b', 1, true));
      const cleared = { type: 'anomaly.cleared', source: 'anomaly', time: 2, detector: 'baseline' } as const;
      bus.emit({ ...cleared, key: 'host-a', metric: 'latencyP99', duration: 1, reason: 'forgotten' });
      expect(charts(dash).map((c) => [c.key, c.raised])).toEqual([['host-b', true]]);
    } finally {
      dash.close();
    }
  });

  it('two watches scoring one key get a chart each, named by watch (their points were interleaved in one)', () => {
    const bus = createBus();
    const dash = dashboard({ bus, policies: createPolicyRegistry() });
    try {
      for (let i = 0; i < 5; i++) {
        bus.emit(score('db', i, false, 'fast'));
        bus.emit(score('db', i, true, 'slow'));
      }
      const list = charts(dash);
      expect(list.map((c) => [c.watch, c.key, c.raised, c.metrics[0]?.points.length])).toEqual([
        ['fast', 'db', false, 5],
        ['slow', 'db', true, 5],
      ]);
    } finally {
      dash.close();
    }
  });
});
