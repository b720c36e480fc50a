/** FNV-1a over the UTF-16 code units of a string: fast, and stable across processes. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** MurmurHash3's finaliser: spreads every input bit over every output bit. */
export function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The rendezvous score of a key on an endpoint: a uniform 32-bit number. */
export function score(keyHash: number, seed: number): number {
  return mix(Math.imul(keyHash ^ seed, 0x9e3779b1) ^ seed);
}
