import type { EndpointState } from './endpoint.js';
import { hashString, mix, score } from './hash.js';
import type { BalancerName } from './options.js';

/** Picks one endpoint out of a non-empty list of candidates. */
export interface Balancer {
  pick<E extends EndpointState>(candidates: readonly E[], key: string | number | undefined, now: number): E;
}

interface BalancerContext {
  readonly random: () => number;
  /** p2c-ewma: time constant of the latency average, ms. */
  readonly decay: number;
}

export function makeBalancer(name: BalancerName, context: BalancerContext): Balancer {
  switch (name) {
    case 'round-robin':
      return { pick: smoothWeightedRoundRobin };
    case 'least-connections':
      return { pick: (c) => twoChoices(c, context.random, load) };
    case 'consistent-hash': {
      const slots = new SlotCache();
      return { pick: (c, key) => (key === undefined ? randomPick(c, context.random) : slots.pick(c, key)) };
    }
    case 'p2c-ewma':
      return { pick: (c, _key, now) => twoChoices(c, context.random, (e) => latencyCost(e, now, context.decay)) };
  }
}

/**
 * nginx's smooth weighted round-robin: over any run of `sum(weights)` picks each endpoint gets
 * exactly its weight, spread out rather than in bursts.
 */
function smoothWeightedRoundRobin<E extends EndpointState>(candidates: readonly E[]): E {
  let total = 0;
  let best = candidates[0] as E;
  for (const e of candidates) {
    e.current += e.weight;
    total += e.weight;
    if (e.current > best.current) best = e;
  }
  best.current -= total;
  return best;
}

/** Power of two choices: the cheaper of two distinct endpoints drawn at random. */
function twoChoices<E extends EndpointState>(
  candidates: readonly E[],
  random: () => number,
  cost: (e: EndpointState) => number,
): E {
  const n = candidates.length;
  if (n === 1) return candidates[0] as E;
  const i = Math.min(n - 1, Math.floor(random() * n));
  let j = Math.min(n - 2, Math.floor(random() * (n - 1)));
  if (j >= i) j++;
  const a = candidates[i] as E;
  const b = candidates[j] as E;
  const ca = cost(a);
  const cb = cost(b);
  if (ca !== cb) return ca < cb ? a : b;
  return a.index < b.index ? a : b;
}

function load(e: EndpointState): number {
  return e.inFlight / e.weight;
}

/**
 * Finagle's peak EWMA cost: latency times the queue it would join. The average fades toward
 * zero while an endpoint gets no traffic, so a once-slow endpoint is tried again in time.
 */
function latencyCost(e: EndpointState, now: number, decay: number): number {
  // A small floor keeps the queue length in play while no latency is known yet.
  return (fadedEwma(e, now, decay) + 0.001) * (e.inFlight + 1);
}

/** The latency average, faded toward zero for the time since its last sample. */
export function fadedEwma(e: EndpointState, now: number, decay: number): number {
  return e.ewma * Math.exp(-Math.max(0, now - e.ewmaAt) / decay);
}

function randomPick<E extends EndpointState>(candidates: readonly E[], random: () => number): E {
  return candidates[Math.min(candidates.length - 1, Math.floor(random() * candidates.length))] as E;
}

/** Keys hash into this many slots; each slot goes to one endpoint. 2^16 keeps shares within ~1%. */
const SLOTS = 65_536;

/** The slot a key hashes to. */
function slotOf(key: string | number): number {
  return mix(hashString(typeof key === 'string' ? key : String(key))) & (SLOTS - 1);
}

/**
 * Consistent hashing in two steps: a key hashes to one of 65,536 slots, and each slot goes to
 * the endpoint that wins rendezvous (highest random weight) hashing for it. Removing an
 * endpoint moves only the slots it held, so only its keys, about 1/N of them; adding one takes
 * about 1/(N+1). Weights use the logarithmic method, so shares follow them too.
 * This function scores every candidate; a balancer remembers each slot's winner instead.
 */
export function rendezvous<E extends EndpointState>(candidates: readonly E[], key: string | number): E {
  return candidates[slotWinner(candidates, slotOf(key))] as E;
}

/** The index in `candidates` of the endpoint a slot goes to. */
function slotWinner(candidates: readonly EndpointState[], slot: number): number {
  const slotHash = mix(slot ^ 0x5bd1e995);
  const first = candidates[0] as EndpointState;
  let uniform = true;
  for (const e of candidates) if (e.weight !== first.weight) uniform = false;
  let best = 0;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < candidates.length; i++) {
    const e = candidates[i] as EndpointState;
    const h = score(slotHash, e.seed);
    // With equal weights the raw hash orders endpoints as the weighted score would, without a log.
    // Otherwise (h + 0.5) / 2^32 is uniform in (0, 1), and -w / ln(u) is the weighted score.
    const s = uniform ? h : -e.weight / Math.log((h + 0.5) / 4_294_967_296);
    if (s > bestScore || (s === bestScore && e.index < (candidates[best] as EndpointState).index)) {
      best = i;
      bestScore = s;
    }
  }
  return best;
}

/**
 * Each slot's winner, remembered per list of candidates: the failover set replaces its list
 * when membership or health changes, so a new list starts a new memory and nothing stale is
 * read. A list gets a memory on its second pick; one-off lists (the rest after a failed try)
 * are scored directly. A pick of a remembered slot costs the same for 3 endpoints as for 100.
 */
class SlotCache {
  #list: readonly EndpointState[] | undefined;
  #winners: Uint8Array | Uint16Array | undefined;
  readonly #seen = new WeakSet<readonly EndpointState[]>();
  readonly #memos = new WeakMap<readonly EndpointState[], Uint8Array | Uint16Array>();

  pick<E extends EndpointState>(candidates: readonly E[], key: string | number): E {
    const slot = slotOf(key);
    const winners = candidates === this.#list ? this.#winners : this.#memo(candidates);
    if (winners === undefined) return candidates[slotWinner(candidates, slot)] as E;
    // Stored as index + 1: 0 is a slot not yet scored.
    let at = winners[slot] as number;
    if (at === 0) {
      at = slotWinner(candidates, slot) + 1;
      winners[slot] = at;
    }
    return candidates[at - 1] as E;
  }

  #memo(candidates: readonly EndpointState[]): Uint8Array | Uint16Array | undefined {
    let winners = this.#memos.get(candidates);
    if (winners === undefined) {
      if (!this.#seen.has(candidates) || candidates.length >= 65_535) {
        this.#seen.add(candidates);
        return undefined;
      }
      winners = candidates.length < 255 ? new Uint8Array(SLOTS) : new Uint16Array(SLOTS);
      this.#memos.set(candidates, winners);
    }
    this.#list = candidates;
    this.#winners = winners;
    return winners;
  }
}
