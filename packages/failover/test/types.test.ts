import { expectTypeOf, it } from 'vitest';
import { type Endpoint, type Failover, failover } from '../src/index.js';

class Client {
  ping(): Promise<'PONG'> {
    return Promise.resolve('PONG');
  }
}

it('infers the target type from the endpoints, for execute and for check', async () => {
  const set = failover({
    endpoints: [{ name: 'r1', target: new Client() }],
    health: {
      check: (endpoint) => {
        expectTypeOf(endpoint).toEqualTypeOf<Endpoint<Client>>();
        return endpoint.target.ping();
      },
    },
  });
  expectTypeOf(set).toEqualTypeOf<Failover<Client>>();
  const answer = await set.execute((endpoint, ctx) => {
    expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>();
    return endpoint.target.ping();
  });
  expectTypeOf(answer).toEqualTypeOf<'PONG'>();
  set.dispose();
});
