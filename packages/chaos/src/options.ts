import { busOption, fnOption, nameOption } from '@holdfast/core';
import { z } from 'zod';

/** A source of numbers in [0, 1); pass a seeded one to make every draw repeatable. */
export type RandomSource = () => number;

/** The `random` option every injector takes. @default Math.random */
export const randomOption = fnOption<RandomSource>('must be a function returning a number in [0, 1)');

const port = z.number().int().min(0).max(65_535);

/** Validates the options of `faultProxy()`; {@link FaultProxyOptions} is inferred from it. */
export const faultProxyOptionsSchema = z.strictObject({
  /** The server the proxy forwards to. */
  target: z.strictObject({ host: z.string().min(1).default('127.0.0.1'), port: port.min(1) }),
  /** The address it listens on. @default '127.0.0.1' */
  host: z.string().min(1).default('127.0.0.1'),
  /** The port it listens on. @default 0 (a free port) */
  port: port.default(0),
  /** Shown as `source` on its `chaos.toxic` events. @default 'faultProxy' */
  name: nameOption.default('faultProxy'),
  /** The bus its events go to. @default the global bus */
  bus: busOption.optional(),
  /** Draws the jitter of `latency` toxics. @default Math.random */
  random: randomOption.default(() => Math.random),
});

/** Options of `faultProxy()`. */
export type FaultProxyOptions = z.input<typeof faultProxyOptionsSchema>;
