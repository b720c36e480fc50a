import { HoldfastError } from '@holdfast/core';

/** No endpoint could take the call: all are down, drained or tried, or panic is `fail-fast`. */
export class NoHealthyEndpointError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.NoHealthyEndpointError');
  override name = 'NoHealthyEndpointError';
  /** How many endpoints were available. */
  readonly healthy: number;
  /** How many endpoints the set has. */
  readonly total: number;

  constructor(source: string, healthy: number, total: number, options?: { cause?: unknown }) {
    super(
      'E_NO_HEALTHY_ENDPOINT',
      `${source}: no healthy endpoint can take the call (${healthy} of ${total} available)`,
      options,
    );
    this.healthy = healthy;
    this.total = total;
  }
}
