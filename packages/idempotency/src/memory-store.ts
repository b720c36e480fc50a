import { Buffer } from 'node:buffer';
import {
  type Clock,
  DisposedError,
  elapsedTime,
  HoldfastConfigError,
  parseOptions,
  realClock,
  type Snapshottable,
  type TimerHandle,
} from '@holdfast/core';
import { decodeValue, encodeValue } from './codec.js';
import { IdempotencyValueError, StoreUnavailableError } from './errors.js';
import { type MemoryStoreOptions, memoryStoreOptionsSchema } from './options.js';
import { sha256 } from './sha256.js';
import {
  type ClaimResult,
  type CompletedRecord,
  checkResponse,
  checkResponseParts,
  checkStatusAndBody,
  copyHeaders,
  headerChars,
  type IdempotencyStore,
  type StoredOutcome,
  type StoredResponse,
} from './store.js';

/**
 * @internal What a completed record keeps of its outcome, on the record itself (no outcome object
 * of its own: one object fewer per record for the collector to copy). `kind`: undefined while its
 * claim runs. A value: its JSON text in `body`. A response: a checked copy (no JSON round trip:
 * this process is the only reader), a short body as a string of its bytes, one character a byte
 * (see {@link keptBody}); its headers object may be shared with other records (never changed).
 */
export interface KeptOutcome {
  readonly kind: 'value' | 'aborted' | 'response';
  /** A response's status; 0 for a value or an abort. */
  readonly status: number;
  readonly headers: StoredResponse['headers'] | undefined;
  /** A response's body, or a value's JSON text (empty for an abort). */
  readonly body: Uint8Array | string;
}

interface Entry {
  readonly key: string;
  /**
   * The request's fingerprint, or (`raw`) the bytes it is the hash of (see preimageOf); once
   * completed with a body kept as text, followed by that text (see {@link KeptRecord.split}).
   */
  fingerprint: string;
  readonly raw: boolean;
  /**
   * When first claimed: ms since the store's epoch (see {@link MemoryStore}'s `#epoch`), records
   * show `#epoch + created` (or the reading itself, see {@link Since}). A small integer is kept in
   * the entry itself; epoch ms (over 2^31) were a number object of their own per record, one more
   * for the collector to copy.
   */
  readonly created: Since;
  /** The claim's token as a number (`m<token>` handed out): a small integer, no string kept per record. */
  token: number;
  /**
   * On the clock's monotonic line (see elapsedTime): a step of the wall clock moves no deadline.
   * Whole ms (see {@link leaseEnd}).
   */
  leaseUntil: number;
  /** On the monotonic line, as `leaseUntil`. */
  expiresAt: number;
  /** When completed, as `created`. */
  completed: Since;
  /** Undefined while its claim runs; then its outcome, kept in the three fields after it. */
  kind: KeptOutcome['kind'] | undefined;
  status: number;
  headers: StoredResponse['headers'] | undefined;
  body: Uint8Array | string;
  /** See {@link KeptRecord.split}. */
  split: number;
  /** What this record counts against `maxBytes`. */
  bytes: number;
  // The recency list: `older` towards the least recently used end.
  older: Entry | undefined;
  newer: Entry | undefined;
}

/**
 * A record's time as its entry keeps it: ms since the store's epoch, or the clock's reading
 * itself where that would not give it back exactly (see {@link since}).
 */
type Since = number | { readonly at: number };

const NAME = 'memoryStore';

/**
 * The fingerprint of a request whose fingerprinted bytes are `preimage` (one character a byte):
 * what fingerprintOf gives for it, SHA-256, base64url.
 */
export function digestOfPreimage(preimage: string): string {
  return sha256('', Buffer.from(preimage, 'latin1'));
}

/** The length of a fingerprint: SHA-256 in base64url. */
const DIGEST_CHARACTERS = 43;

/**
 * Whether two requests are the same, each known by its fingerprint or (`raw`) the bytes it is
 * the hash of: compared as they are when both are known alike, else through the hash.
 */
export function sameRequest(a: string, aRaw: boolean, b: string, bRaw: boolean): boolean {
  if (aRaw === bRaw) return a === b;
  return aRaw ? digestOfPreimage(a) === b : a === digestOfPreimage(b);
}

/**
 * What a record costs besides its strings and body: the entry object, its map slot. (Kept as it
 * was when a record had an outcome object too: the bound means what it meant.)
 */
const ENTRY_OVERHEAD = 256;

function baseBytes(key: string, fingerprint: number): number {
  return ENTRY_OVERHEAD + 2 * (key.length + fingerprint) + 16;
}

/**
 * Idempotency records in this process's memory: the embedded default, for one instance of a
 * service (use {@link redisStore} to share records between instances). Bounded by `maxEntries`
 * (expired records first, then the least recently used, even before its ttl), swept by an
 * unref'd timer.
 *
 * @example
 * const store = memoryStore({ maxEntries: 50_000 });
 */
export function memoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  const parsed = parseOptions(NAME, memoryStoreOptionsSchema, options);
  const worker = parsed.processLocal ? undefined : inWorker();
  if (worker !== undefined) {
    throw new HoldfastConfigError(NAME, [
      {
        path: 'processLocal',
        message:
          worker === 'cluster'
            ? "is off, and this is a cluster worker (node:cluster, PM2's cluster mode): the other workers do not see records kept in its memory, so a retry another worker gets runs the effect again. Share records with redisStore(); processLocal: true is only for keys that reach this worker alone (sticky sessions: node:cluster's round-robin sends a retry to any worker)"
            : 'is off, and this is a worker thread (node:worker_threads, a pool such as piscina): each thread has memory of its own, and the other threads do not see records kept in it, so the same key run on two threads runs the effect twice. Share records with redisStore(), or make the store on the main thread and call it from there; processLocal: true is only for keys that reach this thread alone (a test runner that runs each test file in a thread)',
        value: false,
      },
    ]);
  }
  return new MemoryStore(parsed.maxEntries, parsed.sweepInterval, parsed.clock ?? realClock, parsed.maxBytes);
}

/**
 * Whether this is a node:cluster worker (PM2's cluster mode is one) or a worker thread: either
 * way, other workers keep records of their own. A cluster worker always has an IPC channel to
 * its primary (`process.send`), so a process without one is none, and does not load
 * node:cluster at all (1.5 ms after node:http, 6 to 10 ms before it). node:worker_threads is
 * loaded (0.7 to 1.2 ms after node:http), once, when a store is made, not by every importer.
 * Node 20 before 20.16 has no `process.getBuiltinModule`, and is not checked.
 */
function inWorker(): 'cluster' | 'thread' | undefined {
  const load = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  if (load === undefined) return undefined;
  if ((load('node:worker_threads') as { isMainThread?: boolean } | undefined)?.isMainThread === false) return 'thread';
  if (typeof process.send !== 'function') return undefined;
  return (load('node:cluster') as { isWorker?: boolean } | undefined)?.isWorker === true ? 'cluster' : undefined;
}

/**
 * Marks a store that answers in this process (no timer is raced against it). A `Symbol.for`
 * brand, not `instanceof`: the CommonJS build gives each entry point its own copy of the class.
 */
export const IN_PROCESS = Symbol.for('holdfast.idempotency.inProcessStore');

/**
 * The calls without a promise of `store` when it answers in this process: a {@link MemoryStore}
 * itself, from whichever copy of the class, with its class's own methods. Not a wrapper: a
 * spread copy (`{ ...memoryStore(), claim }`) does not carry the brand (it is not enumerable),
 * an object made from one (`Object.create`) carries it pointing at another object, and one whose
 * methods were replaced (on it, or by a subclass) has methods its class did not define. Those
 * may call out, so they are called, and a timer is raced against them.
 */
export function inProcess(store: object): StoreNow | undefined {
  const s = store as { [IN_PROCESS]?: unknown; [NOW]?: StoreNow };
  if (s[IN_PROCESS] !== s) return undefined;
  const now = s[NOW];
  return now?.serves(s) ? now : undefined;
}

/**
 * @internal Where a {@link MemoryStore} keeps its calls without a promise, for the HTTP
 * middleware (a `Symbol.for` key: every CommonJS copy of the class has them under the same one;
 * versioned, so a copy with another contract for these calls is not trusted with it). v6: a
 * record's `fingerprint` may be its preimage (`raw`), which a v5 engine took for a fingerprint.
 * v7: a record has no `createdAt` (a v6 engine read it for its replay event): ask `createdAt()`.
 * v8: a record's body may follow its fingerprint (`split`; a v7 engine read an empty body).
 */
export const NOW = Symbol.for('holdfast.idempotency.memoryStore.now.v8');

/**
 * @internal A completed record as {@link StoreNow.claim} answers it: the store's own, not a copy
 * (read it, never change it), its outcome on it as the store keeps it.
 */
export interface KeptRecord extends KeptOutcome {
  /** The request's fingerprint; see `split`. Compare with {@link sameKept}. */
  readonly fingerprint: string;
  /** `fingerprint` holds the bytes it is the hash of (see {@link StoreNow.claimPreimage}); none on an older store. */
  readonly raw?: boolean;
  /**
   * 0, or where the body's text starts in `fingerprint`: a body kept as text (a short response's
   * bytes, a value's JSON) is kept after the request's fingerprint, in one string with it, and
   * `body` is empty. Read the body with {@link keptBodyOf}. (Three strings a record, the key, the
   * fingerprint and the body, each survived two young collections, copied each time; joined,
   * the collector counted about 1,200 instructions fewer a first request, for about 650 of the
   * join's, bench/http-instructions.ts. A replay reads a slice: about 1,400 more.)
   */
  readonly split: number;
}

/** @internal A kept record's body (see {@link KeptRecord.split}). */
export function keptBodyOf(record: KeptRecord): Uint8Array | string {
  return record.split === 0 ? record.body : record.fingerprint.slice(record.split);
}

/** @internal The fingerprint a kept record holds, or (`raw`) its preimage (see {@link KeptRecord.split}). */
function keptFingerprint(record: KeptRecord): string {
  return record.split === 0 ? record.fingerprint : record.fingerprint.slice(0, record.split);
}

/**
 * @internal Whether `record` is of the request whose fingerprint, or (`raw`) preimage, is
 * `fingerprint` (see {@link sameRequest}).
 */
export function sameKept(record: KeptRecord, fingerprint: string, raw: boolean): boolean {
  const kept = record.fingerprint;
  const split = record.split;
  const keptRaw = record.raw === true;
  if (split === 0) return sameRequest(kept, keptRaw, fingerprint, raw);
  // The part a slice of it (no copy), compared by V8's string equality (a `startsWith` read each
  // character through a generic call: about 55 instructions a character, 9,900 a replay).
  if (keptRaw === raw) return fingerprint.length === split && kept.slice(0, split) === fingerprint;
  return sameRequest(kept.slice(0, split), keptRaw, fingerprint, raw);
}

/**
 * @internal A claim's token as {@link StoreNow} hands it out and takes it: its number (the store's
 * methods take and give its text, see {@link tokenText}). Made text for every claim, the number
 * cost a first request about 300 instructions (a number's digits are a call into V8's runtime).
 */
export type NowToken = number | string;

/**
 * @internal What {@link StoreNow.claim} found: a completed record as the store keeps it; a claim's
 * token as a number.
 */
export type NowClaimResult =
  | Exclude<ClaimResult, { readonly status: 'completed' | 'claimed' }>
  | {
      readonly status: 'claimed';
      readonly token: number;
      readonly takeover: boolean;
      /** When the store claimed it, on its clock's monotonic line (see {@link StoreNow.clock}). */
      readonly at: number;
    }
  | { readonly status: 'completed'; readonly record: KeptRecord };

/**
 * @internal A memory store's calls, answered at once; they throw where the store's methods
 * reject.
 */
export interface StoreNow {
  /**
   * The store's clock: a caller on the same clock takes a claim's `at` for its own reading of
   * the time it was claimed (one monotonic read a request fewer: ~160 instructions). Optional: a
   * store of an older copy of this module has none.
   */
  readonly clock?: Clock;
  /**
   * Whether the store's monotonic line is its clock's `monotonic()` (else its `now()`), as
   * `elapsedTime` decided when the store was made: one clock object may give another caller,
   * made when it had (or lacked) `monotonic`, the other line. Optional, as {@link clock}.
   */
  readonly monotonic?: boolean;
  /** Whether `store`'s methods are the ones these calls stand for (not replaced or overridden). */
  serves(store: object): boolean;
  claim(key: string, fingerprint: string, leaseMs: number): NowClaimResult;
  /**
   * {@link claim} with the bytes a fingerprint is the hash of (see preimageOf), kept as they are:
   * compared whole, hashed only to be shown or compared with a fingerprint. Optional: a store of
   * an older copy of this module has none.
   */
  claimPreimage?(key: string, preimage: string, leaseMs: number): NowClaimResult;
  complete(key: string, token: NowToken, outcome: StoredOutcome, ttlMs: number): boolean;
  /**
   * {@link complete} of a response the caller hands over (its headers object, lists and body are
   * its own and it keeps no reference): kept without a copy, and without an outcome object.
   * `body`: its bytes, or a string of them, one character a byte.
   */
  completeResponse(
    key: string,
    token: NowToken,
    status: number,
    headers: StoredResponse['headers'],
    body: Uint8Array | string,
    ttlMs: number,
  ): boolean;
  release(key: string, token: NowToken): boolean;
  extend(key: string, token: NowToken, leaseMs: number): boolean;
  /**
   * The completed record of `key`, as the store keeps it (touched, as a replay touches it);
   * undefined when there is none (no record, a running claim, expired). Claims nothing.
   * Optional: a store of an older copy of this module has none.
   */
  completed?(key: string): KeptRecord | undefined;
  /** When `record` (one of this store's) was first claimed, epoch ms. */
  createdAt(record: KeptRecord): number;
}

/** The store {@link memoryStore} returns. */
export class MemoryStore implements IdempotencyStore, Snapshottable {
  readonly #entries = new Map<string, Entry>();
  // A linked list in order of use, so that touching and evicting are O(1). (Using the Map's own
  // insertion order as the queue is not: V8 skips deleted slots when iterating from the front.)
  #oldest: Entry | undefined;
  #newest: Entry | undefined;
  #tokens = 0;
  // The headers object of the last response kept, and its names: the next response with the same
  // headers (a route's usual next one) shares it (see #shared).
  #lastHeaders: StoredResponse['headers'] | undefined;
  #lastNames: readonly string[] = [];
  #lastChars = 0;
  #sweep: TimerHandle | undefined;
  #disposed = false;
  #bytes = 0;
  /** No record expires before this (monotonic ms): a lower bound, exact after a pass ({@link #dropExpired}). */
  #nextExpiry = Number.POSITIVE_INFINITY;
  /** Records added since the last pass for expired ones, plus those it freed. */
  #sincePass = Number.POSITIVE_INFINITY;
  // Leases, expiries and the sweep are measured on it; records' times are epoch ms (clock.now()).
  readonly #elapsed: () => number;
  /** What records' times are kept from (see Entry's `created`): the clock's reading at the store's creation, whole ms. */
  readonly #epoch: number;
  /** The last reading of the clock {@link #wall} took, and when, on the monotonic line. */
  #wallRead = 0;
  #wallAt = Number.NEGATIVE_INFINITY;

  constructor(
    /** The most records kept; when full, the least recently used that is not running goes first. */
    readonly maxEntries: number,
    /** Time between sweeps of expired records, in ms. */
    readonly sweepInterval: number,
    /** The clock that dates records and leases. */
    readonly clock: Clock,
    /** The most bytes of records kept; the least recently used completed records go first. */
    readonly maxBytes = 67_108_864,
  ) {
    this.#elapsed = elapsedTime(clock);
    this.#epoch = Math.floor(clock.now());
    // Not enumerable: a spread copy of the store is not branded.
    Object.defineProperty(this, IN_PROCESS, { value: this });
    // Set here, not as a class field: a computed class key counts as a side effect to bundlers,
    // which would then pull this whole module into entry points that only ask `inProcess()`.
    const calls: StoreNow = {
      clock,
      // elapsedTime's own test, made at the same moment.
      monotonic: clock.monotonic !== undefined,
      serves: (store) => {
        const s = store as Partial<IdempotencyStore>;
        const own = MemoryStore.prototype;
        return (
          s.claim === own.claim && s.complete === own.complete && s.release === own.release && s.extend === own.extend
        );
      },
      claim: (key, fingerprint, leaseMs) => this.#claim(key, fingerprint, leaseMs, false),
      claimPreimage: (key, preimage, leaseMs) => this.#claim(key, preimage, leaseMs, true),
      complete: (key, token, outcome, ttlMs) => this.#complete(key, token, outcome, ttlMs),
      completeResponse: (key, token, status, headers, body, ttlMs) => {
        this.#checkOpen();
        // The same headers as the last response kept are checked (all strings), and counted.
        const last = this.#sameAsLast(headers);
        const bytes = typeof body === 'string' ? NO_BYTES : body;
        if (last === undefined) checkResponseParts(status, headers, bytes);
        else checkStatusAndBody(status, bytes);
        return this.#completeResponse(key, token, status, headers, last, body, true, ttlMs);
      },
      release: (key, token) => this.#release(key, token),
      extend: (key, token, leaseMs) => this.#extend(key, token, leaseMs),
      createdAt: (record) => this.#date((record as Entry).created),
      completed: (key) => {
        this.#checkOpen();
        // Asked of every first request (an early replay's probe): no record, no clock read.
        if (!this.#entries.has(key)) return undefined;
        const entry = this.#touch(key, this.#elapsed());
        return entry?.kind === undefined ? undefined : (entry as KeptRecord);
      },
    };
    Object.defineProperty(this, NOW, { value: calls });
  }

  /** How many records are held now (expired ones included until swept or touched). */
  get size(): number {
    return this.#entries.size;
  }

  /** The bytes the records held now count against `maxBytes`. */
  get bytes(): number {
    return this.#bytes;
  }

  async claim(key: string, fingerprint: string, leaseMs: number): Promise<ClaimResult> {
    const found = this.#claim(key, fingerprint, leaseMs, false);
    if (found.status === 'claimed')
      return { status: 'claimed', token: tokenText(found.token), takeover: found.takeover };
    return found.status === 'completed'
      ? { status: 'completed', record: this.#record(key, found.record as Entry) }
      : found;
  }

  async complete(key: string, token: string, outcome: StoredOutcome, ttlMs: number): Promise<boolean> {
    return this.#complete(key, textToken(token), outcome, ttlMs);
  }

  async release(key: string, token: string): Promise<boolean> {
    return this.#release(key, textToken(token));
  }

  async extend(key: string, token: string, leaseMs: number): Promise<boolean> {
    return this.#extend(key, textToken(token), leaseMs);
  }

  /** `raw`: `fingerprint` is the bytes a fingerprint is the hash of (see {@link StoreNow.claimPreimage}). */
  #claim(key: string, fingerprint: string, leaseMs: number, raw: boolean): NowClaimResult {
    this.#checkOpen();
    const now = this.#elapsed();
    const entry = this.#touch(key, now);
    if (entry === undefined) {
      this.#makeRoom(key, now);
      const token = ++this.#tokens;
      this.#add({
        key,
        fingerprint,
        raw,
        created: since(this.#wall(now), this.#epoch),
        token,
        leaseUntil: leaseEnd(now, leaseMs),
        expiresAt: leaseEnd(now, 2 * leaseMs),
        completed: 0,
        kind: undefined,
        status: 0,
        headers: undefined,
        body: '',
        split: 0,
        // A preimage counts as the hash it stands for (43 characters; at most 128 bytes held):
        // the store keeps as many records either way, whichever path claimed them.
        bytes: baseBytes(key, raw ? DIGEST_CHARACTERS : fingerprint.length),
        older: undefined,
        newer: undefined,
      });
      if (this.#bytes > this.maxBytes) this.#evictBytes(this.#newest as Entry, now);
      this.#startSweep();
      return { status: 'claimed', token, takeover: false, at: now };
    }
    if (!sameKept(entry as KeptRecord, fingerprint, raw)) return { status: 'mismatch' };
    // The entry itself, as kept: its reader never changes it. (An answer kept on the entry for its
    // next replay would cost each record replayed its bytes for as long as it is kept.)
    if (entry.kind !== undefined) return { status: 'completed', record: entry as KeptRecord };
    if (entry.leaseUntil > now) return { status: 'inProgress', retryAfterMs: entry.leaseUntil - now };
    // The owner's lease ran out: take over. Identity (fingerprint, createdAt) stays as first claimed.
    entry.token = ++this.#tokens;
    entry.leaseUntil = leaseEnd(now, leaseMs);
    this.#expireAt(entry, leaseEnd(now, 2 * leaseMs));
    return { status: 'claimed', token: entry.token, takeover: true, at: now };
  }

  #complete(key: string, token: NowToken, outcome: StoredOutcome, ttlMs: number): boolean {
    this.#checkOpen();
    if (outcome?.kind === 'value') {
      const text = encodeValue(outcome.value);
      return this.#completeKept(key, token, 'value', 0, undefined, text, 2 * text.length, ttlMs);
    }
    if (outcome?.kind === 'aborted') return this.#completeKept(key, token, 'aborted', 0, undefined, '', 16, ttlMs);
    const { status, headers, body } = checkResponse(outcome);
    return this.#completeResponse(key, token, status, headers, this.#sameAsLast(headers), body, false, ttlMs);
  }

  /**
   * Completes with a checked response (`owned`: handed over, kept as it is; else copied): its
   * headers the last ones kept when `last` is them, its body as the record keeps it.
   */
  #completeResponse(
    key: string,
    token: NowToken,
    status: number,
    headers: StoredResponse['headers'],
    last: StoredResponse['headers'] | undefined,
    body: Uint8Array | string,
    owned: boolean,
    ttlMs: number,
  ): boolean {
    const chars = last === undefined ? headerChars(headers) : this.#lastChars;
    const text = typeof body === 'string';
    return this.#completeKept(
      key,
      token,
      'response',
      status,
      last ?? this.#keepHeaders(headers, owned, chars),
      text ? keptText(body) : keptBody(body, owned),
      2 * chars + 16 + (text ? body.length : body.byteLength),
      ttlMs,
    );
  }

  /**
   * Completes with an outcome checked and kept already (nothing changed yet): its parts, and what
   * they count against `maxBytes`.
   */
  #completeKept(
    key: string,
    token: NowToken,
    kind: KeptOutcome['kind'],
    status: number,
    headers: StoredResponse['headers'] | undefined,
    body: Uint8Array | string,
    keptBytes: number,
    ttlMs: number,
  ): boolean {
    const now = this.#elapsed();
    const entry = this.#live(key, now);
    const claim = tokenNumber(token);
    // A completion resent by its own run (a retry after a lost reply) succeeds again, changing nothing.
    if (entry?.kind !== undefined && entry.token === claim) return true;
    if (entry === undefined || entry.kind !== undefined || entry.token !== claim) return false;
    const bytes = entry.bytes + keptBytes;
    if (bytes > this.maxBytes) {
      throw new IdempotencyValueError(
        'outcome',
        `the record is ${bytes} bytes, over ${NAME}'s maxBytes of ${this.maxBytes}`,
      );
    }
    entry.kind = kind;
    entry.status = status;
    entry.headers = headers;
    const request = entry.fingerprint;
    if (typeof body === 'string' && body !== '' && request !== '') {
      // The text after the request's fingerprint, one string (see KeptRecord.split). Read, so that
      // V8 makes the pair one flat string, in place (see storedKey in http/engine.ts).
      const joined = request + body;
      if (joined.charCodeAt(0) !== request.charCodeAt(0)) throw new Error('joined');
      entry.fingerprint = joined;
      entry.split = request.length;
      entry.body = '';
    } else {
      entry.body = body;
    }
    entry.completed = since(this.#wall(now), this.#epoch);
    this.#expireAt(entry, expiry(now, ttlMs));
    this.#bytes += bytes - entry.bytes;
    entry.bytes = bytes;
    this.#evictBytes(entry, now);
    return true;
  }

  #release(key: string, token: NowToken): boolean {
    this.#checkOpen();
    const entry = this.#live(key, this.#elapsed());
    if (entry === undefined || entry.kind !== undefined || entry.token !== tokenNumber(token)) return false;
    this.#remove(entry);
    return true;
  }

  #extend(key: string, token: NowToken, leaseMs: number): boolean {
    this.#checkOpen();
    const now = this.#elapsed();
    const entry = this.#live(key, now);
    if (entry === undefined || entry.kind !== undefined || entry.token !== tokenNumber(token)) return false;
    entry.leaseUntil = Math.max(entry.leaseUntil, leaseEnd(now, leaseMs));
    // Later only: a lease renewed to less than it had left never ends early.
    entry.expiresAt = Math.max(entry.expiresAt, leaseEnd(now, 2 * leaseMs));
    return true;
  }

  snapshot(): { entries: number; maxEntries: number; inProgress: number; bytes: number; maxBytes: number } {
    let inProgress = 0;
    for (const entry of this.#entries.values()) if (entry.kind === undefined) inProgress++;
    return {
      entries: this.#entries.size,
      maxEntries: this.maxEntries,
      inProgress,
      bytes: this.#bytes,
      maxBytes: this.maxBytes,
    };
  }

  dispose(): void {
    this.#disposed = true;
    this.#stopSweep();
    this.#entries.clear();
    this.#bytes = 0;
    this.#nextExpiry = Number.POSITIVE_INFINITY;
    this.#oldest = undefined;
    this.#newest = undefined;
  }

  /** The entry of `key` if it has not expired; expired ones are dropped on sight. */
  #live(key: string, now: number): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined || entry.expiresAt > now) return entry;
    this.#remove(entry);
    return undefined;
  }

  /** Like {@link #live}, and marks the entry most recently used. */
  #touch(key: string, now: number): Entry | undefined {
    const entry = this.#live(key, now);
    if (entry !== undefined && entry !== this.#newest) {
      this.#unlink(entry);
      this.#append(entry);
    }
    return entry;
  }

  /**
   * Evicts records until one more fits: expired ones first, then the least recently used; live
   * claims are passed over.
   */
  #makeRoom(key: string, now: number): void {
    if (this.#entries.size >= this.maxEntries) this.#dropExpired(now);
    // The least recently used record that is not a running claim goes (evicting one would let a
    // duplicate run). A running claim is passed over where it is: sent to the most recently used
    // end instead, it stood, once its lease ran out, ahead of completed records used after it,
    // and they went first (a repeat of one then ran its effect again).
    let entry = this.#oldest;
    while (this.#entries.size >= this.maxEntries) {
      if (entry === undefined) {
        throw new StoreUnavailableError(NAME, 'claim', key, `full: all ${this.maxEntries} records are running claims`);
      }
      const newer = entry.newer;
      if (entry.kind !== undefined || entry.leaseUntil <= now || entry.expiresAt <= now) this.#remove(entry);
      entry = newer;
    }
  }

  /**
   * Evicts records until within maxBytes: expired ones first, then the least recently used
   * completed ones (never `keep`, never a live claim).
   */
  #evictBytes(keep: Entry, now: number): void {
    if (this.#bytes > this.maxBytes) this.#dropExpired(now);
    let entry = this.#oldest;
    while (this.#bytes > this.maxBytes && entry !== undefined) {
      const next = entry.newer;
      if (entry !== keep && (entry.kind !== undefined || entry.expiresAt <= now || entry.leaseUntil <= now)) {
        this.#remove(entry);
      }
      entry = next;
    }
  }

  /**
   * Before a live record is evicted: drops the expired ones, if one may have expired. An evicted
   * record whose ttl has not run out lets a repeat run its effect again; an expired one is
   * forgotten already, wherever it is in the recency list. A pass reads every record, so it is
   * made at most once per `size / 16` records added (those the last pass freed count as added):
   * O(1) a claim, even when records expire one at a time.
   */
  #dropExpired(now: number): void {
    if (now >= this.#nextExpiry && this.#sincePass >= this.#entries.size >> 4) {
      this.#sincePass = this.#sweepExpired(now);
    }
  }

  /**
   * Drops every expired record and returns how many; the soonest expiry left is known exactly
   * after it. The periodic sweep leaves the count of adds alone: it is no claim's cost, and a
   * sweep that found nothing must not hold off the pass before the next eviction.
   */
  #sweepExpired(now: number): number {
    let next = Number.POSITIVE_INFINITY;
    let freed = 0;
    for (const entry of this.#entries.values()) {
      if (entry.expiresAt <= now) {
        this.#remove(entry);
        freed++;
      } else if (entry.expiresAt < next) next = entry.expiresAt;
    }
    this.#nextExpiry = next;
    return freed;
  }

  #expireAt(entry: Entry, at: number): void {
    entry.expiresAt = at;
    if (at < this.#nextExpiry) this.#nextExpiry = at;
  }

  #add(entry: Entry): void {
    if (entry.expiresAt < this.#nextExpiry) this.#nextExpiry = entry.expiresAt;
    this.#sincePass++;
    this.#entries.set(entry.key, entry);
    this.#bytes += entry.bytes;
    this.#append(entry);
  }

  #remove(entry: Entry): void {
    if (this.#entries.get(entry.key) !== entry) return;
    this.#entries.delete(entry.key);
    this.#bytes -= entry.bytes;
    this.#unlink(entry);
  }

  #append(entry: Entry): void {
    entry.older = this.#newest;
    entry.newer = undefined;
    if (this.#newest) this.#newest.newer = entry;
    else this.#oldest = entry;
    this.#newest = entry;
  }

  #unlink(entry: Entry): void {
    if (entry.older) entry.older.newer = entry.newer;
    else this.#oldest = entry.newer;
    if (entry.newer) entry.newer.older = entry.older;
    else this.#newest = entry.older;
    entry.older = undefined;
    entry.newer = undefined;
  }

  /**
   * The last headers kept, when `headers` has the same names in the same order and the same
   * values, all strings: the records of a route share one object (a record's headers are never
   * changed: replays and the copies handed out are copies). Undefined otherwise.
   */
  #sameAsLast(headers: StoredResponse['headers']): StoredResponse['headers'] | undefined {
    const last = this.#lastHeaders;
    if (last === undefined || typeof headers !== 'object' || headers === null) return undefined;
    // Own names only, listed before any is read (not for-in: it lists inherited names too, which
    // the last headers may own with the same value, and a getter may change the names as they
    // are walked).
    const names = Object.keys(headers);
    const lastNames = this.#lastNames;
    if (names.length !== lastNames.length) return undefined;
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      const value = headers[name];
      if (name !== lastNames[i] || typeof value !== 'string' || value !== last[name]) return undefined;
    }
    return last;
  }

  /**
   * Checked `headers` as a record keeps them (`owned`: handed over, else copied: the caller's may
   * change), kept as the last (see {@link #sameAsLast}) when all their values are strings;
   * `chars`: their {@link headerChars}.
   */
  #keepHeaders(headers: StoredResponse['headers'], owned: boolean, chars: number): StoredResponse['headers'] {
    const kept = owned ? headers : copyHeaders(headers);
    const names = Object.keys(kept);
    for (const name of names) if (typeof kept[name] !== 'string') return kept;
    this.#lastHeaders = kept;
    this.#lastNames = names;
    this.#lastChars = chars;
    return kept;
  }

  #startSweep(): void {
    if (this.#sweep !== undefined) return;
    this.#sweep = this.clock.setTimeout(() => {
      this.#sweep = undefined;
      this.#sweepExpired(this.#elapsed());
      if (this.#entries.size > 0) this.#startSweep();
    }, this.sweepInterval);
  }

  #stopSweep(): void {
    if (this.#sweep === undefined) return;
    this.clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
  }

  /**
   * The clock's reading (epoch ms) for a record claimed or completed at `now` (monotonic).
   * realClock's `Date.now()` is a call into V8's runtime, about 200 instructions, twice a claimed
   * request: with realClock and no fake timers, the last reading, moved on by the monotonic time
   * since, serves for {@link WALL_REREAD_MS} (a step of the wall clock shows in the times of
   * records a second later at most). Any other clock is read each time.
   */
  #wall(now: number): number {
    const moved = now - this.#wallAt;
    if (moved >= 0 && moved < WALL_REREAD_MS && this.clock === realClock && realTimers()) {
      return this.#wallRead + Math.floor(moved);
    }
    const real = this.clock === realClock && realTimers();
    const before = real ? this.#elapsed() : 0;
    const read = this.clock.now();
    this.#wallRead = read;
    // Served again only when read from the real Date: a faked Date's reading (fake timers of Date
    // alone leave the monotonic line real) is not moved on into the real timers' time after them.
    // And only when read within a millisecond, between two monotonic readings: moved on from the
    // one taken after it, later dates are never ahead of the clock, and at most that far behind.
    // A pause on either side of the read (a preemption, a collection) put the next second's
    // dates that far ahead (anchored before) or behind (anchored after); such a reading is used
    // once, and the next call reads the clock again.
    const after = real ? this.#elapsed() : 0;
    this.#wallAt = real && after - before < 1 ? after : Number.NEGATIVE_INFINITY;
    return read;
  }

  /** The reading an entry's {@link Since} stands for, epoch ms. */
  #date(time: Since): number {
    return (time as { at?: number }).at ?? this.#epoch + (time as number);
  }

  #checkOpen(): void {
    if (this.#disposed) throw new DisposedError(NAME);
  }

  /** A completed entry's record, a copy its caller may change; `expiresAt` in epoch ms, read now. */
  #record(key: string, entry: Entry): CompletedRecord {
    return {
      status: 'completed',
      key,
      fingerprint: entry.raw
        ? digestOfPreimage(keptFingerprint(entry as KeptRecord))
        : keptFingerprint(entry as KeptRecord),
      createdAt: this.#date(entry.created),
      completedAt: this.#date(entry.completed),
      expiresAt: this.clock.now() + (entry.expiresAt - this.#elapsed()),
      outcome: handOut(entry as KeptRecord),
    };
  }
}

/*
 * Deadlines are whole ms: a small integer is kept in the entry itself, a fraction (the monotonic
 * clock's) in a number object of its own, one more for the collector to copy per record. A lease
 * is rounded up (it never ends early: no takeover while its owner may run), and so is a running
 * claim's expiry (rounded down, a lease under 1 ms outlived it: a fresh claim beside the owner);
 * a completed record's expiry down (it is never kept past its TTL).
 */
/**
 * Reading `at` as an entry keeps it, `epoch` the store's ({@link Since}): a small integer where it
 * is one (V8 keeps it in the entry itself; a difference of two clock readings is a double, which
 * V8 boxes in a number object of its own, even when whole); the reading itself where the
 * difference would not give it back exactly (a fraction far below the epoch or of the other sign,
 * readings past 2^53).
 */
function since(at: number, epoch: number): Since {
  const ms = at - epoch;
  const whole = ms | 0;
  return whole === ms ? whole : epoch + ms === at ? ms : { at };
}

/** How long {@link MemoryStore}'s reading of realClock serves its records' times, ms. */
const WALL_REREAD_MS = 1_000;

/**
 * The global Date when this module loaded: another one later means fake timers are installed.
 * None when the one at load is itself a fake timers' Date (it carries their `clock`).
 */
const loadedDate = 'clock' in Date ? undefined : Date;

/**
 * Whether Date and the timers are the real ones: no fake timers (@sinonjs/fake-timers, as
 * vitest and jest install them, give the faked setTimeout their `clock`), whose Date and
 * monotonic time (see realClock) may move apart.
 */
function realTimers(): boolean {
  return Date === loadedDate && (setTimeout as { clock?: unknown }).clock === undefined;
}

function leaseEnd(now: number, ms: number): number {
  return Math.ceil(now + ms);
}

function expiry(now: number, ms: number): number {
  return Math.floor(now + ms);
}

/**
 * Bodies up to this size are kept as a string of their bytes (one character a byte): a Buffer is
 * an object of about 100 bytes of its own, and keeps the 8 KB slab it was cut from alive.
 */
const STRING_BODY_BYTES = 96;

/** The body as the record keeps it: a copy (`owned`: the caller's Buffer, handed over, as it is). */
function keptBody(body: Uint8Array, owned: boolean): Uint8Array | string {
  if (body.byteLength <= STRING_BODY_BYTES) return asBuffer(body).toString('latin1');
  return owned && Buffer.isBuffer(body) ? body : Buffer.from(body);
}

/** A body handed over as a string of its bytes (one character a byte), as the record keeps it. */
function keptText(body: string): Uint8Array | string {
  return body.length <= STRING_BODY_BYTES ? body : Buffer.from(body, 'latin1');
}

const NO_BYTES = new Uint8Array(0);

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** @internal A claim's token as the store's methods hand it out: `m` and its number's digits. */
export function tokenText(token: number): string {
  return `m${token}`;
}

/**
 * @internal A token for the store's methods: a {@link NowToken} as its text. (A run claimed
 * through {@link StoreNow} holds its number, and completes through the methods where the call
 * without a promise refused: those methods may be a spy's or an outage drill's, and take text.)
 */
export function storeToken(token: NowToken): string {
  return typeof token === 'number' ? tokenText(token) : token;
}

/**
 * A token handed to the store's methods: its text as they hand it out, or none (`''`, no claim's).
 * A number is the calls without a promise's form, never the methods': refused, as before them.
 */
function textToken(token: string): string {
  return typeof token === 'string' ? token : '';
}

/**
 * The number of a token: one {@link StoreNow} handed out (a positive safe integer), or the text
 * {@link tokenText} made of one: `m` and the digits of a positive integer with no leading zero, as
 * many as a safe integer has at most; -1 (no claim's) for anything else.
 */
function tokenNumber(token: NowToken): number {
  if (typeof token === 'number') return Number.isSafeInteger(token) && token > 0 ? token : -1;
  if (typeof token !== 'string' || token.length < 2 || token.length > 17 || token.charCodeAt(0) !== 0x6d) return -1;
  let n = 0;
  for (let i = 1; i < token.length; i++) {
    const digit = token.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9 || (i === 1 && digit === 0)) return -1;
    n = n * 10 + digit;
  }
  return Number.isSafeInteger(n) ? n : -1;
}

/** A fresh copy of a kept outcome: what the caller does with it never changes the record. */
function handOut(record: KeptRecord): StoredOutcome {
  const body = keptBodyOf(record);
  if (record.kind === 'value') return { kind: 'value', value: decodeValue(body as string) };
  if (record.kind === 'aborted') return { kind: 'aborted' };
  return {
    kind: 'response',
    status: record.status,
    headers: copyHeaders(record.headers as StoredResponse['headers']),
    // A fresh Buffer of a body kept as a string, or a copy of one kept as a Buffer.
    body: typeof body === 'string' ? Buffer.from(body, 'latin1') : Buffer.from(body),
  };
}
