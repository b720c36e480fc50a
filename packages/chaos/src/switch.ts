import { warnOnce } from '@holdfast/core';

/**
 * The process-wide kill switch of every injection. It lives on `globalThis` under a `Symbol.for`
 * key, so two installed copies of @holdfast/chaos obey the same switch.
 */
interface SwitchState {
  /** Set from HOLDFAST_CHAOS when the first copy loads. */
  envOff: boolean;
  /** Set by `chaosSwitch.off()`. */
  manualOff: boolean;
  /** Either of the above: what every injection reads per call. */
  off: boolean;
  /** Injected waits in progress (latency, delay, hang) and open fault proxies; `off()` ends or restores each at once. */
  waits?: Set<() => void>;
}

const key = Symbol.for('holdfast.chaos.switch.v0');
const holder = globalThis as { [key]?: SwitchState };

/** `off`, `0`, `false`, `no` (any case) in HOLDFAST_CHAOS turn every injection off. */
export function envSaysOff(value: string | undefined): boolean {
  return value !== undefined && /^(off|0|false|no|disabled?)$/i.test(value.trim());
}

function createState(): SwitchState {
  const envOff = envSaysOff(globalThis.process?.env?.HOLDFAST_CHAOS);
  return { envOff, manualOff: false, off: envOff };
}

/** @internal the shared state; injections read `state.off` on every call. */
export const state: SwitchState = (holder[key] ??= createState());

/**
 * @internal Registers the end of an injected wait in progress (or a proxy's restore):
 * `chaosSwitch.off()` calls `release`. Returns the function that unregisters it, to call once the
 * wait is over (the proxy closed).
 */
export function onSwitchOff(release: () => void): () => void {
  const waits = (state.waits ??= new Set());
  waits.add(release);
  return () => void waits.delete(release);
}

/**
 * Turns every injection of the process off, or lets them run again, at once. Each injection
 * still needs its own `enabled` to inject; this switch only ever takes injections away.
 * `HOLDFAST_CHAOS=off` in the environment holds the switch off whatever `on()` says.
 */
export const chaosSwitch = {
  /**
   * Every injection passes calls through untouched from now on; injected waits in progress end now,
   * and every fault proxy is restored (toxics off, listening) and puts on no fault while off.
   */
  off(): void {
    state.manualOff = true;
    state.off = true;
    for (const release of [...(state.waits ?? [])]) release();
  },
  /** Injections that are enabled inject again (unless HOLDFAST_CHAOS says off). */
  on(): void {
    state.manualOff = false;
    state.off = state.envOff;
  },
  /** Whether injections may run: neither `off()` nor HOLDFAST_CHAOS holds them. */
  get isOn(): boolean {
    return !state.off;
  },
};

const toldFlags = new WeakSet<object>();

/**
 * @internal Reads an `enabled` flag: on only for `true`. One that throws, or answers anything else,
 * is off: a promise (an async flag client) and the string "false" are truthy, and read so they
 * turned chaos on whatever the flag said. Such an answer is told once per `owner`.
 */
export function flagOn(flag: () => boolean, name: string, owner: object): boolean {
  try {
    const on: unknown = flag();
    if (typeof on === 'boolean') return on;
    const then = (on as PromiseLike<unknown> | null)?.then;
    if (typeof then === 'function') then.call(on, undefined, () => {}); // its rejection is no unhandled one
    const got = typeof then === 'function' ? 'a promise' : typeof on === 'string' ? JSON.stringify(on) : typeof on;
    const text = `${name}: its enabled flag answered ${got}, not true or false`;
    warnOnce(toldFlags, owner, 'HOLDFAST_PREDICATE_ERROR', text, 'read as off');
  } catch {
    // A flag that throws (its service down) reads as off: chaos never breaks a call.
  }
  return false;
}
