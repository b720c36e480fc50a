import { HoldfastError } from '@holdfast/core';

/** The fault `injectFault()` throws unless told otherwise: on purpose, not a real failure. */
export class InjectedFaultError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.InjectedFaultError');
  override name = 'InjectedFaultError';

  constructor(source: string) {
    super('E_INJECTED_FAULT', `${source}: fault injected on purpose (chaos)`);
  }
}
