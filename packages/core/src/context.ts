import { defaultMaxListeners, getMaxListeners, setMaxListeners } from 'node:events';
import type { CallContext, ExecuteOptions } from './policy.js';

type AbortHook = (reason: unknown) => void;

/**
 * Sets what {@link CallScope.given} returns for `scope`: called by `pipeline()` only, on the scope
 * one of its policies hands to the next.
 */
export let carry: (scope: CallScope, given: ExecuteOptions | undefined) => void;

/**
 * The context of one call through one policy. Its AbortSignal is made only when someone reads
 * `signal`: a function that never looks at it pays for no AbortController. Aborts from the
 * caller (a plain signal or an outer scope) reach it either way.
 */
export class CallScope implements CallContext {
  readonly attempt: number;
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;
  #hooks: AbortHook[] | undefined;
  // An outer scope holds its inner ones in a list threaded through them: linking and unlinking
  // a scope costs a few field writes, no closure and no array.
  #parent: CallScope | undefined;
  #prev: CallScope | undefined;
  #next: CallScope | undefined;
  #children: CallScope | undefined;
  /** A signal's relay only (see {@link relayOf}): takes its one listener off the signal. */
  #unlink: (() => void) | undefined;
  /** The options the call came in with, set where a `pipeline()` hands this scope on: see {@link CallScope.given}. */
  #given: ExecuteOptions | undefined;

  static {
    carry = (scope, given) => {
      scope.#given = given;
    };
  }

  constructor(parent: ExecuteOptions | undefined, attempt?: number) {
    this.attempt = attempt ?? attemptOf(parent);
    // No options (most calls): no `instanceof`, whose Symbol.hasInstance lookup V8 leaves
    // megamorphic in optimised code (~290 instructions under callgrind).
    if (parent == null) return;
    if (parent instanceof CallScope) {
      if (parent.#aborted) this.abort(parent.#reason);
      else this.#linkTo(parent);
    } else {
      this.#follow(parent);
    }
  }

  /** Follows a caller's signal. null is no signal, as fetch reads it; anything else not a signal fails the call, told why. */
  #follow(options: ExecuteOptions): void {
    try {
      // Read in here: options whose `signal` getter throws fail the call too, never throw from execute().
      const outer = options.signal;
      if (outer == null) return;
      if (!isSignal(outer)) this.abort(new TypeError(`signal must be an AbortSignal (got ${kindOf(outer)})`));
      else if (outer.aborted) this.abort(reasonOf(outer));
      // Linked to the signal's relay, not listening on the signal itself: one listener for all.
      else this.#linkTo(CallScope.#relayOf(outer));
    } catch (error) {
      // A Proxy whose getters throw, a revoked one: the call rejects, it does not throw.
      this.abort(new TypeError('signal must be an AbortSignal (reading it threw)', { cause: error }));
    }
  }

  /**
   * The options a call came in with at a `pipeline()`'s `execute()`, when `options` is the scope
   * a policy of that pipeline handed to the next one: where a rate limiter anywhere in a pipeline
   * reads the call's `key` and `cost` (before, only the first policy saw them, and a limiter after
   * a bulkhead counted every user under one key). Plain options are returned as they are; a scope
   * no pipeline handed on (a `ctx` your function passes to another policy) gives none, so that
   * policy counts under its own `defaultKey`, as it did.
   */
  static given(options: ExecuteOptions | undefined): ExecuteOptions | undefined {
    return options instanceof CallScope ? options.#given : options;
  }

  /**
   * A scope made here, told by its brand, never by its prototype: a revoked Proxy, or one whose
   * `getPrototypeOf` throws, passed as options threw from every `instanceof CallScope` in execute().
   */
  static [Symbol.hasInstance](value: unknown): value is CallScope {
    return typeof value === 'object' && value !== null && #aborted in value;
  }

  /**
   * Whether a call with `options` can be aborted: an outer scope, or a signal given. Never throws:
   * a `signal` getter that throws counts as a signal, so that the scope made for it fails the
   * call, told why (read in a policy's no-signal fast path, it threw from `execute()`).
   */
  static abortable(options: ExecuteOptions | undefined): boolean {
    if (options == null) return false;
    if (options instanceof CallScope) return true;
    try {
      return options.signal != null;
    } catch {
      return true;
    }
  }

  /**
   * The scope that stands for a caller's plain AbortSignal while calls hold it: one abort
   * listener on the signal, however many calls share it (a shutdown or request signal). With
   * one listener per call, 1,501 calls in flight printed a MaxListenersExceededWarning, and each
   * call paid for an addEventListener and a removeEventListener. It takes its listener off
   * when its last call settles.
   */
  static #relayOf(signal: AbortSignal): CallScope {
    const known = relays.get(signal);
    if (known !== undefined) return known;
    const relay = new CallScope(undefined);
    const relayAbort = () => {
      relays.delete(signal);
      relay.#unlink = undefined;
      relay.abort(reasonOf(signal));
    };
    roomOn(signal);
    signal.addEventListener('abort', relayAbort, { once: true });
    relay.#unlink = () => {
      relays.delete(signal);
      signal.removeEventListener('abort', relayAbort);
    };
    relays.set(signal, relay);
    return relay;
  }

  #linkTo(parent: CallScope): void {
    this.#parent = parent;
    const first = parent.#children;
    if (first !== undefined) {
      first.#prev = this;
      this.#next = first;
    }
    parent.#children = this;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** True once the scope was aborted, whether or not its signal was ever read. */
  get aborted(): boolean {
    return this.#aborted;
  }

  /** Why the scope was aborted (a TimeoutError, or the caller's reason). */
  get reason(): unknown {
    return this.#reason;
  }

  /** Aborts the scope (and its signal, if made, and its inner scopes) with `reason`; later calls do nothing. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#detach();
    this.#controller?.abort(reason);
    let child = this.#children;
    this.#children = undefined;
    while (child !== undefined) {
      const next = child.#next;
      child.#parent = undefined;
      child.#prev = undefined;
      child.#next = undefined;
      child.abort(reason);
      child = next;
    }
    const hooks = this.#hooks;
    this.#hooks = undefined;
    if (hooks) for (const hook of hooks) hook(reason);
  }

  /** Runs `hook` once when the scope aborts. Returns a function that cancels the hook. */
  onAbort(hook: AbortHook): () => void {
    if (this.#aborted) {
      hook(this.#reason);
      return noop;
    }
    if (this.#hooks === undefined) this.#hooks = [];
    this.#hooks.push(hook);
    return () => {
      const hooks = this.#hooks;
      if (hooks === undefined) return;
      const at = hooks.indexOf(hook);
      if (at !== -1) hooks.splice(at, 1);
    };
  }

  /** Detaches from the caller's signal or outer scope. Call once the call has settled. */
  release(): void {
    this.#detach();
  }

  /** Leaves the outer scope's list of inner scopes. */
  #detach(): void {
    const parent = this.#parent;
    if (parent === undefined) return;
    this.#parent = undefined;
    const prev = this.#prev;
    const next = this.#next;
    if (prev === undefined) parent.#children = next;
    else prev.#next = next;
    if (next !== undefined) next.#prev = prev;
    this.#prev = undefined;
    this.#next = undefined;
    // The last call on a signal's relay settled: its listener leaves the signal.
    const unlink = parent.#unlink;
    if (unlink !== undefined && parent.#children === undefined) {
      parent.#unlink = undefined;
      try {
        unlink();
      } catch {
        // A polyfill's removeEventListener that throws: it failed a call that had succeeded (and
        // cost a bulkhead its slot); the listener it kept does nothing once the relay is gone.
      }
    }
  }
}

/** The relay of each caller signal that calls hold now. */
const relays = new WeakMap<AbortSignal, CallScope>();

function noop(): void {}

/** Signals {@link roomOn} has seen: each is looked at once. */
const roomy = new WeakSet<AbortSignal>();

/**
 * One caller signal often serves many calls at once (a shutdown or request signal). Our scopes
 * share one listener on it, but a function that passes it on (fetch, a driver) adds its own per
 * call: past 10, Node warned of a leak ("MaxListenersExceededWarning") where there is none;
 * plain fetch raises the limit of a signal still at Node's default to 1500 (undici,
 * `new Request()`), and so do we.
 */
function roomOn(signal: AbortSignal): void {
  if (roomy.has(signal)) return;
  roomy.add(signal);
  try {
    if (getMaxListeners(signal) === defaultMaxListeners) setMaxListeners(1500, signal);
  } catch {
    // Not Node's AbortSignal (a polyfill): it does not count listeners.
  }
}

/**
 * Why `signal` aborted. A polyfill's signal (the abort-controller package) has no `reason`:
 * its callers got `undefined` to catch. They get what Node's `abort()` gives, an AbortError.
 */
export function reasonOf(signal: { readonly reason?: unknown }): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** An AbortSignal, or one of a polyfill: what a scope can listen on. */
function isSignal(value: unknown): value is AbortSignal {
  const signal = value as Partial<AbortSignal> | null;
  return (
    typeof signal === 'object' &&
    signal !== null &&
    typeof signal.aborted === 'boolean' &&
    typeof signal.addEventListener === 'function' &&
    typeof signal.removeEventListener === 'function'
  );
}

/** What a value is, for a message: its type or class, never its content (it may hold a secret). */
function kindOf(value: unknown): string {
  if (typeof value !== 'object') return `a ${typeof value}`;
  const name: unknown = value?.constructor?.name;
  // A class's name, if it is one: a name set at run time may be anything, a URL with its password.
  const named = typeof name === 'string' && name !== 'Object' && /^[A-Za-z_$][\w$]*$/.test(name);
  return named ? `an instance of ${name}` : 'an object';
}

/** The attempt number an outer policy passed down (its context is our options), else 1. */
export function attemptOf(options: ExecuteOptions | undefined): number {
  try {
    const attempt = (options as { attempt?: unknown } | undefined)?.attempt;
    return typeof attempt === 'number' ? attempt : 1;
  } catch {
    // Options that throw on any read (a Proxy over state that is gone): the scope's read of their
    // signal fails the call, told why; a throw here escaped execute().
    return 1;
  }
}
