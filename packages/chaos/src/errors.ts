import { HoldfastError } from '@holdfast/core';
import type { DrillResult, ObjectiveResult } from './drill.js';

/** Why an objective has no figure: duplicates not counted, or no request to judge it by. */
export function unjudged(o: ObjectiveResult): string {
  return o.objective === 'maxDuplicates' ? 'not counted' : 'no requests';
}

/** The fault `injectFault()` throws unless told otherwise: on purpose, not a real failure. */
export class InjectedFaultError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.InjectedFaultError');
  override name = 'InjectedFaultError';

  constructor(source: string) {
    super('E_INJECTED_FAULT', `${source}: fault injected on purpose (chaos)`);
  }
}

/** A drill whose objectives did not all hold, thrown by `assertDrill()`. The message names each miss. */
export class DrillFailedError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.DrillFailedError');
  override name = 'DrillFailedError';
  /** The drill's whole result. */
  readonly result: DrillResult;

  constructor(result: DrillResult) {
    const missed = result.objectives
      .filter((o) => !o.passed)
      .map((o) =>
        Number.isNaN(o.actual)
          ? `${o.objective} ${unjudged(o)}`
          : `${o.objective} ${o.actual} > ${o.limit} (over by ${Math.round(o.by * 1000) / 1000})`,
      );
    super('E_DRILL_FAILED', `drill "${result.name}" failed: ${missed.join('; ')}`);
    this.result = result;
  }
}
