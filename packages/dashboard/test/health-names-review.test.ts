/**
 * /health is served to anyone (a load balancer, a status page): the names of the policies it
 * lists are shown as the dashboard shows them, without the credentials of a policy named by its
 * connection URL. /holdfast/snapshot hid them; /health and healthReport() served them as given.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPolicyRegistry, healthReport, type JsonValue } from '@holdfast/core';
import { expect, it } from 'vitest';
import { healthHandler } from '../src/index.js';

it('/health and healthReport() list a policy named by a URL without its password or token', async () => {
  const policies = createPolicyRegistry();
  const held = [
    { snapshot: (): JsonValue => ({ state: 'open' }) },
    { snapshot: (): JsonValue => ({ status: 'warn' }) },
    { snapshot: (): JsonValue => ({ state: 'closed' }) },
  ];
  policies.register('breaker', 'redis://app:Zq9hunter2@cache.internal/0', held[0] as (typeof held)[0]);
  policies.register('queue', 'amqp://mq.internal/?token=Zq9tok3n', held[1] as (typeof held)[1]);
  policies.register('breaker', 'payments', held[2] as (typeof held)[2]);
  const server = createServer(healthHandler({ policies }));
  try {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    const served = await res.text();
    const report = JSON.stringify(healthReport({ policies }));
    expect([res.status, /Zq9hunter2|Zq9tok3n/.test(served), /Zq9hunter2|Zq9tok3n/.test(report)]).toEqual([
      503,
      false,
      false,
    ]);
    expect(healthReport({ policies }).checks.map((c) => [c.name, c.status])).toEqual([
      ['redis://***@cache.internal/0', 'fail'],
      ['amqp://mq.internal/?token=***', 'warn'],
      ['payments', 'pass'],
    ]);
  } finally {
    server.close();
  }
});
