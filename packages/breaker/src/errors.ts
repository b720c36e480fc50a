import { BrokenCircuitError } from '@holdfast/core';

/** A real BrokenCircuitError, made without a stack trace (its trace would only point here). */
function traceless(source: string, retryAt: number | undefined): BrokenCircuitError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new BrokenCircuitError(source, retryAt);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** The last message made: a service that logs every refusal reads one per call, mostly alike. */
let last = { source: '', retryAt: Number.NaN as number | undefined, message: '' };

/** BrokenCircuitError's message, from one made to read it: the format stays core's. */
function messageOf(source: string, retryAt: number | undefined): string {
  if (last.source !== source || last.retryAt !== retryAt) {
    last = { source, retryAt, message: traceless(source, retryAt).message };
  }
  return last.message;
}

/**
 * The error of a refused call, made cheaply. Building an Error costs more than the rest of a
 * rejection together (a stack trace in opossum and cockatiel; even without one, V8's Error
 * construction), and its trace would only point into the breaker: the cause is the breaker's
 * state, which the message and `retryAt` carry.
 *
 * So a refusal is an instance of this one class, whose prototype inherits from one real
 * BrokenCircuitError: it is `instanceof BrokenCircuitError` (the brand is inherited) and
 * `Error`, has its own `name`, `code` and `retryAt` (what JSON shows), and a `message` and
 * `stack` read from them. What it is not is a native Error (`util.types.isNativeError` says
 * false), which costs a rejection about 400 ns here.
 *
 * One class for every breaker: each refusal has the same shape, so the code that makes it is
 * monomorphic. (It used to be `Object.create()` of a template per open period: each template a
 * prototype of its own shape, the three stores on the copy went through V8's generic StoreIC and
 * the template reads were megamorphic, ~520 of a refusal's ~9,200 instructions under callgrind.)
 */
class Refusal {
  // Declared, not defined: fields would add each property undefined first, then set it.
  declare readonly name: string;
  declare readonly code: 'E_CIRCUIT_OPEN';
  declare readonly retryAt: number | undefined;
  readonly #source: string;

  constructor(source: string, retryAt: number | undefined) {
    this.name = 'BrokenCircuitError';
    this.code = 'E_CIRCUIT_OPEN';
    this.retryAt = retryAt;
    this.#source = source;
  }

  /** As BrokenCircuitError's, made when read. */
  get message(): string {
    return messageOf(#source in this ? this.#source : '', this.retryAt);
  }

  /** What a BrokenCircuitError made without a trace shows. */
  get stack(): string {
    return `${this.name}: ${this.message}`;
  }

  /** A caller may set its own, as on any error: it is kept, on this refusal only. */
  set message(value: string) {
    Object.defineProperty(this, 'message', { value, writable: true, configurable: true });
  }

  set stack(value: string) {
    Object.defineProperty(this, 'stack', { value, writable: true, configurable: true });
  }
}

// Made once, not per breaker: the brand `instanceof` reads, and the Error prototype chain.
Object.setPrototypeOf(Refusal.prototype, traceless('', undefined));
/** The error a breaker named `source` refuses a call with: an object of its own for each call. */
export function refusal(source: string, retryAt: number | undefined): BrokenCircuitError {
  return new Refusal(source, retryAt) as unknown as BrokenCircuitError;
}
