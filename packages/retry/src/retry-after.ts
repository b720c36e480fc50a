import { isResponseLike } from './classify.js';

type HeaderBag = { get?: (name: string) => unknown } & Record<string, unknown>;

/**
 * How long the server asked us to wait, in ms: `Retry-After` on a Response result, or on an
 * error's `response.headers` or `headers`, in seconds or as an HTTP-date; or an error's own
 * `retryAfterMs`. Undefined when there is no usable hint.
 */
export function retryAfterOf(value: unknown, isResult: boolean, now: number): number | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  try {
    if (isResult) return isResponseLike(value) ? parseRetryAfter(value.headers.get('retry-after'), now) : undefined;
    const e = value as { retryAfterMs?: unknown; response?: { headers?: unknown }; headers?: unknown };
    if (typeof e.retryAfterMs === 'number' && Number.isFinite(e.retryAfterMs) && e.retryAfterMs >= 0) {
      return e.retryAfterMs;
    }
    const headers = e.response?.headers ?? e.headers;
    return parseRetryAfter(headerOf(headers, 'retry-after'), now);
  } catch {
    return undefined; // a getter that throws is no hint: the backoff decides
  }
}

/** Reads a header from a fetch `Headers` (or anything with `get`) or a plain object (got, axios). */
function headerOf(headers: unknown, name: string): unknown {
  if (typeof headers !== 'object' || headers === null) return undefined;
  const bag = headers as HeaderBag;
  if (typeof bag.get === 'function') return bag.get(name);
  return bag[name] ?? bag['Retry-After'];
}

/**
 * The most seconds a `Retry-After` is read as, in either form: 2^31 (68 years), as RFC 9111 has
 * caches read a delta-seconds too large to hold. A longer one (309 digits were Infinity) is that long: a wait
 * past any `maxDelay`, with a finite figure in the error (`asked to wait 2147483648000 ms`).
 */
const MAX_SECONDS = 2 ** 31;

/** `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`, as ms from `now`. */
export function parseRetryAfter(value: unknown, now: number): number | undefined {
  if (Array.isArray(value)) return parseRetryAfter(value[0], now);
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? seconds(value) : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return seconds(Number(text));
  // Only an HTTP-date reaches Date.parse: V8's reads nearly anything ("wait 10" is a day of 2010),
  // and a garbage value read as a past date would send the retry at once, with no backoff at all.
  const match = HTTP_DATE.exec(text);
  if (match === null) return undefined;
  // HTTP-dates are GMT; asctime's form says no zone, and Date.parse would read it as local time.
  const date = Date.parse(match[1] === undefined ? `${text} GMT` : text);
  // A date past 2^31 s from now (a server's "never": year 9999) is held to it, as the seconds are.
  return Number.isNaN(date) ? undefined : Math.min(Math.max(0, date - now), MAX_SECONDS * 1000);
}

/**
 * RFC 9110's three forms of an HTTP-date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850
 * (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`). Their zone is GMT;
 * none, or another one Date.parse knows (`+0200`, `EST`), is taken as it was before the check.
 */
const HTTP_DATE =
  /^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d|(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, \d\d-(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d\d \d\d:\d\d:\d\d|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d \d{4})(?: (GMT|UTC?|Z|[ECMP][SD]T|[+-]\d\d:?\d\d))?$/;

function seconds(n: number): number {
  return Math.min(n, MAX_SECONDS) * 1000;
}
