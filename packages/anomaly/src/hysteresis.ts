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
 * Turns a score per sample into a label that does not flap: raised at once when the score reaches
 * `on`, lowered only after `clearAfter` samples in a row under `off`.
 */
export class Hysteresis {
  #raised = false;
  #quiet = 0;

  constructor(private readonly settings: HysteresisSettings) {}

  /** Whether the label is raised now. */
  get raised(): boolean {
    return this.#raised;
  }

  /** Feeds one score; returns the verdict for it. */
  next(score: number): Verdict {
    const { on, off, clearAfter } = this.settings;
    if (!this.#raised) {
      if (score < on) return { score, raised: false, change: undefined };
      this.#raised = true;
      this.#quiet = 0;
      return { score, raised: true, change: 'detected' };
    }
    this.#quiet = score < off ? this.#quiet + 1 : 0;
    if (this.#quiet < clearAfter) return { score, raised: true, change: undefined };
    this.#raised = false;
    return { score, raised: false, change: 'cleared' };
  }
}

/** The highest score: a departure too large to tell apart from larger ones. */
const TOP = 1 - 1e-9;

/** Maps a departure `d` (in estimated standard deviations, signed by direction) to a score in [0, 1). */
export function departureScore(d: number, threshold: number): number {
  if (!(d > 0)) return 0;
  return d === Number.POSITIVE_INFINITY ? TOP : Math.min(TOP, d / (d + threshold));
}
