import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * @internal The faults a drill's steps put on, to take off when the drill ends, however it ends.
 * A fault proxy reports each fault it puts on to the scope its caller runs in (a step's async
 * context, timers it set included); once the scope has ended, it puts on none.
 */
export class FaultScope {
  readonly #undo: (() => unknown)[] = [];
  #ended = false;

  get ended(): boolean {
    return this.#ended;
  }

  /** Records how to take off a fault just put on. */
  opened(undo: () => unknown): void {
    this.#undo.push(undo);
  }

  /** Takes off every fault put on in this scope, the last first; each one's failure is its own. */
  async restore(): Promise<void> {
    this.#ended = true;
    for (const undo of this.#undo.splice(0).reverse()) {
      try {
        await undo();
      } catch {
        // A proxy that cannot listen again (its port taken meanwhile) must not keep the others faulty.
      }
    }
  }
}

/** @internal The scope of the drill step running now, if any. */
export const faultScope = new AsyncLocalStorage<FaultScope>();
