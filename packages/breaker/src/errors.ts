import { BrokenCircuitError } from '@holdfast/core';

/**
 * Makes the `BrokenCircuitError` of each refused call, cheaply. Building an Error costs more
 * than the rest of a rejection together (a stack trace in opossum and cockatiel; even without
 * one, V8's Error construction), and its trace would only point into the breaker: the cause
 * is the breaker's state, which the message and `retryAt` carry.
 *
 * So one real BrokenCircuitError, without a stack trace, is made per open period (per
 * `retryAt`), and each refused call gets an object of its own that inherits from it: it is
 * `instanceof BrokenCircuitError` and `Error`, has its own `name`, `code` and `retryAt`, and
 * reads `message` and `stack` from the one it inherits from. What it is not is a native Error
 * (`util.types.isNativeError` says false), which costs a rejection about 400 ns here.
 *
 * The previous template is kept too: on the real clock the `retryAt` of one open period flips
 * between two adjacent ms (Date.now() is truncated, the monotonic line fractional), and each
 * flip built a new template, about one per ms of constant refusals, each a new prototype for V8.
 */
export class Rejections {
  readonly #source: string;
  #template: BrokenCircuitError | undefined;
  #previous: BrokenCircuitError | undefined;

  constructor(source: string) {
    this.#source = source;
  }

  next(retryAt: number | undefined): BrokenCircuitError {
    let template = this.#template;
    if (template === undefined || template.retryAt !== retryAt) {
      const previous = this.#previous;
      this.#previous = template;
      template = previous !== undefined && previous.retryAt === retryAt ? previous : this.#make(retryAt);
      // Never handed out itself: what a caller sets on its error must not reach the next caller's.
      this.#template = template;
    }
    const error = Object.create(template) as { -readonly [K in keyof BrokenCircuitError]: BrokenCircuitError[K] };
    error.name = template.name;
    error.code = template.code;
    error.retryAt = template.retryAt;
    return error as BrokenCircuitError;
  }

  #make(retryAt: number | undefined): BrokenCircuitError {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new BrokenCircuitError(this.#source, retryAt);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}
