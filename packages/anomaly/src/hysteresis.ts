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
 * for `raiseAfter` samples in a row (at once with 1), lowered only after `clearAfter` samples in a
 * row under `off`.
 */
export class Hysteresis {
  #raised = false;
  /** Samples in a row at `on` while lowered, under `off` while raised. */
  #run = 0;

  constructor(private readonly settings: HysteresisSettings) {}

  /** Whether the label is raised now. */
  get raised(): boolean {
    return this.#raised;
  }

  /** Feeds one score; returns the verdict for it. */
  next(score: number): Verdict {
    const { on, off, clearAfter, raiseAfter } = this.settings;
    const raised = this.#raised;
    this.#run = (raised ? score < off : score >= on) ? this.#run + 1 : 0;
    if (this.#run < (raised ? clearAfter : raiseAfter)) return { score, raised, change: undefined };
    this.#raised = !raised;
    this.#run = 0;
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
