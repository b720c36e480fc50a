/**
 * Every event type with every field, for exporters' secrets properties: any string field (the
 * source, an anomaly metric's name) may carry a credential in one of the forms hideSecrets knows,
 * and none may reach an exported attribute, label, span name or span attribute.
 */
import { type EventType, eventTypes, type HoldfastEvent } from '@holdfast/core';
import fc from 'fast-check';

type Field = readonly string[] | 'num' | 'bool';

/** Per type, its fields: a string field as the values it takes when plain (the first is used most). */
const fields: Record<EventType, Record<string, Field>> = {
  timeout: { timeout: 'num', strategy: ['cooperative', 'aggressive'] },
  'breaker.open': {
    reason: ['failureRate', 'manual'],
    failureRate: 'num',
    slowCallRate: 'num',
    retryAt: 'num',
    opens: 'num',
    code: ['ECONNRESET', 'E_TIMEOUT'],
  },
  'breaker.halfOpen': {},
  'breaker.close': { reason: ['probes', 'manual'] },
  'breaker.isolate': {},
  'breaker.disable': {},
  'breaker.reject': { state: ['open', 'halfOpen'], retryAt: 'num', code: ['E_CIRCUIT_OPEN'], fallback: 'bool' },
  'breaker.success': { latency: 'num' },
  'breaker.failure': { latency: 'num', code: ['ECONNRESET', 'E_TIMEOUT'] },
  'breaker.slow': { latency: 'num', threshold: 'num' },
  'retry.attempt': { attempt: 'num', delay: 'num', code: ['ECONNRESET'] },
  'retry.giveUp': { attempts: 'num', reason: ['maxAttempts', 'budget'], code: ['ECONNRESET'] },
  'retry.budgetExhausted': { attempt: 'num', code: ['ECONNRESET'] },
  'idempotency.claim': { key: ['k1'], takeover: 'bool' },
  'idempotency.replay': { key: ['k1'], createdAt: 'num' },
  'idempotency.conflict': { key: ['k1'], waited: 'bool' },
  'idempotency.mismatch': { key: ['k1'] },
  'idempotency.release': { key: ['k1'], code: ['E_TIMEOUT'] },
  'idempotency.takeover': { key: ['k1'] },
  'idempotency.lost': { key: ['k1'], sent: 'num' },
  'idempotency.staleCompletion': { key: ['k1'] },
  'idempotency.leaseLost': { key: ['k1'], reason: ['notOwner', 'maxRunMs'] },
  'idempotency.storeError': {
    key: ['k1'],
    operation: ['claim', 'complete', 'extend'],
    code: ['ECONNRESET'],
    failOpen: 'bool',
  },
  'failover.eject': { endpoint: ['primary', 'replica'], until: 'num', ejections: 'num', reason: ['failures'] },
  'failover.restore': { endpoint: ['primary'] },
  'failover.switch': { from: ['primary'], to: ['replica', 'primary'], reason: ['failover', 'failback'] },
  'failover.panic': { healthy: 'num', total: 'num', active: 'bool' },
  'health.change': { endpoint: ['primary'], healthy: 'bool' },
  'chaos.inject': { kind: ['latency', 'fault'], detail: ['+250 ms'] },
  'chaos.toxic': {
    toxic: ['latency', 'reset'],
    name: ['slow'],
    direction: ['both'],
    active: 'bool',
    target: ['127.0.0.1:5432'],
  },
  'chaos.drill': { phase: ['start', 'end'], step: ['one'], passed: 'bool' },
  fallback: { reason: ['failure', 'result'], code: ['ECONNRESET'] },
  'hedge.attempt': { attempt: 'num', delay: 'num', trigger: ['delay', 'failure'] },
  'hedge.budgetExhausted': { attempt: 'num' },
  'bulkhead.reject': { reason: ['full', 'queueTimeout'], running: 'num', queued: 'num', code: ['E_BULKHEAD_FULL'] },
  'rateLimit.reject': { retryAfter: 'num', code: ['E_RATE_LIMITED'] },
  'rateLimit.storeError': { code: ['ECONNRESET'], failOpen: 'bool' },
  'concurrency.limit': { algorithm: ['gradient2'], from: 'num', to: 'num', latency: 'num' },
  'concurrency.reject': { limit: 'num', inFlight: 'num', code: ['E_CONCURRENCY_LIMIT'] },
  'throttle.reject': { probability: 'num', code: ['E_THROTTLED'] },
  // `metrics` is a list of { name, value, expected, score }: its names are string fields too.
  'anomaly.score': { key: ['api', 'db'], score: 'num', raised: 'bool' },
  'anomaly.detected': {
    key: ['api', 'db'],
    detector: ['baseline', 'forest'],
    metric: ['errorRate'],
    score: 'num',
    value: 'num',
    expected: 'num',
  },
  'anomaly.cleared': {
    key: ['api', 'db'],
    detector: ['baseline'],
    metric: ['errorRate'],
    duration: 'num',
    reason: ['forgotten', 'recovered'],
  },
  'anomaly.action': { key: ['api'], action: ['eject'], target: ['primary'], taken: 'bool', reason: ['peers'] },
  'failover.role': {
    endpoint: ['primary'],
    role: ['primary', 'fenced'],
    previous: ['unknown'],
    token: ['0/16B3740'],
    code: ['ECONNREFUSED'],
  },
  'failover.fence': { endpoint: ['old'], primary: ['new'], token: ['0/1'], primaryToken: ['0/2'] },
  // `endpoints` is a list of names: a string field too.
  'failover.splitBrain': { active: 'bool', disposed: 'bool', since: 'num' },
};

/** A secret: letters and digits after a marker no plain value holds. */
export const secretArb = fc.stringMatching(/^[A-Za-z0-9]{6,12}$/).map((s) => `Zq9${s}`);

/** `secret` in a form hideSecrets hides: in a URL's user info or query, a `key=value`, a bearer token. */
export const carrierArb = (secret: string): fc.Arbitrary<string> =>
  fc.constantFrom(
    `https://alice:${secret}@pay.example/v1`,
    `postgres://app:${secret}@db.internal/orders`,
    `redis://default:${secret}@cache:6379`,
    `https://api.example/v1?api_key=${secret}`,
    `https://api.example/v1?x=1&token=${secret}#frag`,
    `password=${secret}`,
    // A short code's characters only: `error.type` takes it unless it is hidden.
    `password:${secret}`,
    `login failed: password: ${secret}`,
    `Authorization: Bearer ${secret}`,
    `Host=db;Password=${secret};Database=orders`,
  );

/**
 * One event of any type, every field filled, `secret` (in a carrier) in some of its string fields
 * (`source` and, for `anomaly.score`, the metrics' names among them); `withSecret` says which.
 */
export const secretEventArb = (secret: string): fc.Arbitrary<{ event: HoldfastEvent; withSecret: string[] }> =>
  fc.constantFrom(...eventTypes).chain((type) => {
    const own = fields[type];
    const strings = ['source', ...Object.keys(own).filter((f) => Array.isArray(own[f]))];
    if (type === 'anomaly.score') strings.push('metrics.name');
    if (type === 'failover.splitBrain') strings.push('endpoints.name');
    return fc
      .record({
        withSecret: fc.subarray(strings, { minLength: 1 }),
        plain: fc.record(
          Object.fromEntries(strings.map((f) => [f, fc.constantFrom(...((own[f] as readonly string[]) ?? ['api']))])),
        ) as fc.Arbitrary<Record<string, string>>,
        carriers: fc.array(carrierArb(secret), { minLength: strings.length, maxLength: strings.length }),
        num: fc.integer({ min: 0, max: 1_000 }),
        bool: fc.boolean(),
      })
      .map(({ withSecret, plain, carriers, num, bool }) => {
        const text = (f: string) =>
          withSecret.includes(f) ? (carriers[strings.indexOf(f)] as string) : (plain[f] as string);
        const event: Record<string, unknown> = { type, source: text('source'), time: 1_700_000_000_000 };
        for (const [f, kind] of Object.entries(own)) {
          event[f] = kind === 'num' ? num : kind === 'bool' ? bool : text(f);
        }
        if (type === 'anomaly.score') {
          event.metrics = [{ name: text('metrics.name'), value: num, expected: num, score: 0.9 }];
        }
        if (type === 'failover.splitBrain') event.endpoints = [text('endpoints.name'), 'pg-b'];
        return { event: event as unknown as HoldfastEvent, withSecret };
      });
  });

/**
 * As secretEventArb, from an emitter of a user's own that fills fields as it likes: some number
 * and boolean fields hold `secret` as text (`"password=…"` where a count belongs), and fields no
 * event type has hold it nested: an error with a message and a cause, an array, an object.
 */
export const hostileEventArb = (secret: string): fc.Arbitrary<{ event: HoldfastEvent }> =>
  fc
    .record({
      base: secretEventArb(secret),
      asText: fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
      carrier: carrierArb(secret),
      extras: fc.subarray(['error', 'list', 'nested', 'cause'] as const),
    })
    .map(({ base, asText, carrier, extras }) => {
      const event: Record<string, unknown> = { ...base.event };
      const own = fields[event.type as EventType];
      let i = 0;
      for (const [f, kind] of Object.entries(own)) {
        if (kind !== 'num' && kind !== 'bool') continue;
        if (asText[i++ % asText.length]) event[f] = carrier;
      }
      if (event.type === 'anomaly.score' && asText[7]) {
        event.metrics = [{ name: 'errorRate', value: carrier, expected: carrier, score: carrier }];
      }
      const error = new Error(carrier, { cause: new Error(carrier) });
      if (extras.includes('error')) event.error = error;
      if (extras.includes('cause')) event.cause = { message: carrier, code: carrier };
      if (extras.includes('list')) event.list = [carrier, { url: carrier }];
      if (extras.includes('nested')) event.nested = { url: carrier, deeper: { token: carrier } };
      return { event: event as unknown as HoldfastEvent };
    });
