// The exact schedule the GCRA give-back tests check the calls that ran against.

/** Whether every call, in order, is allowed by an exact GCRA (a tiny slack for float arithmetic). */
export function conforms(calls: readonly { at: number; cost: number }[], emission: number, tolerance: number): boolean {
  let tat = Number.NEGATIVE_INFINITY;
  for (const c of [...calls].sort((x, y) => x.at - y.at)) {
    const next = Math.max(tat, c.at) + emission * c.cost;
    if (next - c.at > tolerance + 1e-6) return false;
    tat = next;
  }
  return true;
}
