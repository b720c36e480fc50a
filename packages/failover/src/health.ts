import { type Clock, MAX_DELAY_MS, TimeoutError, type TimerHandle } from '@holdfast/core';
import type { Endpoint, EndpointState } from './endpoint.js';

export interface HealthSettings {
  readonly check: (endpoint: Endpoint, signal: AbortSignal) => unknown;
  readonly interval: number;
  readonly jitter: number;
  readonly timeout: number;
  readonly healthyAfter: number;
  readonly unhealthyAfter: number;
}

interface Probe {
  passes: number;
  fails: number;
  timer: TimerHandle | undefined;
  controller: AbortController | undefined;
  /** The check's own promise has not settled (past its timeout: it ignored its signal). */
  running: boolean;
  /** Ends the turn in progress now, its deadline cleared: dispose() must not wait for it. */
  end: ((ok: boolean) => void) | undefined;
}

/**
 * Runs `check` on every endpoint, one at a time per endpoint: the next check of an endpoint
 * is scheduled when the previous one ends, so a slow endpoint never piles checks up. Every
 * timer is the clock's, unref'd.
 */
export class HealthChecks {
  readonly #probes = new Map<EndpointState, Probe>();
  #stopped = false;

  constructor(
    readonly endpoints: readonly EndpointState[],
    readonly settings: HealthSettings,
    readonly clock: Clock,
    readonly random: () => number,
    readonly source: string,
    /** Told when an endpoint's verdict flips. */
    readonly onChange: (endpoint: EndpointState, healthy: boolean) => void,
  ) {
    for (const e of endpoints) {
      const probe: Probe = {
        passes: 0,
        fails: 0,
        timer: undefined,
        controller: undefined,
        running: false,
        end: undefined,
      };
      this.#probes.set(e, probe);
      // The first round is spread over one jitter's width so that sets built together do not beat in step.
      this.#schedule(e, probe, this.settings.interval * this.settings.jitter * this.random());
    }
  }

  stop(): void {
    this.#stopped = true;
    for (const probe of this.#probes.values()) {
      if (probe.timer !== undefined) this.clock.clearTimeout(probe.timer);
      probe.timer = undefined;
      probe.controller?.abort(new Error(`${this.source}: disposed`));
      probe.end?.(false); // a check that ignores its signal leaves no deadline timer behind
    }
  }

  #schedule(e: EndpointState, probe: Probe, delay: number): void {
    if (this.#stopped) return;
    probe.timer = this.clock.setTimeout(() => {
      probe.timer = undefined;
      void this.#run(e, probe);
    }, delay);
  }

  #nextDelay(): number {
    const { interval, jitter } = this.settings;
    // Jitter on top of an interval near the limit would pass it: Node then fires after 1 ms, in a loop.
    return Math.min(MAX_DELAY_MS, Math.max(0, interval * (1 + jitter * (2 * this.random() - 1))));
  }

  async #run(e: EndpointState, probe: Probe): Promise<void> {
    if (probe.running) {
      // The last check outlived its timeout and still runs (its signal ignored, e.g. a fetch not
      // given it, held by a frozen server): a second one would pile another connection on it.
      // This turn fails, as that check did, and the next comes after the interval.
      this.#record(e, probe, false);
      this.#schedule(e, probe, this.#nextDelay());
      return;
    }
    const controller = new AbortController();
    probe.controller = controller;
    const passed = await new Promise<boolean>((resolve) => {
      const deadline = this.clock.setTimeout(() => {
        controller.abort(new TimeoutError(`${this.source}: health check of ${e.name}`, this.settings.timeout));
        resolve(false);
      }, this.settings.timeout);
      const settle = (ok: boolean) => {
        this.clock.clearTimeout(deadline);
        resolve(ok);
      };
      probe.end = settle;
      try {
        probe.running = true;
        Promise.resolve(this.settings.check(e.view, controller.signal))
          .then(
            (result) => settle(result !== false && !controller.signal.aborted),
            () => settle(false),
          )
          .finally(() => {
            probe.running = false;
          });
      } catch {
        probe.running = false;
        settle(false);
      }
    });
    probe.controller = undefined;
    probe.end = undefined;
    if (this.#stopped) return;
    this.#record(e, probe, passed);
    this.#schedule(e, probe, this.#nextDelay());
  }

  #record(e: EndpointState, probe: Probe, passed: boolean): void {
    if (passed) {
      probe.passes++;
      probe.fails = 0;
      if (e.health === 'unhealthy' && probe.passes >= this.settings.healthyAfter) this.onChange(e, true);
    } else {
      probe.fails++;
      probe.passes = 0;
      if (e.health === 'healthy' && probe.fails >= this.settings.unhealthyAfter) this.onChange(e, false);
    }
  }
}
