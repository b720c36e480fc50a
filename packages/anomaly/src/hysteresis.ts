import type { z } from 'zod';
import type { hysteresisSchema } from './options.js';

/** What a detector says of one sample. */
export interface Verdict {
  /** How anomalous the sample is, 0 (usual) to 1; 0.5 is the detector's threshold. */
  readonly score: number;
  /** The label after hysteresis: raised at `on`, held until the score stays under `off`. */
  readonly raised: boolean;
  /** `detected` on the sample that raised the label, `cleared` on the one that lowered it. */
  readonly change: 'detected' | 'cleared' | undefined;
}

/** Settings of a {@link Hysteresis}, parsed. */
export type HysteresisSettings = z.output<typeof hysteresisSchema>;

/**
 * Turns a score per sample into a label that does not flap: raised once the score has reached `on`
 * in `raiseAfter` of the last `2 * raiseAfter - 1` samples (at once with 1; three in a row, or a
 * fault that flaps bad, good, bad, count alike), lowered only after `clearAfter` samples in a row
 * under `off`.
 */
export class Hysteresis {
  #raised = false;
  /** Samples in a row under `off` while raised. */
  #run = 0;
  /** While lowered: the numbers of the latest samples at `on`, at most `raiseAfter`. */
  #hits: number[] = [];
  #n = 0;

  constructor(private readonly settings: HysteresisSettings) {}

  /** Whether the label is raised now. */
  get raised(): boolean {
    return this.#raised;
  }

  /** Feeds one score; returns the verdict for it. */
  next(score: number): Verdict {
    const { on, off, clearAfter, raiseAfter } = this.settings;
    const n = this.#n++;
    const hits = this.#hits;
    const raised = this.#raised;
    if (!raised) {
      if (score >= on) hits.push(n);
      while (hits.length > 0 && n - (hits[0] as number) >= 2 * raiseAfter - 1) hits.shift();
    } else this.#run = score < off ? this.#run + 1 : 0;
    if (raised ? this.#run < clearAfter : hits.length < raiseAfter) return { score, raised, change: undefined };
    this.#raised = !raised;
    this.#run = 0;
    hits.length = 0;
    return { score, raised: !raised, change: raised ? 'cleared' : 'detected' };
  }
}

/** The highest score: a departure too large to tell apart from larger ones. */
const TOP = 1 - 1e-9;

/** Maps a departure `d` (in estimated standard deviations, signed by direction) to a score in [0, 1). */
export function departureScore(d: number, threshold: number): number {
  if (!(d > 0)) return 0;
  return d === Number.POSITIVE_INFINITY ? TOP : Math.min(TOP, d / (d + threshold));
}
