import { once } from 'node:events';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { faultProxy, injectFault, injectLatency } from '@holdfast/chaos';
import { CallScope, invoke, type Policy, pipeline, timeout } from '@holdfast/core';
import { compare, printRows } from './harness.js';

/**
 * What a disabled injection left in production costs per call in a pipeline (the budget is
 * 20 ns), and what the fault proxy adds to a loopback HTTP request.
 */
export async function benchChaos(): Promise<void> {
  const op = async () => 1;
  const limit = timeout(10_000);
  // The least a policy in a pipeline can be: hand the call its context and run it.
  const noop: Policy = {
    name: 'noop',
    execute: (fn, options) => invoke(fn, options instanceof CallScope ? options : new CallScope(options)),
  };
  const off = injectFault();
  const offFn = injectLatency({ latency: 100, enabled: () => false });
  const base = pipeline(limit);
  const withNoop = pipeline(limit, noop);
  const noopOuter = pipeline(noop, limit);
  const outer = pipeline(off, limit);
  const inner = pipeline(limit, off);
  const innerFn = pipeline(limit, offFn);
  await compare({
    title: 'chaos: a disabled injection in a pipeline, per call',
    baseline: 'pipeline(timeout)',
    variants: [
      { name: 'bare call', call: op },
      { name: 'pipeline(timeout)', call: () => base.execute(op) },
      { name: 'pipeline(timeout, no-op policy)', call: () => withNoop.execute(op) },
      { name: 'pipeline(no-op policy, timeout)', call: () => noopOuter.execute(op) },
      { name: 'pipeline(injectFault off, timeout)', call: () => outer.execute(op) },
      { name: 'pipeline(timeout, injectFault off)', call: () => inner.execute(op) },
      { name: 'pipeline(timeout, injectLatency enabled: fn)', call: () => innerFn.execute(op) },
    ],
  });
  // The policy alone, as a pipeline calls it when it is not outermost: with the outer context.
  const ctx = new CallScope(undefined);
  const alone = await compare({
    title: 'chaos: a disabled injection alone, per call (given the context an outer policy made)',
    baseline: 'invoke(op, ctx)',
    variants: [
      { name: 'invoke(op, ctx)', call: () => invoke(op, ctx) },
      { name: 'no-op policy', call: () => noop.execute(op, ctx) },
      { name: 'injectFault off', call: () => off.execute(op, ctx) },
      { name: 'injectLatency enabled: () => false', call: () => offFn.execute(op, ctx) },
    ],
    calls: 5_000,
  });
  const bare = alone[0]?.nsPerCall ?? Number.NaN;
  printRows(
    'chaos: added per call by a disabled injection (budget 20 ns; median ratio × the bare figure)',
    ['variant', 'added per call'],
    alone.slice(1).map((r) => [r.name, `${((r.ratio - 1) * bare).toFixed(1)} ns`]),
  );

  const server = createServer((_req, res) => res.end('ok'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const proxy = await faultProxy({ target: { port } });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const get = (to: number) =>
    new Promise<void>((resolve, reject) => {
      request({ host: '127.0.0.1', port: to, path: '/', agent }, (res) => {
        res.resume();
        res.once('end', resolve);
      })
        .once('error', reject)
        .end();
    });
  try {
    await compare({
      title: 'chaos: the fault proxy on a loopback HTTP GET (keep-alive, no toxic)',
      baseline: 'direct',
      variants: [
        { name: 'direct', call: () => get(port) },
        { name: 'through faultProxy', call: () => get(proxy.port) },
      ],
      calls: 50,
    });
  } finally {
    agent.destroy();
    await proxy.close();
    server.closeAllConnections();
    server.close();
  }
}
