/** The weights of a NAB scoring profile. */
export interface NabProfile {
  /** Reward of the earliest possible detection in a window. */
  readonly tp: number;
  /** Cost of a false positive far from any window. */
  readonly fp: number;
  /** Cost of a window with no detection. */
  readonly fn: number;
}

/** NAB's three application profiles (Lavin & Ahmad, 2015). */
export const nabProfiles = {
  standard: { tp: 1, fp: 0.11, fn: 1 },
  rewardLowFP: { tp: 1, fp: 0.22, fn: 1 },
  rewardLowFN: { tp: 1, fp: 0.055, fn: 2 },
} as const satisfies Record<string, NabProfile>;

/** One labelled series and a detector's detections on it, for {@link nabScore}. */
export interface NabInput {
  /** Samples in the series. */
  readonly length: number;
  /** Indices of the labelled anomalies; each gets a window centred on it. */
  readonly labels: readonly number[];
  /** Indices where the detector raised an alert. */
  readonly detections: readonly number[];
}

/** A NAB score of one series, or of several summed. */
export interface NabResult {
  /** The detector's raw score. */
  readonly raw: number;
  /** What a detector that never fires scores. */
  readonly none: number;
  /**
   * What a detector that fires once at the start of every window scores: at the first sample it may
   * fire at, which for a window that starts in the probation is the probation's end (a detection in
   * the probation counts for nothing, as in NAB, so such a window's best is a later one's reward).
   */
  readonly perfect: number;
  /** 100 × (raw − none) / (perfect − none): 0 for the null detector, 100 for a perfect one. */
  readonly normalised: number;
  /** Windows detected. */
  readonly truePositives: number;
  /** Detections outside every window. */
  readonly falsePositives: number;
  /** Windows missed. */
  readonly falseNegatives: number;
}

/** NAB's scaled sigmoid: 1 at a window's start (-1), 0 at its end, towards -1 well past it. */
function scaledSigmoid(position: number): number {
  if (position >= 3) return -1;
  return 2 / (1 + Math.exp(5 * position)) - 1;
}

/**
 * Scores detections the way the Numenta Anomaly Benchmark does: a window of 10% of the series,
 * shared among its labels, centred on each; the first detection in a window earns a reward that
 * falls with lateness (a scaled sigmoid); a detection outside every window costs `fp`, less
 * when it comes just after a window; a missed window costs `fn`; the first 15% of the series
 * (at most 750 samples) is a probation in which nothing counts. A window that starts in the
 * probation and ends after it is scored, from the probation's end: `perfect` fires there.
 */
export function nabScore(input: NabInput, profile: NabProfile = nabProfiles.standard): NabResult {
  const { length } = input;
  const labels = [...new Set(input.labels)].filter((i) => i >= 0 && i < length).sort((a, b) => a - b);
  const probation = Math.floor(Math.min(0.15 * length, 750));
  const width = labels.length === 0 ? 0 : Math.floor((0.1 * length) / labels.length);
  // A window that ends inside the probation is not scored, as in NAB.
  const windows = mergeWindows(
    labels.map((i) => [Math.max(0, i - Math.floor(width / 2)), Math.min(length - 1, i + Math.floor(width / 2))]),
  ).filter(([, right]) => right >= probation);
  const maxTp = scaledSigmoid(-1);
  // The reward of the first detection in window [left, right] at `i`: tp at its start, 0 past its end.
  const reward = ([left, right]: [number, number], i: number) =>
    (scaledSigmoid(-(right - i + 1) / (right - left + 1)) * profile.tp) / maxTp;
  const best = new Array<number>(windows.length).fill(Number.NaN);
  let raw = 0;
  let falsePositives = 0;
  const detections = [...new Set(input.detections)].filter((i) => i >= probation && i < length).sort((a, b) => a - b);
  for (const i of detections) {
    const w = windows.findIndex(([l, r]) => i >= l && i <= r);
    if (w >= 0) {
      if (Number.isNaN(best[w] as number)) best[w] = reward(windows[w] as [number, number], i);
      continue;
    }
    falsePositives++;
    let prev = -1;
    for (let k = 0; k < windows.length && (windows[k] as [number, number])[1] < i; k++) prev = k;
    if (prev < 0) raw -= profile.fp;
    else {
      const [l, r] = windows[prev] as [number, number];
      raw += scaledSigmoid(Math.abs(r - i) / Math.max(1, r - l)) * profile.fp;
    }
  }
  let truePositives = 0;
  for (const b of best) {
    if (Number.isNaN(b)) raw -= profile.fn;
    else {
      raw += b;
      truePositives++;
    }
  }
  const none = -profile.fn * windows.length;
  let perfect = 0;
  for (const window of windows) perfect += reward(window, Math.max(window[0], probation));
  return {
    raw,
    none,
    perfect,
    normalised: normalise(raw, none, perfect),
    truePositives,
    falsePositives,
    falseNegatives: windows.length - truePositives,
  };
}

/** Sums the scores of several series into one, normalised over all of them (as NAB reports a corpus). */
export function nabTotal(results: readonly NabResult[]): NabResult {
  let raw = 0;
  let none = 0;
  let perfect = 0;
  let truePositives = 0;
  let falsePositives = 0;
  let falseNegatives = 0;
  for (const r of results) {
    raw += r.raw;
    none += r.none;
    perfect += r.perfect;
    truePositives += r.truePositives;
    falsePositives += r.falsePositives;
    falseNegatives += r.falseNegatives;
  }
  return {
    raw,
    none,
    perfect,
    normalised: normalise(raw, none, perfect),
    truePositives,
    falsePositives,
    falseNegatives,
  };
}

function normalise(raw: number, none: number, perfect: number): number {
  return perfect === none ? 0 : (100 * (raw - none)) / (perfect - none);
}

function mergeWindows(windows: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const w of windows) {
    const last = out[out.length - 1];
    if (last !== undefined && w[0] <= last[1]) last[1] = Math.max(last[1], w[1]);
    else out.push([w[0], w[1]]);
  }
  return out;
}
