import { type Bus, createBus } from '@holdfast/core';

/**
 * A bus of the user's own (an adapter to their logger) whose emit throws: listeners subscribe to
 * it as to any bus, and every event a policy emits on it throws `my bus adapter broke`.
 */
export function brokenBus(): Bus {
  const inner = createBus();
  return {
    on: inner.on.bind(inner) as Bus['on'],
    once: inner.once.bind(inner) as Bus['once'],
    wants: () => true,
    emit: () => {
      throw new Error('my bus adapter broke');
    },
  };
}
