import {
  type Bus,
  type CallContext,
  CallScope,
  type Clock,
  type ExecuteOptions,
  errorLabel,
  bus as globalBus,
  invoke,
  invokeIn,
  MAX_DELAY_MS,
  messageOf,
  type Operation,
  type Policy,
  parseOptions,
  realClock,
  shieldBus,
} from '@holdfast/core';
import { InjectedFaultError } from './errors.js';
import {
  type EnabledSwitch,
  type InjectBehaviorOptions,
  type InjectFaultOptions,
  type InjectLatencyOptions,
  type InjectOutcomeOptions,
  injectBehaviorOptionsSchema,
  injectFaultOptionsSchema,
  injectLatencyOptionsSchema,
  injectOutcomeOptionsSchema,
  type LatencyInput,
  type RandomSource,
} from './options.js';
import { flagOn, onSwitchOff, state } from './switch.js';

/** What an injection injects: the `kind` of its `chaos.inject` events. */
export type InjectionKind = 'latency' | 'fault' | 'outcome' | 'behavior';

/** An injection policy: a {@link Policy} that, when enabled and picked, does something on purpose. */
export interface InjectionPolicy extends Policy {
  /** What it injects. */
  readonly kind: InjectionKind;
  /** Calls it injected into so far. */
  readonly injected: number;
}

interface Common {
  readonly name: string;
  readonly rate: number;
  readonly enabled: EnabledSwitch;
  readonly random?: RandomSource | undefined;
  readonly bus?: Bus | undefined;
}

abstract class Injection implements InjectionPolicy {
  abstract readonly kind: InjectionKind;
  readonly name: string;
  readonly #rate: number;
  readonly #enabled: EnabledSwitch;
  readonly #random: RandomSource;
  protected readonly bus: Bus;
  #injected = 0;

  constructor(options: Common) {
    this.name = options.name;
    this.#rate = options.rate;
    this.#enabled = options.enabled;
    this.#random = options.random ?? Math.random;
    this.bus = shieldBus(options.bus ?? globalBus, options.name);
  }

  get injected(): number {
    return this.#injected;
  }

  execute<T>(fn: Operation<T>, options?: ExecuteOptions): Promise<T> {
    // The switch first: a disabled injection left in production costs a few property reads.
    if (state.off || this.#enabled === false || !this.#picks()) return passThrough(fn, options);
    this.#injected++;
    const scope = new CallScope(options);
    if (scope.aborted) {
      scope.release();
      return Promise.reject(scope.reason);
    }
    return this.inject(fn, scope).finally(() => scope.release());
  }

  /** Whether this call gets the injection. A flag or random source that throws means no: chaos never breaks a call. */
  #picks(): boolean {
    try {
      const enabled = this.#enabled;
      return (
        (enabled === true || (enabled !== false && flagOn(enabled, this.name, this))) && this.#random() < this.#rate
      );
    } catch {
      return false;
    }
  }

  protected abstract inject<T>(fn: Operation<T>, scope: CallScope): Promise<T>;

  protected report(detail: string): void {
    if (!this.bus.wants('chaos.inject')) return;
    this.bus.emit({ type: 'chaos.inject', source: this.name, time: Date.now(), kind: this.kind, detail });
  }

  protected draw(): number {
    return this.#random();
  }
}

/** Runs `fn` untouched, reusing the caller's context when an outer policy made one. */
function passThrough<T>(fn: Operation<T>, options: ExecuteOptions | undefined): Promise<T> {
  if (options === undefined) return invoke(fn, new CallScope(undefined));
  if (options instanceof CallScope) return handOn(fn, options);
  const scope = new CallScope(options);
  return handOn(fn, scope).finally(() => scope.release());
}

/**
 * Runs `fn` in `scope` unless its caller has left: aborted already (before the call, during an
 * injected behavior, in the turn the kill switch ended a latency) or given a signal that is none,
 * it never runs (it ran, then rejected: the effect done for nobody), as every policy keeps the
 * abort rules.
 */
function handOn<T>(fn: Operation<T>, scope: CallScope): Promise<T> {
  return scope.aborted ? Promise.reject(scope.reason) : invokeIn(fn, scope);
}

class LatencyInjection extends Injection {
  readonly kind = 'latency';
  readonly #latency: LatencyInput;
  readonly #clock: Clock;

  constructor(options: Common & { latency: LatencyInput; clock?: Clock | undefined }) {
    super(options);
    this.#latency = options.latency;
    this.#clock = options.clock ?? realClock;
  }

  protected async inject<T>(fn: Operation<T>, scope: CallScope): Promise<T> {
    const ms = this.#delay();
    this.report(`+${Math.round(ms)} ms`);
    // Its latency function or a chaos.inject listener aborted the caller or turned chaos off: no wait.
    if (!scope.aborted && !state.off) await this.#wait(ms, scope);
    return handOn(fn, scope);
  }

  #wait(ms: number, scope: CallScope): Promise<void> {
    const clock = this.#clock;
    return new Promise<void>((resolve, reject) => {
      const timer = clock.setTimeout(() => end(resolve), ms, { ref: true });
      // The kill switch ends the wait at once (the call runs), and so does the caller's abort.
      const unwatch = onSwitchOff(() => end(resolve));
      const stop = scope.onAbort((reason) => end(() => reject(reason)));
      function end(settle: () => void): void {
        clock.clearTimeout(timer);
        unwatch();
        stop(); // set by then: an aborted call never waits
        settle();
      }
    });
  }

  #delay(): number {
    const latency = this.#latency;
    if (typeof latency === 'number') return latency;
    // A function's answer: NaN or negative is no wait; past what a timer holds (Infinity) is the longest
    // wait a timer holds, not the 1 ms Node would make of it.
    if (typeof latency === 'function') {
      return Math.min(MAX_DELAY_MS, Math.max(0, Number(latency(() => this.draw())) || 0));
    }
    return latency.min + this.draw() * (latency.max - latency.min);
  }
}

class FaultInjection extends Injection {
  readonly kind = 'fault';
  readonly #fault: unknown;

  constructor(options: Common & { fault?: unknown }) {
    super(options);
    this.#fault = options.fault;
  }

  protected inject<T>(_fn: Operation<T>, scope: CallScope): Promise<T> {
    const fault = this.#fault;
    let error: unknown;
    try {
      error =
        fault === undefined
          ? new InjectedFaultError(this.name)
          : typeof fault === 'function'
            ? (fault as (ctx: CallContext) => unknown)(scope)
            : fault;
    } catch (thrown) {
      error = thrown;
    }
    // Never String() here: a fault with no prototype (no toString) threw from execute().
    this.report(errorLabel(error) ?? messageOf(error));
    return Promise.reject(error);
  }
}

class OutcomeInjection extends Injection {
  readonly kind = 'outcome';
  readonly #outcome: (ctx: CallContext) => unknown;

  constructor(options: Common & { outcome: (ctx: CallContext) => unknown }) {
    super(options);
    this.#outcome = options.outcome;
  }

  protected async inject<T>(_fn: Operation<T>, scope: CallScope): Promise<T> {
    // The caller left while it was made: rejects with its reason, as a call of its own would.
    const value = (await invokeIn(this.#outcome, scope)) as T;
    this.report(describeOutcome(value));
    return value;
  }
}

class BehaviorInjection extends Injection {
  readonly kind = 'behavior';
  readonly #behavior: (ctx: CallContext) => unknown;

  constructor(options: Common & { behavior: (ctx: CallContext) => unknown }) {
    super(options);
    this.#behavior = options.behavior;
  }

  protected async inject<T>(fn: Operation<T>, scope: CallScope): Promise<T> {
    this.report('behavior');
    await this.#behavior(scope);
    return handOn(fn, scope);
  }
}

function describeOutcome(value: unknown): string {
  const status = (value as { status?: unknown } | null | undefined)?.status;
  if (typeof status === 'number') return String(status);
  return value === null ? 'null' : typeof value;
}

/**
 * Delays picked calls before they run (Polly's latency strategy). The wait ends at once if the
 * caller aborts. Off unless `enabled`.
 *
 * @example
 * const slow = injectLatency({ latency: { min: 200, max: 800 }, rate: 0.1, enabled: true });
 * await pipeline(timeout(500), slow).execute(() => 'ok'); // sometimes a TimeoutError
 */
export function injectLatency(options: InjectLatencyOptions): InjectionPolicy {
  return new LatencyInjection(parseOptions('injectLatency', injectLatencyOptionsSchema, options));
}

/**
 * Throws instead of running picked calls (Polly's fault strategy). Off unless `enabled`.
 *
 * @example
 * const flaky = injectFault({ rate: 0.2, enabled: () => process.env.GAME_DAY === '1' });
 */
export function injectFault(options: InjectFaultOptions = {}): InjectionPolicy {
  return new FaultInjection(parseOptions('injectFault', injectFaultOptionsSchema, options));
}

/**
 * Returns a made-up result instead of running picked calls (Polly's outcome strategy), such as
 * a 503 `Response`. Off unless `enabled`.
 *
 * @example
 * const busy = injectOutcome({
 *   outcome: () => new Response(null, { status: 503, headers: { 'retry-after': '1' } }),
 *   rate: 0.05,
 *   enabled: true,
 * });
 */
export function injectOutcome(options: InjectOutcomeOptions): InjectionPolicy {
  return new OutcomeInjection(parseOptions('injectOutcome', injectOutcomeOptionsSchema, options));
}

/**
 * Runs a side effect before picked calls, then the call itself (Polly's behaviour strategy).
 * Off unless `enabled`.
 *
 * @example
 * const chaosMonkey = injectBehavior({ behavior: () => proxy.resetAll(), rate: 0.01, enabled: true });
 */
export function injectBehavior(options: InjectBehaviorOptions): InjectionPolicy {
  return new BehaviorInjection(parseOptions('injectBehavior', injectBehaviorOptionsSchema, options));
}
