import {
  busOption,
  durationOption,
  fnOption,
  bus as globalBus,
  nameOption,
  parseOptions,
  shieldBus,
} from '@holdfast/core';
import { z } from 'zod';
import { DrillFailedError, unjudged } from './errors.js';
import { FaultScope, faultScope } from './scope.js';

/** One request of a drill's load. Resolving (to anything but `false`) is a success. */
export type DrillRequest = (index: number, signal: AbortSignal) => unknown;

/**
 * Times and counts one request of a load you drive yourself ({@link DrillDriver}), and hands back
 * what `request` resolved to (or rejects with what it threw). It is a success when `request`
 * resolves and `ok(value)` holds (default: the value is not `false`). A request that fails once
 * the load's signal has aborted is counted `cut`, not failed: the run's end cut it off.
 */
export type DrillSend = <T>(request: () => Promise<T>, ok?: (value: T) => boolean) => Promise<T>;

/**
 * A load you drive yourself, such as a fleet of paced clients that back off when refused (a closed
 * model: each waits for its answer). Send every request through `send`; stop sending once `signal`
 * aborts (at the load's `duration`) and resolve once your requests have settled.
 */
export type DrillDriver = (send: DrillSend, signal: AbortSignal) => Promise<void>;

/** Validates the options of {@link drill}; {@link DrillOptions} is inferred from it. */
export const drillOptionsSchema = z
  .strictObject({
    /** Names the drill in its report and its `chaos.drill` events. @default 'drill' */
    name: nameOption.default('drill'),
    /**
     * The load driven while the steps play, bounded in time: either `request` at a `rate` (bounded in
     * concurrency too), or your own `drive` (see {@link DrillDriver}).
     */
    load: z
      .strictObject({
        /** Sends one request; resolves for a success, throws or resolves `false` for a failure. */
        request: fnOption<DrillRequest>().optional(),
        /** Requests started per second (an open model: they do not wait for each other). */
        rate: z.number().finite().positive().max(10_000).optional(),
        /** Drives the load itself instead of `request` and `rate`: a fleet of clients, say. */
        drive: fnOption<DrillDriver>().optional(),
        /** How long the load runs, in ms. The drill ends once the last request settles. */
        duration: z.number().finite().positive().max(600_000),
        /** Requests in flight at most; a request due while this many are out is counted `skipped`. @default 64 */
        concurrency: z.number().int().min(1).max(10_000).default(64),
        /** A request still out after this many ms is aborted and counted failed. @default 5_000 */
        timeout: z.number().finite().positive().max(600_000).default(5_000),
      })
      .superRefine((load, ctx) => {
        const own = load.drive !== undefined;
        if (own && (load.request !== undefined || load.rate !== undefined)) {
          ctx.addIssue({
            code: 'custom',
            path: ['drive'],
            message: 'give either drive, or request and rate, not both',
          });
        }
        if (!own && load.request === undefined)
          ctx.addIssue({ code: 'custom', path: ['request'], message: 'required' });
        if (!own && load.rate === undefined) ctx.addIssue({ code: 'custom', path: ['rate'], message: 'required' });
      }),
    /** The script: each step runs at `at` ms after the start (in order; a slow step delays the next). */
    steps: z
      .array(
        z.strictObject({
          /** When, in ms after the start. */
          at: durationOption,
          /** What the report calls it, e.g. `kill payments-2`. */
          name: z.string().min(1).max(200),
          /** Does it: kill, freeze, inject, restore. Awaited; a throw is recorded, not raised. */
          run: fnOption<() => unknown>(),
        }),
      )
      .default([]),
    /** What must hold at the end. Each is optional; a drill with none always passes. */
    objectives: z
      .strictObject({
        /** `load.failedShare` at most (0 to 1): requests failed or skipped over those planned. */
        maxFailedShare: z.number().min(0).max(1).optional(),
        /** The 99th percentile latency of all requests, at most, in ms. */
        maxP99: durationOption.optional(),
        /** Duplicate executions (what `duplicates()` counts), at most. */
        maxDuplicates: z.number().int().nonnegative().optional(),
        /**
         * Time to recover, at most, in ms: from the first failed request to the end of the last one.
         * A service that never recovered (no request succeeded after the last failure) misses it.
         */
        maxRecovery: durationOption.optional(),
        /** Failed / sent among the requests started in the final window (see `finalWindow`), at most (0 to 1). */
        maxFinalFailedShare: z.number().min(0).max(1).optional(),
      })
      .default({}),
    /**
     * The final window, in ms before the load's end: requests started in it show whether the service
     * recovered once the faults were over. @default from the last step's `at` to the end
     */
    finalWindow: durationOption.optional(),
    /**
     * Counts duplicate executions once the load has settled (e.g. charges applied twice): a
     * non-negative integer within `load.timeout`, else not counted (`maxDuplicates` missed).
     */
    duplicates: fnOption<() => number | Promise<number>>().optional(),
    /** Where the readable report goes; `false` for nowhere. @default console.log */
    print: z.union([z.literal(false), fnOption<(report: string) => void>()]).optional(),
    /** The bus its `chaos.drill` events go to. @default the global bus */
    bus: busOption.optional(),
    /**
     * Ends the drill early: the load stops, no further step runs, the faults its steps put on are
     * taken off, and the drill rejects with the signal's reason.
     */
    signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'must be an AbortSignal').optional(),
  })
  .refine((o) => o.objectives.maxDuplicates === undefined || o.duplicates !== undefined, {
    // Nothing counted would read as none: the objective would pass on no evidence.
    error: 'needs the duplicates option, a counter of duplicate executions',
    path: ['objectives', 'maxDuplicates'],
  });

/** Options of {@link drill}. */
export type DrillOptions = z.input<typeof drillOptionsSchema>;

/** One objective's verdict. */
export interface ObjectiveResult {
  /** Which objective. */
  readonly objective: 'maxFailedShare' | 'maxP99' | 'maxDuplicates' | 'maxRecovery' | 'maxFinalFailedShare';
  /** The limit it was given. */
  readonly limit: number;
  /**
   * What the drill measured; `NaN` (missed) when there was nothing to measure: no request sent (or
   * none in the final window), duplicates not counted.
   */
  readonly actual: number;
  /** Whether `actual <= limit` (for `maxRecovery`, also whether the service recovered at all). */
  readonly passed: boolean;
  /** How far past its limit the actual figure went; 0 if it held. */
  readonly by: number;
}

/** The load a drill drove, as it went. Latencies in ms, over every request sent. */
export interface DrillLoad {
  /** Requests sent. */
  readonly sent: number;
  /** Requests that resolved (to anything but `false`). */
  readonly succeeded: number;
  /** Requests that threw, resolved `false`, or ran past the load's `timeout`. */
  readonly failed: number;
  /** Due while `concurrency` requests were out, so not sent. */
  readonly skipped: number;
  /** Failed once a driven load's signal had aborted: cut off by the end of the run, not counted in `sent`. */
  readonly cut: number;
  /**
   * True when a driven load had not settled by its `duration` + `timeout`: the drill stopped
   * waiting for it and does not pass.
   */
  readonly hung?: boolean;
  /**
   * `(failed + skipped) / (sent + skipped)`, 0 to 1: the share of the planned requests that did
   * not succeed. A request the load could not send counts as failed (else a service so slow that
   * the load cannot keep up would pass: coordinated omission).
   */
  readonly failedShare: number;
  /** Median latency. */
  readonly p50: number;
  /** 90th percentile latency. */
  readonly p90: number;
  /** 99th percentile latency. */
  readonly p99: number;
  /** The slowest request. */
  readonly max: number;
}

/** One step as it was played. */
export interface DrillStep {
  /** The step's name. */
  readonly name: string;
  /** When it was due, ms after the start. */
  readonly at: number;
  /** When it ran, ms after the start. */
  readonly ranAt: number;
  /** When it finished (its promise settled), ms after the start. */
  readonly doneAt: number;
  /** What it threw, if it threw, or why it was given up on. */
  readonly error?: string;
  /**
   * True when it had not settled by the end of the load (or, for a step due after it, within the
   * load's `timeout`): the drill stops waiting for it and does not pass.
   */
  readonly hung?: boolean;
}

/** What a drill found: plain JSON, for a CI job to gate on. */
export interface DrillResult {
  /** The drill's name. */
  readonly name: string;
  /** Whether every objective held and no step hung. */
  readonly passed: boolean;
  /** When it started, ISO 8601. */
  readonly startedAt: string;
  /** From the start to the last request settled, in ms. */
  readonly duration: number;
  /** What the load saw. */
  readonly load: DrillLoad;
  /** Failures in time, ms after the start; `firstFailure` and `lastFailure` are null when nothing failed. */
  readonly recovery: {
    /** When the first failed request started. */
    readonly firstFailure: number | null;
    /** When the last failed request ended. */
    readonly lastFailure: number | null;
    /** From the first failed request's start to the last one's end: the time to recover. */
    readonly window: number;
    /** False when requests failed and none succeeded after the last failure began (never recovered). */
    readonly recovered: boolean;
  };
  /** The requests started in the final window: whether the service recovered once the faults were over. */
  readonly final: {
    /** Where the window starts, ms after the start. */
    readonly from: number;
    /** Requests started in it. */
    readonly sent: number;
    /** Of those, the ones that failed. */
    readonly failed: number;
    /** `failed / sent`, 0 to 1; 0 when none were sent. */
    readonly failedShare: number;
  };
  /** Requests by when they started, in buckets of `bucket` ms: what failed when. */
  readonly timeline: {
    /** Bucket width, ms. */
    readonly bucket: number;
    /** Requests sent in each bucket. */
    readonly sent: readonly number[];
    /** Of those, the ones that failed. */
    readonly failed: readonly number[];
  };
  /** What `duplicates()` counted; null without it, or when it threw (see `duplicatesError`). */
  readonly duplicates: number | null;
  /** The message of what `duplicates()` threw; `maxDuplicates` is then missed (actual `NaN`). */
  readonly duplicatesError?: string;
  /** Each step as it was played, in order. */
  readonly steps: readonly DrillStep[];
  /** Each objective given, with its verdict. */
  readonly objectives: readonly ObjectiveResult[];
  /** The readable report, as printed. */
  readonly report: string;
}

/**
 * Plays a script of timed steps against a running service (kill or freeze an endpoint, inject
 * faults, restore) while driving a bounded load, then checks the objectives. Returns a JSON
 * result and prints a report that names each objective missed and by how much.
 *
 * @example
 * const result = await drill({
 *   load: { request: () => fetch(`${url}/orders`).then((r) => r.ok), rate: 100, duration: 3_000 },
 *   steps: [
 *     { at: 1_000, name: 'kill payments-2', run: () => proxy.kill() },
 *     { at: 2_000, name: 'restore payments-2', run: () => proxy.restore() },
 *   ],
 *   objectives: { maxFailedShare: 0.01, maxP99: 500 },
 * });
 * assertDrill(result); // throws DrillFailedError when an objective failed
 */
export async function drill(options: DrillOptions): Promise<DrillResult> {
  const o = parseOptions('drill', drillOptionsSchema, options);
  o.signal?.throwIfAborted();
  const bus = shieldBus(o.bus ?? globalBus, o.name);
  const emit = (phase: 'start' | 'step' | 'end', step?: string, passed?: boolean) => {
    if (bus.wants('chaos.drill')) {
      bus.emit({ type: 'chaos.drill', source: o.name, time: Date.now(), phase, step, passed });
    }
  };
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const since = () => performance.now() - t0;
  // The caller's abort ends the load and the script at once; a listener of our own, taken off at
  // the end, so a long-lived signal (a process's shutdown) does not collect one per drill.
  const stop = new AbortController();
  const abort = () => stop.abort(o.signal?.reason);
  o.signal?.addEventListener('abort', abort, { once: true });
  // Every fault the steps put on a fault proxy is taken off at the end, however the drill ends:
  // a restore step that threw or never ran, an abort, a load that threw, a step still hung.
  const scope = new FaultScope();
  emit('start');

  let loaded: PromiseSettledResult<Samples>;
  let playedOut: PromiseSettledResult<DrillStep[]>;
  try {
    const load = o.load.drive
      ? driveLoad(o.load.drive, o.load.duration, o.load.timeout, since, stop.signal)
      : runLoad(o.load, since, stop.signal);
    const steps = runSteps(o.steps, since, (name) => emit('step', name), o.load, stop.signal, scope);
    // A load that throws still lets the script play out (its restore step too): no step may run
    // after the drill has settled.
    [loaded, playedOut] = await Promise.allSettled([load, steps]);
  } finally {
    o.signal?.removeEventListener('abort', abort);
    await scope.restore();
  }
  if (stop.signal.aborted) throw stop.signal.reason;
  if (loaded.status === 'rejected') throw loaded.reason;
  if (playedOut.status === 'rejected') throw playedOut.reason;
  const samples = loaded.value;
  const played = playedOut.value;
  const duration = since();
  // A counter that throws (its database gone in the drill) loses the count, not the drill's result.
  let duplicates: number | null = null;
  let duplicatesError: string | undefined;
  if (o.duplicates) {
    try {
      // A counter whose database is frozen must not hold the drill: it gets load.timeout.
      const n: unknown = await within(o.load.timeout, o.duplicates as () => Promise<unknown>);
      // Redis GET's '0', a negative difference, NaN: nothing counted, never a pass.
      if (!Number.isSafeInteger(n) || (n as number) < 0) throw new Error(`answered ${String(n)}, not a count`);
      duplicates = n as number;
    } catch (error) {
      duplicatesError = error instanceof Error ? error.message : String(error);
    }
  }

  const latencies = samples.requests.map((r) => r.end - r.start).sort((a, b) => a - b);
  const failures = samples.requests.filter((r) => !r.ok);
  const sent = samples.requests.length;
  // Loops, not Math.min(...spread): a long drill against a service that stays down fails some
  // 130,000 requests or more, past what a spread call can take (RangeError).
  let firstFailure: number | null = null;
  let lastFailure: number | null = null;
  for (const f of failures) {
    if (firstFailure === null || f.start < firstFailure) firstFailure = f.start;
    if (lastFailure === null || f.end > lastFailure) lastFailure = f.end;
  }
  const loadResult = {
    sent,
    succeeded: sent - failures.length,
    failed: failures.length,
    skipped: samples.skipped,
    cut: samples.cut,
    ...(samples.hung ? { hung: true } : {}),
    failedShare: sent + samples.skipped === 0 ? 0 : (failures.length + samples.skipped) / (sent + samples.skipped),
    p50: percentile(latencies, 0.5),
    p90: percentile(latencies, 0.9),
    p99: percentile(latencies, 0.99),
    max: latencies.at(-1) ?? 0,
  };
  const recovery = {
    firstFailure: round(firstFailure),
    lastFailure: round(lastFailure),
    window: firstFailure === null || lastFailure === null ? 0 : round(lastFailure - firstFailure),
    recovered: recoveredBy(samples.requests, failures),
  };
  const lastStep = Math.max(0, ...o.steps.map((step) => step.at));
  const from = round(o.finalWindow === undefined ? lastStep : Math.max(0, o.load.duration - o.finalWindow));
  const late = samples.requests.filter((r) => r.start >= from);
  const lateFailed = late.filter((r) => !r.ok).length;
  const final = {
    from,
    sent: late.length,
    failed: lateFailed,
    failedShare: late.length === 0 ? 0 : lateFailed / late.length,
  };
  // Judged on no request (a driver that never sent, an empty final window), an objective is
  // missed, never passed on zero of zero; so is one whose duplicates were not counted.
  const none = sent === 0 ? Number.NaN : 0;
  const actuals = {
    maxFailedShare: loadResult.failedShare + none,
    maxP99: loadResult.p99 + none,
    maxDuplicates: duplicates ?? Number.NaN,
    maxRecovery: recovery.window + none,
    maxFinalFailedShare: late.length === 0 ? Number.NaN : final.failedShare,
  };
  const bucket = Math.max(100, Math.ceil(o.load.duration / 20 / 100) * 100);
  const slots = Math.ceil(duration / bucket);
  const timeline = { bucket, sent: new Array<number>(slots).fill(0), failed: new Array<number>(slots).fill(0) };
  for (const r of samples.requests) {
    const at = Math.min(slots - 1, Math.floor(r.start / bucket));
    timeline.sent[at] = (timeline.sent[at] ?? 0) + 1;
    if (!r.ok) timeline.failed[at] = (timeline.failed[at] ?? 0) + 1;
  }
  const objectives: ObjectiveResult[] = [];
  for (const key of ['maxFailedShare', 'maxP99', 'maxDuplicates', 'maxRecovery', 'maxFinalFailedShare'] as const) {
    const limit = o.objectives[key];
    if (limit === undefined) continue;
    const actual = actuals[key];
    const held = actual <= limit && (key !== 'maxRecovery' || recovery.recovered);
    objectives.push({
      objective: key,
      limit,
      actual,
      passed: held,
      by: Number.isNaN(actual) ? actual : Math.max(0, actual - limit),
    });
  }
  const passed =
    objectives.every((r) => r.passed) && played.every((step) => step.hung !== true) && samples.hung !== true;
  const partial = {
    name: o.name,
    passed,
    startedAt,
    duration: round(duration),
    load: {
      ...loadResult,
      p50: round(loadResult.p50),
      p90: round(loadResult.p90),
      p99: round(loadResult.p99),
      max: round(loadResult.max),
    },
    recovery,
    final,
    timeline,
    duplicates,
    ...(duplicatesError === undefined ? {} : { duplicatesError }),
    steps: played,
    objectives,
  };
  const result: DrillResult = { ...partial, report: formatReport(partial) };
  emit('end', undefined, passed);
  if (o.print !== false) {
    try {
      (o.print ?? console.log)(result.report);
    } catch {
      // Where the report goes is not the drill: its result is returned, report included.
    }
  }
  return result;
}

/** Throws {@link DrillFailedError} (code `E_DRILL_FAILED`) when a drill's objectives did not all hold. */
export function assertDrill(result: DrillResult): void {
  if (!result.passed) throw new DrillFailedError(result);
}

interface Sample {
  readonly start: number;
  readonly end: number;
  readonly ok: boolean;
}

interface Samples {
  readonly requests: Sample[];
  readonly skipped: number;
  readonly cut: number;
  readonly hung?: boolean;
}

async function driveLoad(
  drive: DrillDriver,
  duration: number,
  timeout: number,
  since: () => number,
  stop: AbortSignal,
): Promise<Samples> {
  const requests: Sample[] = [];
  const ends = new AbortController();
  const end = () => ends.abort(stop.reason);
  stop.addEventListener('abort', end, { once: true });
  const timer = setTimeout(() => ends.abort(new DOMException('the load ended', 'TimeoutError')), duration);
  const signal = ends.signal;
  let cut = 0;
  const send: DrillSend = async (request, ok = (value) => value !== false) => {
    const start = since();
    const record = (passed: boolean) => {
      if (!passed && signal.aborted) cut++;
      else requests.push({ start, end: since(), ok: passed });
    };
    try {
      // A request still out after the load's timeout fails (TimeoutError), as in a rate load.
      const value = await within(timeout, () => request());
      record(ok(value));
      return value;
    } catch (error) {
      record(false);
      throw error;
    }
  };
  // The driver must settle by the load's end plus one timeout; past that the drill stops waiting.
  // Aborted by the caller, the drill waits for it no more.
  const settled = await within(duration + timeout, () => drive(send, signal), HUNG, stop)
    .then(
      () => true,
      (error: unknown) => {
        if (error === HUNG) return false;
        throw error;
      },
    )
    .finally(() => {
      clearTimeout(timer);
      stop.removeEventListener('abort', end);
    });
  return { requests, skipped: 0, cut, ...(settled ? {} : { hung: true }) };
}

/**
 * `run()`'s outcome, or a rejection with `late` once `ms` have passed (a TimeoutError by default),
 * or with `stop`'s reason once it aborts.
 */
function within<T>(ms: number, run: () => Promise<T>, late: unknown = undefined, stop?: AbortSignal): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let off = () => {};
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late ?? new DOMException(`no answer within ${ms} ms`, 'TimeoutError')), ms);
    if (stop === undefined) return;
    const aborted = () => reject(stop.reason);
    stop.addEventListener('abort', aborted, { once: true });
    off = () => stop.removeEventListener('abort', aborted);
  });
  return Promise.race([Promise.resolve().then(run), expired]).finally(() => {
    clearTimeout(timer);
    off();
  });
}

/** Resolves after `ms`, or at once when `stop` aborts. */
function sleep(ms: number, stop: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (stop.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      stop.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    stop.addEventListener('abort', done, { once: true });
  });
}

async function runLoad(
  load: z.output<typeof drillOptionsSchema>['load'],
  since: () => number,
  stop: AbortSignal,
): Promise<Samples> {
  const { request, rate } = load as { request: DrillRequest; rate: number }; // the schema requires both without drive
  const requests: Sample[] = [];
  const inFlight = new Set<Promise<void>>();
  // One listener on the drill's signal ends every request in flight: one each would pile up past
  // Node's limit of 10 (a MaxListenersExceededWarning at rate 50 against a 200 ms service).
  const live = new Set<(reason: unknown) => void>();
  const endAll = () => {
    for (const end of live) end(stop.reason);
  };
  stop.addEventListener('abort', endAll, { once: true });
  let due = 0;
  let skipped = 0;
  const send = (index: number) => {
    const start = since();
    // Aborted after the load's timeout, or at once when the caller aborts the drill: its signal
    // aborts and it fails then, whether or not `request` heeds the signal.
    const ends = new AbortController();
    let end: (reason: unknown) => void = () => {};
    const cut = new Promise<never>((_, reject) => {
      end = (reason) => {
        reject(reason); // first: a request that resolves as its signal aborts is still cut
        ends.abort(reason);
      };
    });
    live.add(end);
    const timer = setTimeout(() => end(new DOMException('the request timed out', 'TimeoutError')), load.timeout);
    const settled = Promise.race([Promise.resolve().then(() => request(index, ends.signal)), cut]).then(
      (value) => value !== false,
      () => false,
    );
    const done = settled.then((ok) => {
      clearTimeout(timer);
      live.delete(end);
      requests.push({ start, end: since(), ok });
      inFlight.delete(done);
    });
    inFlight.add(done);
  };
  while (since() < load.duration && !stop.aborted) {
    const target = Math.floor((since() * rate) / 1000) + 1;
    for (; due < target; due++) {
      if (inFlight.size >= load.concurrency) skipped++;
      else send(due);
    }
    const next = (due * 1000) / rate - since();
    await sleep(Math.max(1, Math.min(next, load.duration - since())), stop);
  }
  await Promise.all(inFlight); // never rejects: each request's outcome is a sample
  stop.removeEventListener('abort', endAll);
  return { requests, skipped, cut: 0 };
}

/** True when nothing failed, or a request that began after the last failure began succeeded. */
function recoveredBy(requests: readonly Sample[], failures: readonly Sample[]): boolean {
  if (failures.length === 0) return true;
  let lastStart = Number.NEGATIVE_INFINITY;
  for (const f of failures) if (f.start > lastStart) lastStart = f.start;
  return requests.some((r) => r.ok && r.start > lastStart);
}

async function runSteps(
  steps: z.output<typeof drillOptionsSchema>['steps'],
  since: () => number,
  announce: (name: string) => void,
  { duration, timeout }: { readonly duration: number; readonly timeout: number },
  stop: AbortSignal,
  scope: FaultScope,
): Promise<DrillStep[]> {
  const played: DrillStep[] = [];
  for (const step of [...steps].sort((a, b) => a.at - b.at)) {
    // Node counts a timer in whole ms of the loop's time: it can fire before performance.now() has
    // moved its delay. Waited again for what is left, a step never runs before its `at` (one at the
    // load's end run early was given the sliver of load left, and reported hung).
    while (since() < step.at && !stop.aborted) await sleep(step.at - since(), stop);
    if (stop.aborted) break;
    const ranAt = round(since());
    announce(step.name);
    // A step must settle by the end of the load (one due after it: within the load's timeout).
    const limit = Math.max(duration - since(), ranAt >= duration ? timeout : 0);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let gaveUp = () => {};
    // Given up on past its limit, or at once when the caller aborts the drill.
    const hung = new Promise<typeof HUNG>((resolve) => {
      gaveUp = () => resolve(HUNG);
      timer = setTimeout(gaveUp, limit);
      stop.addEventListener('abort', gaveUp, { once: true });
    });
    try {
      // Run in the drill's scope: the faults it puts on are taken off at the drill's end.
      const ran = faultScope.run(scope, () => Promise.resolve().then(() => step.run()));
      const outcome = await Promise.race([ran, hung]);
      if (outcome === HUNG) {
        played.push({
          name: step.name,
          at: step.at,
          ranAt,
          doneAt: round(since()),
          error: `did not settle within ${Math.round(limit)} ms`,
          hung: true,
        });
        continue;
      }
      played.push({ name: step.name, at: step.at, ranAt, doneAt: round(since()) });
    } catch (error) {
      played.push({
        name: step.name,
        at: step.at,
        ranAt,
        doneAt: round(since()),
        error: error instanceof Error ? error.message : String(error),
      });
    } finally {
      clearTimeout(timer);
      stop.removeEventListener('abort', gaveUp);
    }
  }
  return played;
}

const HUNG = Symbol('hung');

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? 0;
}

function round(value: number): number;
function round(value: number | null): number | null;
function round(value: number | null): number | null {
  return value === null ? null : Math.round(value * 10) / 10;
}

const labels: Record<ObjectiveResult['objective'], string> = {
  maxFailedShare: 'failed share',
  maxP99: 'p99',
  maxDuplicates: 'duplicate executions',
  maxRecovery: 'time to recover',
  maxFinalFailedShare: 'failed share in the final window',
};

function show(objective: ObjectiveResult['objective'], value: number): string {
  if (objective === 'maxFailedShare' || objective === 'maxFinalFailedShare') return `${(value * 100).toFixed(2)}%`;
  if (objective === 'maxDuplicates') return String(value);
  return `${value.toFixed(1)} ms`;
}

function formatReport(r: Omit<DrillResult, 'report'>): string {
  const missed = r.objectives.filter((o) => !o.passed);
  const s = (ms: number) => `+${(ms / 1000).toFixed(2)} s`;
  const lines = [
    `drill "${r.name}": ${r.passed ? 'PASSED' : `FAILED (${missed.length} of ${r.objectives.length} objectives missed)`}`,
    ...(r.load.hung
      ? [`  load: HUNG: the driver had not settled ${(r.duration / 1000).toFixed(1)} s in (duration + timeout)`]
      : []),
    `  load: ${r.load.sent} sent over ${(r.duration / 1000).toFixed(1)} s, ${r.load.succeeded} ok, ${r.load.failed} failed (${(r.load.failedShare * 100).toFixed(2)}%), ${r.load.skipped} skipped${r.load.cut > 0 ? `, ${r.load.cut} cut off at the end` : ''}; latency p50 ${r.load.p50} ms, p99 ${r.load.p99} ms, max ${r.load.max} ms`,
    r.recovery.firstFailure === null
      ? '  failures: none'
      : r.recovery.recovered
        ? `  failures: from ${s(r.recovery.firstFailure)} to ${s(r.recovery.lastFailure ?? 0)} (recovered in ${r.recovery.window} ms)`
        : `  failures: from ${s(r.recovery.firstFailure)} to ${s(r.recovery.lastFailure ?? 0)} (NOT recovered by the end)`,
    `  final window from ${s(r.final.from)}: ${r.final.sent - r.final.failed}/${r.final.sent} ok (${(r.final.failedShare * 100).toFixed(2)}% failed)`,
  ];
  const cells = r.timeline.sent.map((sent, i) => `${r.timeline.failed[i] ?? 0}/${sent}`);
  lines.push(`  failed/sent per ${r.timeline.bucket} ms: ${cells.join(' ')}`);
  if (r.duplicates !== null) lines.push(`  duplicate executions: ${r.duplicates}`);
  if (r.duplicatesError !== undefined)
    lines.push(`  duplicate executions: not counted (duplicates() threw: ${r.duplicatesError})`);
  if (r.steps.length > 0) lines.push('  steps:');
  for (const step of r.steps)
    lines.push(
      `    ${s(step.ranAt)}  ${step.name}${step.hung ? `  (HUNG: ${step.error})` : step.error ? `  (threw: ${step.error})` : ''}`,
    );
  if (r.objectives.length > 0) lines.push('  objectives:');
  for (const o of r.objectives) {
    const never = o.objective === 'maxRecovery' && !r.recovery.recovered;
    const verdict = never
      ? `MISS  ${labels[o.objective]}: never recovered (failing still at the end, limit ${show(o.objective, o.limit)})`
      : Number.isNaN(o.actual)
        ? `MISS  ${labels[o.objective]}: ${unjudged(o)} (limit ${show(o.objective, o.limit)})`
        : o.passed
          ? `ok    ${labels[o.objective]} ${show(o.objective, o.actual)} <= ${show(o.objective, o.limit)}`
          : `MISS  ${labels[o.objective]} ${show(o.objective, o.actual)} > ${show(o.objective, o.limit)}: over by ${show(o.objective, o.by)}`;
    lines.push(`    ${verdict}`);
  }
  return lines.join('\n');
}
