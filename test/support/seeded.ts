import { seededRandom } from '@holdfast/core';

/** The tests' seeded source of numbers in [0, 1): core's `seededRandom`, seed 42 unless told. */
export function seeded(seed = 42): () => number {
  return seededRandom(seed);
}
