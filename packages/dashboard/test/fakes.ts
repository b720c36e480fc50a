/**
 * Small stand-ins for @holdfast/breaker, @holdfast/failover and @holdfast/retry's budget (which
 * this package must not import): they register snapshots of the documented shapes and emit the
 * events the real ones emit.
 */
import {
  type Bus,
  createBus,
  type EventType,
  type HoldfastEvent,
  type JsonValue,
  type PolicyRegistry,
  type Unregister,
} from '@holdfast/core';

export class FakeBreaker {
  state: 'closed' | 'open' | 'halfOpen' | 'isolated' | 'disabled' = 'closed';
  calls = 0;
  failures = 0;
  readonly #unregister: Unregister;

  constructor(
    readonly name: string,
    readonly bus: Bus,
    policies: PolicyRegistry,
    readonly now: () => number = Date.now,
  ) {
    this.#unregister = policies.register('breaker', name, this);
  }

  snapshot(): JsonValue {
    return {
      name: this.name,
      state: this.state,
      retryAt: this.state === 'open' ? this.now() + 5000 : null,
      window: {
        calls: this.calls,
        failures: this.failures,
        failureRate: this.calls ? this.failures / this.calls : 0,
        rejects: 0,
      },
      latency: { p50: 20, p95: 80, p99: 120 },
    };
  }

  /** One call through the breaker: counted, timed and reported on the bus. */
  call(latency: number, ok: boolean): void {
    this.calls++;
    if (!ok) this.failures++;
    const time = this.now();
    if (ok) this.bus.emit({ type: 'breaker.success', source: this.name, time, latency });
    else this.bus.emit({ type: 'breaker.failure', source: this.name, time, latency, code: 'ECONNRESET' });
  }

  open(): void {
    this.state = 'open';
    const failureRate = this.calls ? this.failures / this.calls : 1;
    this.bus.emit({
      type: 'breaker.open',
      source: this.name,
      time: this.now(),
      reason: 'failureRate',
      failureRate,
      slowCallRate: 0,
      retryAt: this.now() + 5000,
      opens: 1,
      code: 'ECONNRESET',
    } as HoldfastEvent);
  }

  halfOpen(): void {
    this.state = 'halfOpen';
    this.bus.emit({ type: 'breaker.halfOpen', source: this.name, time: this.now() });
  }

  close(): void {
    this.state = 'closed';
    this.calls = 0;
    this.failures = 0;
    this.bus.emit({ type: 'breaker.close', source: this.name, time: this.now(), reason: 'probes' });
  }

  dispose(): void {
    this.#unregister();
  }
}

export interface FakeEndpoint {
  name: string;
  role: 'active' | 'standby' | 'member' | 'drained';
  health: 'healthy' | 'unhealthy';
  available: boolean;
  ejection: 'none' | 'ejected' | 'probe';
  inFlight: number;
}

export class FakeFailover {
  readonly endpoints: FakeEndpoint[];
  panic = false;
  readonly #unregister: Unregister;

  constructor(
    readonly name: string,
    names: readonly string[],
    policies: PolicyRegistry,
  ) {
    this.endpoints = names.map((n, i) => ({
      name: n,
      role: i === 0 ? 'active' : 'standby',
      health: 'healthy',
      available: true,
      ejection: 'none',
      inFlight: 0,
    }));
    this.#unregister = policies.register('failover', name, this);
  }

  snapshot(): JsonValue {
    const active = this.endpoints.find((e) => e.role === 'active')?.name ?? null;
    return {
      name: this.name,
      mode: 'active-passive',
      active,
      panic: this.panic,
      endpoints: this.endpoints.map((e) => ({ ...e })),
    };
  }

  /** Marks an endpoint down (health check failed) or back up. */
  set(name: string, up: boolean): void {
    const e = this.endpoints.find((x) => x.name === name);
    if (!e) throw new Error(`no endpoint ${name}`);
    e.health = up ? 'healthy' : 'unhealthy';
    e.available = up;
  }

  dispose(): void {
    this.#unregister();
  }
}

export class FakeBudget {
  balance = 10;
  refused = 0;
  readonly #unregister: Unregister;

  constructor(
    readonly name: string,
    policies: PolicyRegistry,
  ) {
    this.#unregister = policies.register('budget', name, this);
  }

  snapshot(): JsonValue {
    return {
      name: this.name,
      ratio: 0.2,
      calls: 50,
      retries: 10 - this.balance,
      balance: this.balance,
      refused: this.refused,
    };
  }

  dispose(): void {
    this.#unregister();
  }
}

/** A bus that counts its live listeners per type, to prove that listeners are removed. */
export function countingBus(): Bus & { listeners(type: EventType | '*'): number } {
  const inner = createBus({ onListenerError: () => {} });
  const live = new Map<string, number>();
  const bump = (type: string, by: number) => live.set(type, (live.get(type) ?? 0) + by);
  return {
    on(type: EventType | '*', listener: (e: HoldfastEvent) => void) {
      const off = (inner.on.bind(inner) as (t: string, l: (e: HoldfastEvent) => void) => () => void)(type, listener);
      bump(type, 1);
      let on = true;
      return () => {
        if (on) bump(type, -1);
        on = false;
        off();
      };
    },
    once: inner.once.bind(inner),
    wants: inner.wants.bind(inner),
    emit: inner.emit.bind(inner),
    listeners: (type) => live.get(type) ?? 0,
  } as Bus & { listeners(type: EventType | '*'): number };
}

/** A clock whose timers run only when the test says time has passed: a loaded machine changes how long a test takes, not what it counts. */
export function handClock(start = 1_000_000) {
  let now = start;
  const timers = new Set<{ fire: () => void }>();
  return {
    now: () => now,
    setTimeout: (fire: () => void) => {
      const handle = { fire };
      timers.add(handle);
      return handle;
    },
    clearTimeout: (handle: unknown) => void timers.delete(handle as { fire: () => void }),
    /** Timers set and not yet run nor cleared. */
    pending: () => timers.size,
    /** Moves time on by `ms` and runs every timer that was set. */
    pass(ms: number) {
      now += ms;
      const due = [...timers];
      timers.clear();
      for (const t of due) t.fire();
    },
  };
}

/** Reads an event stream to its end, calling `counted` with the number of snapshots in each chunk. */
export function countSnapshots(res: Response, counted: (snapshots: number) => void): void {
  let carry = '';
  const decoder = new TextDecoder();
  void res.body
    ?.pipeTo(
      new WritableStream({
        write(chunk) {
          const events = (carry + decoder.decode(chunk, { stream: true })).split('\n\n');
          carry = events.pop() ?? '';
          counted(events.filter((e) => e.startsWith('event: snapshot')).length);
        },
      }),
    )
    .catch(() => {});
}
