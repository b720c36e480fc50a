import type { CallContext, ExecuteOptions } from './policy.js';

type AbortHook = (reason: unknown) => void;

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
  #unlink: (() => void) | undefined;

  constructor(parent: ExecuteOptions | undefined, attempt?: number) {
    this.attempt = attempt ?? attemptOf(parent);
    if (parent instanceof CallScope) {
      if (parent.aborted) this.abort(parent.reason);
      else this.#unlink = parent.onAbort((reason) => this.abort(reason));
    } else if (parent?.signal !== undefined) {
      const outer = parent.signal;
      if (outer.aborted) this.abort(outer.reason);
      else {
        const relay = () => this.abort(outer.reason);
        outer.addEventListener('abort', relay, { once: true });
        this.#unlink = () => outer.removeEventListener('abort', relay);
      }
    }
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

  /** Aborts the scope (and its signal, if made) with `reason`; later calls do nothing. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
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

  /** Detaches from the caller's signal. Call once the call has settled. */
  release(): void {
    const unlink = this.#unlink;
    this.#unlink = undefined;
    unlink?.();
  }
}

function noop(): void {}

/** The attempt number an outer policy passed down (its context is our options), else 1. */
export function attemptOf(options: ExecuteOptions | undefined): number {
  const attempt = (options as { attempt?: unknown } | undefined)?.attempt;
  return typeof attempt === 'number' ? attempt : 1;
}
