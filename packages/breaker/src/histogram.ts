/**
 * A fixed-size latency histogram in milliseconds: one bin below 1 ms, then two bins per power
 * of two (split at √2) up to 2^21 ms (about 35 minutes). A value lands in O(1) with no
 * allocation; a percentile is read back as the geometric middle of its bin, within 19%.
 */

/** Powers of two covered: [1, 2), [2, 4), ... [2^20, 2^21). Anything longer lands in the last bin. */
const OCTAVES = 21;

/** Bins per histogram. */
export const BINS = 1 + 2 * OCTAVES;

/** The bin a latency of `ms` milliseconds falls in. */
export function binOf(ms: number): number {
  if (!(ms >= 1)) return 0;
  if (ms >= 2 ** OCTAVES) return BINS - 1;
  const v = ms | 0;
  const octave = 31 - Math.clz32(v);
  const base = 1 << octave;
  const upper = v >= base * Math.SQRT2 ? 1 : 0;
  return 1 + 2 * octave + upper;
}

/** The value a bin reports: exact for 0 to 3 ms, else the geometric middle of the bin. */
export function binValue(bin: number): number {
  if (bin <= 0) return 0;
  const octave = (bin - 1) >> 1;
  const upper = (bin - 1) & 1;
  // Below 4 ms each bin holds one whole number of milliseconds: report it.
  if (octave <= 1) return upper ? 3 : 2 ** octave;
  return Math.round(2 ** (octave + (upper ? 0.75 : 0.25)) * 10) / 10;
}

/**
 * The values at the given quantiles (0 < q <= 1) of the counts in `bins`, which may be a slice
 * of several histograms summed. `null` for each quantile when there are no samples.
 */
export function quantiles(bins: ArrayLike<number>, qs: readonly number[]): (number | null)[] {
  let total = 0;
  for (let i = 0; i < bins.length; i++) total += bins[i] as number;
  if (total === 0) return qs.map(() => null);
  return qs.map((q) => {
    const rank = Math.max(1, Math.ceil(q * total));
    let seen = 0;
    for (let i = 0; i < bins.length; i++) {
      seen += bins[i] as number;
      if (seen >= rank) return binValue(i);
    }
    return binValue(bins.length - 1);
  });
}
