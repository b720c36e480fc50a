import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { busOption, type CallContext, clockOption, durationOption, fnOption, nameOption } from '@holdfast/core';
import { z } from 'zod';

/** A source of numbers in [0, 1); pass `seededRandom(seed)` from `@holdfast/core` to make every draw repeatable. */
export type RandomSource = () => number;

/** The `random` option every injector takes. @default Math.random */
export const randomOption = fnOption<RandomSource>('must be a function returning a number in [0, 1)');

const port = z.number().int().min(0).max(65_535);

/**
 * A host name or an IP literal: not a URL nor `user:password@host` (whose password would then
 * show in every event and snapshot), nor `host:port`.
 */
const host = z
  .string()
  .min(1)
  .max(253)
  .refine((h) => isIP(h) !== 0 || /^[\w-]+(?:\.[\w-]+)*\.?$/.test(h), {
    error: 'must be a host name or an IP address: no scheme, credentials nor port',
  });

/** The addresses a host stands for: `localhost` either loopback, an IPv4-mapped IPv6 address its IPv4 one. */
function addresses(host: string): string[] {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h === 'localhost') return ['127.0.0.1', '::1'];
  return [h.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '')];
}

/**
 * An address of this machine (of that family, IPv4 `4` or IPv6 `6`, if one is given): a loopback or
 * wildcard one, or one of its interfaces'.
 */
function local(address: string, family?: number): boolean {
  if (family && isIP(address) !== family) return false;
  if (/^(?:127\.|0\.0\.0\.0$|::1?$)/.test(address)) return true;
  try {
    return Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address.toLowerCase() === address));
  } catch {
    return false; // No interfaces to read (a sandbox): only loopback is known to be local.
  }
}

/** Every address: `0.0.0.0` on IPv4, `::` on both families (Node's listen() is dual-stack). */
const every = (host: string) => host === '0.0.0.0' || host === '::';

/**
 * @internal Whether `target` is the proxy's own address, `host:port`: one port, and one address
 * (`localhost` either loopback one), or the proxy on every address and the target an address of
 * this machine, or the target every address (a connection to this machine, on its family) and the
 * proxy on one of this machine. Each client would make it connect to itself, without end. Two
 * loopback addresses (`127.0.0.2` and `127.0.0.1`, `::1` and `127.0.0.1`) are two sockets.
 */
export function ownAddress(host: string, port: number, target: { host: string; port: number }): boolean {
  if (port !== target.port) return false;
  const on = addresses(host);
  return addresses(target.host).some((to) =>
    on.some((a) => to === a || (every(a) && local(to, a === '::' ? 0 : 4)) || (every(to) && local(a, isIP(to)))),
  );
}

/** @internal What a target that is the proxy's own address is told. */
export const ownAddressIssue = { path: 'target', message: "is the proxy's own address: it would connect to itself" };

/** Validates the options of `faultProxy()`; {@link FaultProxyOptions} is inferred from it. */
export const faultProxyOptionsSchema = z
  .strictObject({
    /** The server the proxy forwards to. */
    target: z.strictObject({ host: host.default('127.0.0.1'), port: port.min(1) }),
    /** The address it listens on. @default '127.0.0.1' */
    host: host.default('127.0.0.1'),
    /** The port it listens on. @default 0 (a free port) */
    port: port.default(0),
    /** Shown as `source` on its `chaos.toxic` events. @default 'faultProxy' */
    name: nameOption.default('faultProxy'),
    /** The bus its events go to. @default the global bus */
    bus: busOption.optional(),
    /** Draws the jitter of `latency` toxics; pass `seededRandom(seed)` for repeatable runs. @default Math.random */
    random: randomOption.default(() => Math.random),
  })
  .refine((o) => !ownAddress(o.host, o.port, o.target), {
    error: ownAddressIssue.message,
    path: [ownAddressIssue.path],
  });

/** Options of `faultProxy()`. */
export type FaultProxyOptions = z.input<typeof faultProxyOptionsSchema>;

/** Whether an injection is on: a boolean, or a function read on every call. */
export type EnabledSwitch = boolean | (() => boolean);

/** Options every injection policy takes. */
const injectionCommon = {
  /**
   * The share of calls (0 to 1) that get the injection, drawn from `random` per call.
   * @default 1
   */
  rate: z.number().min(0).max(1).default(1),
  /**
   * Whether it injects at all: `true`, or a function read on every call (a feature flag, a
   * header, a drill in progress). Off unless enabled on purpose: only `true` turns it on (a promise
   * or the string "false" is off, told once). @default false
   */
  enabled: z
    .union([z.boolean(), fnOption<() => boolean>('must be a boolean or a function returning one')])
    .default(false),
  /** Draws whether a call is picked; pass `seededRandom(seed)` for repeatable runs. @default Math.random */
  random: randomOption.optional(),
  /** The bus its `chaos.inject` events go to. @default the global bus */
  bus: busOption.optional(),
};

/** What an injection's `latency` may be: fixed ms, a uniform range, or a function per call. */
export type LatencyInput = number | { readonly min: number; readonly max: number } | ((random: RandomSource) => number);

/** Validates the options of `injectLatency()`. */
export const injectLatencyOptionsSchema = z.strictObject({
  ...injectionCommon,
  /** The delay before the call runs: ms, `{ min, max }` (uniform), or `(random) => ms`. */
  latency: z.union([
    durationOption,
    z.strictObject({ min: durationOption, max: durationOption }).refine((r) => r.max >= r.min, {
      error: 'max must be >= min',
    }),
    fnOption<(random: RandomSource) => number>(),
  ]),
  /** Shown as `source` on its events. @default 'injectLatency' */
  name: nameOption.default('injectLatency'),
  /** @default the real clock */
  clock: clockOption.optional(),
});

/** Options of `injectLatency()`. */
export type InjectLatencyOptions = z.input<typeof injectLatencyOptionsSchema>;

/** Validates the options of `injectFault()`. */
export const injectFaultOptionsSchema = z.strictObject({
  ...injectionCommon,
  /**
   * What to throw: a value, or a function that makes one per call.
   * @default an `InjectedFaultError` (code `E_INJECTED_FAULT`)
   */
  fault: z.unknown().optional(),
  /** Shown as `source` on its events. @default 'injectFault' */
  name: nameOption.default('injectFault'),
});

/** Options of `injectFault()`. */
export type InjectFaultOptions = z.input<typeof injectFaultOptionsSchema>;

/** Validates the options of `injectOutcome()`. */
export const injectOutcomeOptionsSchema = z.strictObject({
  ...injectionCommon,
  /** Makes the result returned instead of running the call, e.g. `() => new Response(null, { status: 503 })`. */
  outcome: fnOption<(ctx: CallContext) => unknown>(),
  /** Shown as `source` on its events. @default 'injectOutcome' */
  name: nameOption.default('injectOutcome'),
});

/** Options of `injectOutcome()`. */
export type InjectOutcomeOptions = z.input<typeof injectOutcomeOptionsSchema>;

/** Validates the options of `injectBehavior()`. */
export const injectBehaviorOptionsSchema = z.strictObject({
  ...injectionCommon,
  /** A side effect run (and awaited) before the call: kill a connection, fill a cache, flip a flag. */
  behavior: fnOption<(ctx: CallContext) => unknown>(),
  /** Shown as `source` on its events. @default 'injectBehavior' */
  name: nameOption.default('injectBehavior'),
});

/** Options of `injectBehavior()`. */
export type InjectBehaviorOptions = z.input<typeof injectBehaviorOptionsSchema>;
