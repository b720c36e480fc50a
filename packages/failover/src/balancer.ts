import type { EndpointState } from './endpoint.js';
import { hashString, score } from './hash.js';
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
    case 'consistent-hash':
      return { pick: (c, key) => (key === undefined ? randomPick(c, context.random) : rendezvous(c, key)) };
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

/**
 * Rendezvous (highest random weight) hashing: a key goes to the endpoint with the best score.
 * Removing an endpoint moves only the keys it held, about 1/N of them; adding one takes about
 * 1/(N+1). Weights use the logarithmic method, so shares follow them too.
 */
export function rendezvous<E extends EndpointState>(candidates: readonly E[], key: string | number): E {
  const keyHash = hashString(typeof key === 'string' ? key : String(key));
  const first = candidates[0] as E;
  let uniform = true;
  for (const e of candidates) if (e.weight !== first.weight) uniform = false;
  let best = first;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (const e of candidates) {
    const h = score(keyHash, e.seed);
    // With equal weights the raw hash orders endpoints as the weighted score would, without a log.
    // Otherwise (h + 0.5) / 2^32 is uniform in (0, 1), and -w / ln(u) is the weighted score.
    const s = uniform ? h : -e.weight / Math.log((h + 0.5) / 4_294_967_296);
    if (s > bestScore || (s === bestScore && e.index < best.index)) {
      best = e;
      bestScore = s;
    }
  }
  return best;
}
