import { Buffer } from 'node:buffer';
import { createHash, randomUUID } from 'node:crypto';
import { type Clock, elapsedTime, parseOptions, realClock, type TimerHandle } from '@holdfast/core';
import { IdempotencyValueError, StoreUnavailableError } from './errors.js';
import { type RedisClient, type RedisStoreOptions, redisStoreOptionsSchema } from './options.js';
import { claimScript, completeScript, extendScript, releaseScript, type Script } from './redis-scripts.js';
import { type ClaimResult, decodeOutcome, encodeOutcome, type IdempotencyStore, type StoredOutcome } from './store.js';

type Operation = 'claim' | 'complete' | 'release' | 'extend';

const ENDED = 'the Redis client ended (quit, disconnect, or ioredis gave up)';

/**
 * Idempotency records in Redis, shared by every instance of a service. Each step is one Lua
 * script, so one round trip: a claim (which also replays a completed key), a completion, a
 * release. Works with a standalone client, `Redis.Cluster` and Sentinel.
 *
 * @example
 * const store = redisStore({ client: new Redis(process.env.REDIS_URL) });
 */
export function redisStore(options: RedisStoreOptions): RedisStore {
  const parsed = parseOptions('redisStore', redisStoreOptionsSchema, options);
  return new RedisStore(
    parsed.client,
    parsed.prefix,
    parsed.commandTimeout,
    parsed.onStoreError,
    parsed.name,
    parsed.clock ?? realClock,
    parsed.maxValueBytes,
    parsed.waitForReplicas,
    parsed.allowEviction,
  );
}

/** Claims this store made and has not completed or released yet: token to fingerprint. */
const MAX_PENDING = 100_000;

/** The store {@link redisStore} returns. It does not own the client: close that yourself. */
export class RedisStore implements IdempotencyStore {
  constructor(
    /** The ioredis client (standalone, Sentinel or Cluster); the store never closes it. */
    readonly client: RedisClient,
    /** Prepended to every key. */
    readonly prefix: string,
    /** How long one step may take, in ms, before it fails with `E_STORE_UNAVAILABLE`. */
    readonly commandTimeout: number,
    readonly onStoreError: 'fail-closed' | 'fail-open',
    /** Shown as `source` on the store's events. */
    readonly name: string,
    /** Times each step's `commandTimeout`. Records and leases are dated by the Redis server (`TIME`). */
    readonly clock: Clock,
    /** The largest encoded record sent to Redis, in bytes. */
    readonly maxValueBytes = 4_194_304,
    /** Wait for this many replicas to acknowledge each write (`WAIT`). */
    readonly waitForReplicas?: { readonly replicas: number; readonly timeoutMs: number },
    /** Claim on a Redis that may evict keys (see the option). */
    readonly allowEviction = false,
  ) {}

  /** Per connection (its socket), whether its Redis evicts keys: why, or undefined if not. */
  #eviction: { readonly stream: unknown; evicts: Promise<string | undefined> | string | undefined } | undefined;

  // The fingerprint of each claim in flight, so that a completion can rewrite a record its
  // claim lost in a failover. Bounded: the oldest are forgotten first (they only lose that help).
  readonly #pending = new Map<string, { readonly key: string; readonly fingerprint: string }>();

  /**
   * Durability, per node: `true` once a WAIT there came back whole and none is on the wire, or
   * the last WAIT sent or queued there (it settles to whether it came back whole). See
   * {@link RedisStore.#evalAndWait}.
   */
  readonly #nodes = new Map<string, true | Promise<boolean>>();

  /**
   * Steps waiting for a ready connection (each its send, and its failure should the client end
   * first), behind one `ready` and one `end` listener however many wait: one each passed Node's
   * limit of 10 at the first busy outage and warned of a leak where there is none.
   */
  readonly #waiting = new Map<() => void, () => void>();
  readonly #onReady = (): void => {
    const all = [...this.#waiting.keys()];
    this.#waiting.clear();
    this.client.removeListener('end', this.#onEnd);
    for (const send of all) send();
  };
  /**
   * The client ended while steps waited (a shutdown's `disconnect()` or `quit()`, or ioredis gave
   * up reconnecting): no `ready` will come, so they fail now, not once their timer ends (a call's
   * deadline, ref'd: it held the process that long after Ctrl-C).
   */
  readonly #onEnd = (): void => {
    const all = [...this.#waiting.values()];
    this.#waiting.clear();
    this.client.removeListener('ready', this.#onReady);
    for (const fail of all) fail();
  };

  /** The socket of a standalone or Sentinel client when its node was last used (see {@link #connection}). */
  #stream: unknown;

  /**
   * Per node (as {@link nodeOf} names it), per script: `true` once the node ran it, so EVALSHA
   * finds it there; else the call that finds out, on its way (settles to whether it did). Calls
   * made meanwhile wait for it instead of each being answered NOSCRIPT and sending the source:
   * 1,000 renewals at a first tick were 2,000 commands. Cleared when the connection is lost.
   */
  readonly #scripts = new Map<string, Map<Script, true | Promise<boolean>>>();

  /** Per node, the confirmation queued behind its last WAIT: writes made meanwhile join it. */
  readonly #queued = new Map<string, { readonly written: Written[]; readonly acked: Promise<number[]> }>();

  /**
   * The Redis key of a record: the prefix, then the SHA-256 of the key as a Cluster hash tag.
   * Hashed, so whatever characters the key has (`}` included) it cannot end the tag early, and
   * two keys never share a record: as UTF-8 a lone surrogate reads as U+FFFD, so keys (HTTP
   * scopes: a JWT claim, a name cut in the middle of an emoji) that differ only in one shared a
   * record, and one caller got another's stored response. A key that is not well-formed is hashed
   * as its UTF-16 code units after a 0xff byte, which no UTF-8 holds; a well-formed one as its
   * UTF-8, as before (records written before are still found).
   */
  keyOf(key: string): string {
    const hash = createHash('sha256');
    if ((key as unknown as { isWellFormed(): boolean }).isWellFormed()) hash.update(key);
    else hash.update('\xff', 'latin1').update(key, 'utf16le');
    return `${this.prefix}{${hash.digest('base64url')}}`;
  }

  async claim(key: string, fingerprint: string, leaseMs: number): Promise<ClaimResult> {
    const token = randomUUID();
    const args = [wireFingerprint(fingerprint), Math.ceil(leaseMs), token];
    const reply = (await this.#run('claim', key, claimScript, args, (sent) =>
      this.#withdraw(key, token, sent, leaseMs),
    )) as [Buffer, ...unknown[]];
    switch (reply[0].toString()) {
      case 'claimed':
        if (this.#pending.size >= MAX_PENDING) this.#pending.delete(this.#pending.keys().next().value as string);
        this.#pending.set(token, { key, fingerprint });
        return { status: 'claimed', token, takeover: reply[1] === 1 };
      case 'inProgress':
        return { status: 'inProgress', retryAfterMs: Number(reply[1]) };
      case 'mismatch':
        return { status: 'mismatch' };
      default: {
        const [, f, createdAt, completedAt, expiresAt, kind, meta, body] = reply as [
          Buffer,
          Buffer,
          number,
          number,
          number,
          Buffer,
          Buffer,
          Buffer,
        ];
        const k = kind.toString();
        const outcome = decodeOutcome({
          kind: k === 'response' || k === 'aborted' ? k : 'value',
          meta: meta.toString(),
          body,
        });
        return {
          status: 'completed',
          record: {
            status: 'completed',
            key,
            fingerprint: f[0] === 0xff ? f.toString('utf16le', 1) : f.toString(),
            createdAt,
            completedAt,
            expiresAt,
            outcome,
          },
        };
      }
    }
  }

  async complete(key: string, token: string, outcome: StoredOutcome, ttlMs: number): Promise<boolean> {
    const encoded = encodeOutcome(outcome); // before the round trip: a bad value changes nothing
    const size = Buffer.byteLength(encoded.meta) + encoded.body.byteLength;
    if (size > this.maxValueBytes) {
      throw new IdempotencyValueError(
        'outcome',
        `it is ${size} bytes encoded, over ${this.name}'s maxValueBytes of ${this.maxValueBytes}`,
      );
    }
    const pending = this.#pending.get(token);
    const fingerprint = pending?.key === key ? wireFingerprint(pending.fingerprint) : '';
    const args = [token, Math.ceil(ttlMs), encoded.kind, encoded.meta, encoded.body, fingerprint];
    const done = (await this.#run('complete', key, completeScript, args)) === 1;
    this.#pending.delete(token);
    return done;
  }

  async release(key: string, token: string): Promise<boolean> {
    this.#pending.delete(token);
    return (await this.#run('release', key, releaseScript, [token])) === 1;
  }

  async extend(key: string, token: string, leaseMs: number): Promise<boolean> {
    return (await this.#run('extend', key, extendScript, [token, Math.ceil(leaseMs)])) === 1;
  }

  /**
   * Whether the Redis behind the client may evict keys, read once per connection (`INFO memory`;
   * every master of a Cluster). Not read while the client is not ready (the claim waits for it,
   * and the next claim reads it), nor if Redis refuses INFO or does not answer in time.
   */
  #evicts(): Promise<string | undefined> | string | undefined {
    const { client } = this;
    const { stream } = client as { stream?: unknown };
    const known = this.#eviction;
    if (known !== undefined && known.stream === stream) return known.evicts;
    if (client.status !== 'ready' && client.status !== 'wait') return undefined;
    type Info = { info?(section: string): Promise<string> };
    const nodes: Info[] = (client as { isCluster?: boolean }).isCluster
      ? (client as unknown as { nodes(role: 'master'): Info[] }).nodes('master')
      : [client as Info];
    // A client of its own making (the store asks only callBuffer, once and removeListener of it).
    if (!nodes.every((node) => typeof node.info === 'function')) return undefined;
    let timer: TimerHandle | undefined;
    const evicts = Promise.race([
      Promise.all(
        nodes.map((node) => (node as unknown as { info(section: string): Promise<string> }).info('memory')),
      ).then((infos) => {
        for (const info of infos) {
          const max = /^maxmemory:(\d+)/m.exec(info)?.[1];
          const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
          if (max !== undefined && Number(max) > 0 && policy !== undefined && policy !== 'noeviction') {
            return `maxmemory-policy ${policy}, maxmemory ${max}`;
          }
        }
        return undefined;
      }),
      new Promise<undefined>((resolve) => {
        timer = this.clock.setTimeout(() => resolve(undefined), this.commandTimeout);
      }),
    ]).then(
      (why) => {
        this.clock.clearTimeout(timer as TimerHandle);
        return why;
      },
      () => {
        this.clock.clearTimeout(timer as TimerHandle);
        // INFO refused (renamed away on some managed services): not known, and not asked again.
        return undefined;
      },
    );
    const eviction: { readonly stream: unknown; evicts: Promise<string | undefined> | string | undefined } = {
      stream,
      evicts,
    };
    this.#eviction = eviction;
    void evicts.then((why) => {
      eviction.evicts = why;
    });
    return evicts;
  }

  /**
   * Runs a script in one round trip (two after a restart flushed it), bounded by `commandTimeout`.
   * A command is sent only on a ready connection: queued in ioredis' offline queue during an
   * outage, a claim we already reported as failed would land after reconnecting and hold its key.
   * `abandoned` runs when we give up on a command that was sent, with the command's own promise.
   */
  #run(
    operation: Operation,
    key: string,
    lua: Script,
    args: (string | number | Buffer)[],
    abandoned?: (sent: Promise<unknown>) => void,
  ): Promise<unknown> {
    const { client } = this;
    if (client.status === 'end') return Promise.reject(this.#unavailable(operation, key, ENDED));
    const redisKey = this.keyOf(key);
    return new Promise((resolve, reject) => {
      let sent: Promise<unknown> | undefined;
      let settled = false;
      const send = (): void => {
        if (settled) return;
        if (operation === 'claim' && !this.allowEviction) {
          // Read once per connection, on it, before its first claim (see #evicts).
          const evicts = this.#evicts();
          if (evicts instanceof Promise) return void evicts.then(send);
          if (evicts !== undefined) {
            const reason = `Redis may evict keys (${evicts}): a running claim evicted lets a second caller run the function beside the first. Set maxmemory-policy noeviction (or maxmemory 0), or pass allowEviction: true`;
            finish(() => reject(this.#unavailable(operation, key, reason, undefined, true)));
            return;
          }
        }
        const call =
          this.waitForReplicas === undefined || operation === 'release' || operation === 'extend'
            ? this.#eval
            : this.#evalAndWait;
        sent = call(lua, redisKey, args, operation);
        sent.then(
          (reply) => finish(() => resolve(reply)),
          (error: unknown) => {
            const reason = error instanceof Error ? error.message : String(error);
            finish(() => reject(this.#unavailable(operation, key, reason, error)), true);
          },
        );
      };
      const finish = (settle: () => void, failed = false) => {
        if (settled) return;
        settled = true;
        this.clock.clearTimeout(timer);
        if (this.#waiting.delete(send) && this.#waiting.size === 0) {
          client.removeListener('ready', this.#onReady);
          client.removeListener('end', this.#onEnd);
        }
        if (failed && sent !== undefined) abandoned?.(sent);
        settle();
      };
      // Our own timer: a reconnect loop or a hung server must not hold the caller.
      const timer = this.clock.setTimeout(
        () => {
          const reason =
            sent !== undefined
              ? `Redis did not answer within ${this.commandTimeout} ms`
              : `Redis is not connected (client status "${client.status}") and did not reconnect within ${this.commandTimeout} ms`;
          finish(() => reject(this.#unavailable(operation, key, reason)), true);
        },
        this.commandTimeout,
        { ref: true },
      );
      // `wait`: a lazyConnect client connects on its first command.
      if (client.status === 'ready' || client.status === 'wait') send();
      else {
        // A new connection, perhaps to a new master: its replicas are to be confirmed again, and
        // its scripts found again (a restarted server has none).
        this.#nodes.clear();
        this.#scripts.clear();
        if (this.#waiting.size === 0) {
          client.once('ready', this.#onReady);
          client.once('end', this.#onEnd);
        }
        this.#waiting.set(send, () => finish(() => reject(this.#unavailable(operation, key, ENDED))));
      }
    });
  }

  readonly #eval = (lua: Script, redisKey: string, args: (string | number | Buffer)[]): Promise<unknown> =>
    this.#script(lua, nodeOf(this.client, redisKey), (command) =>
      this.client.callBuffer(command, command === 'eval' ? lua.source : lua.sha, 1, redisKey, ...args),
    );

  /**
   * Runs a script on `node` by `send`ing it (EVALSHA, or EVAL with its source): every script of
   * the store, alone or in a pipeline, goes through here. EVALSHA where the node is known to have
   * it; EVAL after NOSCRIPT. The first call on a node not yet known to have it finds out (EVALSHA,
   * then EVAL on NOSCRIPT), and calls made meanwhile wait for that, then send EVALSHA: one EVAL per
   * script and node, not one per call. A call that finds the script gone (a restart, a failover,
   * SCRIPT FLUSH) sends it again for the calls behind it. A wait is bounded by `commandTimeout`
   * (a reply lost in a partition never comes): past it, calls send as if nothing were known.
   */
  #script<T>(lua: Script, node: string, send: (command: 'evalsha' | 'eval') => Promise<T>): Promise<T> {
    this.#connection();
    let scripts = this.#scripts.get(node);
    if (scripts === undefined) this.#scripts.set(node, (scripts = new Map()));
    const known = scripts.get(lua);
    const evalsha = () =>
      send('evalsha').catch((error: unknown) => (isNoScript(error) ? send('eval') : Promise.reject(error)));
    if (known === undefined) return this.#findOut(scripts, lua, evalsha());
    if (known !== true) return known.then(evalsha);
    return send('evalsha').catch((error: unknown) => {
      if (!isNoScript(error)) throw error;
      const now = scripts.get(lua);
      return now === true ? this.#findOut(scripts, lua, send('eval')) : (now ?? Promise.resolve()).then(evalsha);
    });
  }

  /**
   * A new socket is a new connection, perhaps to a new server (a restart, a failover, while no
   * call saw the client not ready): its replicas are to be confirmed again, and its scripts found
   * again, by one call (else each call made then was answered NOSCRIPT: 200 claims after a restart
   * were 400 EVAL/EVALSHA). Cluster clients have no one socket; a failover there moves the slot to
   * another node, known on its own.
   */
  #connection(): void {
    const { stream } = this.client as { stream?: unknown };
    if (stream === this.#stream) return;
    this.#stream = stream;
    this.#nodes.clear();
    this.#scripts.clear();
  }

  /** Makes `call` the one that finds out whether the node has `lua` (see {@link #script}). */
  #findOut<T>(scripts: Map<Script, true | Promise<boolean>>, lua: Script, call: Promise<T>): Promise<T> {
    let timer: TimerHandle | undefined;
    const found = Promise.race([
      call.then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((resolve) => {
        timer = this.clock.setTimeout(() => resolve(false), this.commandTimeout);
      }),
    ]);
    scripts.set(lua, found);
    void found.then((ran) => {
      this.clock.clearTimeout(timer as TimerHandle);
      if (scripts.get(lua) !== found) return;
      if (ran) scripts.set(lua, true);
      else scripts.delete(lua);
    });
    return call;
  }

  /**
   * A script whose write counts once `replicas` replicas have it (WAIT).
   *
   * WAIT holds every command behind it on the connection until its replicas answer or its
   * timeout ends. So at most one WAIT is on the wire per node (per Cluster shard, by slot): were
   * each write to send its own behind its script, then once the replicas stop answering (a
   * replica died, froze or fell behind; the master is new after a failover and has none yet)
   * every WAIT already sent would hold the connection for `timeoutMs` in turn, and replays
   * queued behind them would time out too. On a node whose replicas answered the last WAIT and
   * where none is on the wire, the script and its WAIT go in one pipeline. Elsewhere the script
   * runs alone (a replay or an "in progress" is answered at once), and writes wait behind the
   * node's last WAIT: whole, the next one confirms all of them; short, they fail at once (a
   * claim is withdrawn).
   */
  readonly #evalAndWait = async (
    lua: Script,
    redisKey: string,
    args: (string | number | Buffer)[],
    operation: Operation,
  ): Promise<unknown> => {
    const { replicas } = this.waitForReplicas as { replicas: number };
    this.#connection();
    const node = nodeOf(this.client, redisKey);
    if (this.#nodes.get(node) === true) {
      const sent = this.#script(lua, node, (command) =>
        this.#pipelined([command, command === 'eval' ? lua.source : lua.sha, 1, redisKey, ...args]),
      );
      this.#last(
        node,
        sent.then(([, acked]) => Number(acked)),
      );
      const [reply, acked] = await sent;
      // A claim that only reports what is there wrote nothing: no replica needs to have it.
      if (wrote(reply) && Number(acked) < replicas) throw this.#short(Number(acked));
      return reply;
    }
    const reply = await this.#eval(lua, redisKey, args);
    if (!wrote(reply)) return reply;
    const claim = operation === 'claim'; // args: fingerprint, lease, token; or token, ttl, ...
    const acked = await this.#join(node, {
      redisKey,
      status: claim ? 'p' : 'c',
      token: String(args[claim ? 2 : 0]),
      ttl: (claim ? 2 : 1) * Number(args[1]),
    });
    if (acked < replicas) throw this.#short(acked);
    return reply;
  };

  /**
   * Confirms a write behind the node's last WAIT: joins the confirmation queued there, or queues
   * one (sent at once when no WAIT is on the wire). Resolves to what WAIT counted for this write.
   */
  #join(node: string, written: Written): Promise<number> {
    const queued = this.#queued.get(node);
    if (queued) {
      const index = queued.written.push(written) - 1;
      return queued.acked.then((counts) => counts[index] as number);
    }
    const previous = this.#nodes.get(node);
    const batch = [written];
    const acked = (async () => {
      const whole = previous === undefined || previous === true || (await previous);
      if (this.#queued.get(node)?.written === batch) this.#queued.delete(node);
      if (!whole) throw this.#short(0); // the WAIT before it came back short: not one more
      return this.#confirm(batch);
    })();
    if (previous !== undefined && previous !== true) this.#queued.set(node, { written: batch, acked });
    // WAIT's count, unless no record was found as written.
    this.#last(
      node,
      acked.then((counts) => counts.find((count) => count > 0) ?? 0),
    );
    return acked.then((counts) => counts[0] as number);
  }

  /** Makes `wait` the node's last WAIT: settled, and still the last, it says whether the node is whole. */
  #last(node: string, wait: Promise<number>): void {
    const { replicas } = this.waitForReplicas as { replicas: number };
    const whole = wait.then(
      (acked) => acked >= replicas,
      () => false,
    );
    this.#nodes.set(node, whole);
    void whole.then((ok) => {
      if (this.#nodes.get(node) !== whole) return;
      if (ok) this.#nodes.set(node, true);
      else this.#nodes.delete(node);
    });
  }

  /**
   * Confirms writes that scripts made earlier on this connection: reads each record and sets its
   * expiry again (a write, so WAIT counts the replicas that have everything up to it), then WAIT.
   * Resolves to WAIT's count for each, or 0 where the record there is not the one its script
   * wrote (a failover in between: ioredis resends unanswered commands to the new master).
   */
  async #confirm(written: readonly Written[]): Promise<number[]> {
    const replies = await this.#pipelined(
      ...written.flatMap(({ redisKey, ttl }) => [
        ['hmget', redisKey, 's', 't'],
        ['pexpire', redisKey, ttl],
      ]),
    );
    const acked = Number(replies.at(-1));
    return written.map(({ status, token }, i) => {
      const [s, t] = (replies[2 * i] ?? []) as (Buffer | null)[];
      return String(s) === status && String(t) === token ? acked : 0;
    });
  }

  /** Commands and a WAIT behind them in one pipeline, so that WAIT reaches the node of their key. */
  async #pipelined(...commands: (string | number | Buffer)[][]): Promise<unknown[]> {
    const { replicas, timeoutMs } = this.waitForReplicas as { replicas: number; timeoutMs: number };
    const pipeline = this.client.pipeline?.();
    if (pipeline === undefined) throw new Error('waitForReplicas needs a client with pipeline()');
    for (const [name, ...rest] of commands) pipeline.callBuffer(String(name), ...rest);
    const replies = (await pipeline.callBuffer('wait', replicas, timeoutMs).exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    return replies.map(([, reply]) => reply);
  }

  #short(acked: number): Error {
    const { replicas, timeoutMs } = this.waitForReplicas as { replicas: number; timeoutMs: number };
    return new Error(`only ${acked} of ${replicas} replicas acknowledged the write within ${timeoutMs} ms (WAIT)`);
  }

  /**
   * A claim we gave up on may still reach Redis: ioredis resends unanswered commands after a
   * reconnect, and a hung server runs what it already read. Queued behind it on the same
   * connection, a release by its token withdraws it, so it cannot hold the key for a lease.
   * Sent again once the claim itself has settled, until Redis answers it (ever more slowly, for
   * at most the claim's lease): the first may be lost where the claim is not. When a reconnection attempt
   * fails (`maxRetriesPerRequest`), ioredis fails the commands it holds, the release among them,
   * though the claim ran before the connection dropped (or is resent later, once a reconnection
   * that connected failed before it was ready); a
   * claim sent again as EVAL after NOSCRIPT goes behind a release already queued.
   */
  #withdraw(key: string, token: string, claim: Promise<unknown>, leaseMs: number): void {
    const redisKey = this.keyOf(key);
    const release = (): Promise<unknown> =>
      this.client.status === 'end' ? Promise.resolve() : this.#eval(releaseScript, redisKey, [token]);
    const behind = release().catch(() => {});
    const elapsed = elapsedTime(this.clock);
    const until = elapsed() + leaseMs;
    // Slower each time (100, 200, 400 ... ms): a Redis that answers with errors (BUSY) is not
    // sent one per claim given up on every 100 ms for its lease.
    let wait = 50;
    const again = (): void => {
      release().catch(() => {
        // Past its lease the claim holds the key no longer. The timer holds nothing open.
        if (elapsed() + (wait *= 2) < until) this.clock.setTimeout(again, wait);
      });
    };
    void Promise.allSettled([claim, behind]).then(again);
  }

  #unavailable(
    operation: Operation,
    key: string,
    reason: string,
    cause?: unknown,
    refused = false,
  ): StoreUnavailableError {
    return new StoreUnavailableError(this.name, operation, key, reason, { cause, refused });
  }
}

/** A record a script wrote, as it left it: its status (p in progress, c completed) and token. */
interface Written {
  readonly redisKey: string;
  readonly status: 'p' | 'c';
  readonly token: string;
  readonly ttl: number;
}

/** Whether a script's reply says it wrote: a claim when it claimed, a completion when it stored (1). */
function wrote(reply: unknown): boolean {
  return Array.isArray(reply) ? String(reply[0]) === 'claimed' : reply === 1;
}

/**
 * The node a key lives on: for a Cluster client, the master of its slot as the client knows it
 * (`host:port`); '' for a standalone or Sentinel client, which talks to one master.
 */
function nodeOf(client: RedisClient, redisKey: string): string {
  const { slots } = client as { slots?: unknown };
  return Array.isArray(slots) ? String((slots[keySlot(redisKey)] as unknown[] | undefined)?.[0] ?? '') : '';
}

/** The Cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key without one. */
export function keySlot(redisKey: string): number {
  const open = redisKey.indexOf('{');
  const close = open < 0 ? -1 : redisKey.indexOf('}', open + 1);
  const hashed = close > open + 1 ? redisKey.slice(open + 1, close) : redisKey;
  let crc = 0;
  for (const byte of Buffer.from(hashed)) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc & 16383;
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/**
 * A fingerprint as Redis compares it. A well-formed one as its UTF-8 (as before); one that is
 * not, as a 0xff byte (which no UTF-8 holds) and its UTF-16 code units: as UTF-8 each lone
 * surrogate reads as U+FFFD, and two inputs that differ only there (a custom fingerprint of a
 * name cut in the middle of an emoji) were one fingerprint, the second caller replayed the first's
 * result where memoryStore() answered a mismatch.
 */
function wireFingerprint(fingerprint: string): string | Buffer {
  return (fingerprint as unknown as { isWellFormed(): boolean }).isWellFormed()
    ? fingerprint
    : Buffer.concat([Buffer.of(0xff), Buffer.from(fingerprint, 'utf16le')]);
}
