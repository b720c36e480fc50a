import { isIP } from 'node:net';
import { HoldfastConfigError } from '@holdfast/core';

/**
 * The key of a client's IP address for a rate limit: an IPv4 address as it is (an IPv4-mapped
 * IPv6 one, `::ffff:203.0.113.7`, and one a stateless NAT64 translated, `64:ff9b::203.0.113.7`,
 * as its IPv4 form), an IPv6 address as its network of
 * `ipv6Prefix` bits (`2001:db8:0:100:0:0:0:0/56`), whatever its spelling; a port after it
 * (`203.0.113.7:50123`, `[2001:db8::1]:443`, as some proxies write it) is left out, and so are
 * brackets without one (`[2001:db8::1]`) and the quotes of a Forwarded header's value
 * (`"[2001:db8::1]:4711"`). A client is given a whole IPv6
 * network (a /64 at least, usually a /56 or a /48), and keyed by its full address it would get a
 * fresh limit with each of them. Anything that is not an IP address
 * (undefined, a Unix socket's '') is returned as it is. `ipv6Prefix` is a whole number from 0
 * to 128, or a `HoldfastConfigError` (`E_CONFIG`).
 *
 * @example
 * app.use(loadShedding({ policy: tokenBucket({ limit: 50 }), key: (req) => ipKey(req.ip) }));
 */
export function ipKey(ip: string | undefined, ipv6Prefix = 56): string | undefined {
  if (!(Number.isInteger(ipv6Prefix) && ipv6Prefix >= 0 && ipv6Prefix <= 128)) {
    throw new HoldfastConfigError('ipKey', [
      { path: 'ipv6Prefix', message: 'must be a whole number from 0 to 128', value: ipv6Prefix },
    ]);
  }
  if (typeof ip !== 'string') return ip;
  // A Forwarded header's value as RFC 7239 §6 writes it for IPv6, a quoted-string
  // (for="[2001:db8::1]:4711"): one pair of quotes off and its quoted-pairs (\") read, or every
  // such client was keyed by its full address and port, a fresh limit each. Only if an address is
  // inside: anything else is returned as it is.
  const text = /^"(.*)"$/s.test(ip) ? ip.slice(1, -1).replace(/\\(.)/gs, '$1') : ip;
  // With a port ('203.0.113.7:50123', '[2001:db8::1]:443': some proxies write it), which changes
  // with each connection, or in brackets without one (a Forwarded header's for="[2001:db8::1]"):
  // the address alone.
  const bare = /^\[(.+)\](?::\d+)?$|^([\d.]+):\d+$/.exec(text);
  const address = bare === null ? text : ((bare[1] ?? bare[2]) as string);
  if (isIP(address)) ip = address;
  if (isIP(ip) !== 6) return ip;
  // The eight 16-bit groups: the zone id dropped, a dotted IPv4 tail read as two groups.
  const [head = '', tail = ''] = (ip.split('%')[0] as string)
    .replace(
      /(\d+)\.(\d+)\.(\d+)\.(\d+)$/,
      (_, a, b, c, d) => `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`,
    )
    .split('::');
  const first = head ? head.split(':') : [];
  const last = tail ? tail.split(':') : [];
  const g = [...first, ...Array(8 - first.length - last.length).fill('0'), ...last].map((x) => Number.parseInt(x, 16));
  // IPv4-mapped (::ffff:0:0/96), or translated by a stateless NAT64 (64:ff9b::/96, RFC 6052, as
  // SIIT-DC shows IPv4 clients to an IPv6-only server): the IPv4 client's own key, not one /56
  // that every IPv4 client would share.
  const mapped = g[5] === 0xffff && !g.slice(0, 5).some(Boolean);
  if (mapped || (g[0] === 0x64 && g[1] === 0xff9b && !g.slice(2, 6).some(Boolean))) {
    const [hi, lo] = [g[6] as number, g[7] as number];
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  let bits = ipv6Prefix;
  const masked = g.map((x) => {
    const drop = 16 - Math.min(16, Math.max(0, bits));
    bits -= 16;
    return ((x >> drop) << drop).toString(16);
  });
  return `${masked.join(':')}/${ipv6Prefix}`;
}
