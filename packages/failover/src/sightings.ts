/**
 * Drops one of 65 sightings of a primary or master (pgRoles, redisRoles), oldest first: the one whose loss blurs the least for its age. A
 * replica that replayed up to a dropped one is judged by the next, later one, so its lag reads
 * short by their gap: kept to a share of its age, the oldest and the newest always kept. Dropping
 * the oldest, a busy primary's 64 sightings spanned 64 checks (3.2 s at an interval of 100 ms,
 * half that through two sets' pools), and a replica stalled longer read as lagging that much.
 */
export function thin(list: { readonly at: number }[], now: number): void {
  let drop = 1;
  let least = Number.POSITIVE_INFINITY;
  for (let i = 1; i < list.length - 1; i++) {
    const before = list[i - 1] as { readonly at: number };
    const blur = ((list[i + 1] as { readonly at: number }).at - before.at) / Math.max(1, now - before.at);
    if (blur < least) {
      least = blur;
      drop = i;
    }
  }
  list.splice(drop, 1);
}
