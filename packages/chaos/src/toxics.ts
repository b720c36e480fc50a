import { durationOption } from '@holdfast/core';
import { z } from 'zod';

/** Which way a toxic acts: client to server (`upstream`), server to client (`downstream`), or both. */
export type Direction = 'upstream' | 'downstream' | 'both';

const direction = z.enum(['upstream', 'downstream', 'both']);
const ms = durationOption;
const bytes = z.number().int().positive();

const common = {
  /** A name to remove it by. @default the type and a counter, e.g. `latency-1` */
  name: z.string().min(1).max(200).optional(),
  /** Which way it acts. @default 'downstream' (`both` for `blackhole` and `reset`) */
  direction: direction.optional(),
  /**
   * Only this connection (an id from `proxy.connections()`, open now): taken off when it closes.
   * @default every connection, new ones too
   */
  connection: z.number().int().nonnegative().optional(),
};

/** Validates a toxic given to `proxy.add()`; {@link Toxic} is inferred from it. */
export const toxicSchema = z.discriminatedUnion('type', [
  /** Delays each chunk by `latency` ms, plus or minus up to `jitter` ms. Order is kept. */
  z.strictObject({ type: z.literal('latency'), latency: ms, jitter: ms.default(0), ...common }),
  /** Lets through at most `rate` bytes per second. */
  z.strictObject({ type: z.literal('bandwidth'), rate: bytes, ...common }),
  /**
   * Resets (TCP RST) each matching connection. On `both` (the default): `after` ms after it opens
   * or the toxic is added. One way (`upstream` or `downstream`), as Toxiproxy's `reset_peer`:
   * `after` ms after the first chunk that way, which is not forwarded (downstream, the request is
   * served and its reply lost to the reset).
   */
  z.strictObject({ type: z.literal('reset'), after: ms.default(0), ...common }),
  /** Holds every byte: nothing gets through until the toxic is removed (a frozen peer). */
  z.strictObject({ type: z.literal('blackhole'), ...common }),
  /**
   * Swallows the next `bytes` bytes, or the next `chunks` chunks (a lost reply), across the
   * matching connections, then removes itself. @default chunks: 1
   */
  z
    .strictObject({ type: z.literal('drop'), bytes: bytes.optional(), chunks: bytes.optional(), ...common })
    .refine((t) => t.bytes === undefined || t.chunks === undefined, {
      error: 'bytes and chunks: give one of them, not both',
      path: ['chunks'],
    }),
  /** Cuts each chunk into pieces of `size` bytes, `delay` ms apart. */
  z.strictObject({ type: z.literal('slicer'), size: bytes, delay: ms.default(0), ...common }),
  /** Closes the connection once `bytes` bytes have gone through (since the toxic was added). */
  z.strictObject({ type: z.literal('limit'), bytes: z.number().int().nonnegative(), ...common }),
]);

/** A fault the proxy applies to the bytes it forwards. See {@link toxicSchema} for each type. */
export type Toxic = z.input<typeof toxicSchema>;

/** The type of a toxic: `latency`, `bandwidth`, `reset`, `blackhole`, `drop`, `slicer` or `limit`. */
export type ToxicType = Toxic['type'];

/** A toxic as the proxy holds it: validated, named, with its direction decided. */
export type ActiveToxic = z.output<typeof toxicSchema> & { readonly name: string; readonly direction: Direction };

/** Whether `toxic` acts on connection `id` in direction `way`. */
export function matches(toxic: ActiveToxic, id: number, way: 'upstream' | 'downstream'): boolean {
  if (toxic.connection !== undefined && toxic.connection !== id) return false;
  return toxic.direction === 'both' || toxic.direction === way;
}
