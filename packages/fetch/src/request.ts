/** What fetch takes as its first argument. */
export type FetchInput = Parameters<typeof globalThis.fetch>[0];
type Body = NonNullable<RequestInit['body']>;

/** Methods whose repetition cannot repeat an effect (RFC 9110 §9.2.2). */
const idempotentMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** One logical request, ready to be sent once per attempt. */
export interface Plan {
  readonly method: string;
  /** As the caller gave it: absolute, or a path when the client has base URLs. */
  readonly url: string;
  readonly headers: Headers;
  /** Replayable on every attempt, unless `replayable` is false. */
  readonly body: Body | null;
  /** False for a stream body: it can be sent once only. */
  readonly replayable: boolean;
  readonly init: RequestInit;
}

/**
 * Turns fetch's arguments into a plan that can be sent several times: a `Request`'s body is read
 * once into bytes, until `signal` aborts (the caller's abort, dispose() or the total deadline: a
 * stalled upload stream would otherwise hold the call forever); a stream body given in `init`
 * cannot be replayed and is sent once.
 */
export async function planOf(input: FetchInput, init: RequestInit | undefined, signal: AbortSignal): Promise<Plan> {
  if (isRequest(input)) {
    const request = input;
    // init's body replaces the Request's; a null one (or undefined) is none given, as fetch reads it.
    const given = init?.body ?? null;
    const body = request.body === null || given !== null ? null : await readAll(request.body, signal);
    // What fetch honours of a Request besides URL, method, headers and body; init's own win.
    const merged: RequestInit = Object.assign(ownOptions(request), init);
    return {
      method: (init?.method ?? request.method).toUpperCase(),
      url: request.url,
      // init's headers replace the Request's, as fetch reads them: an Authorization left out is not sent.
      headers: init?.headers === undefined ? new Headers(request.headers) : headersOf(init.headers),
      body: given ?? body,
      replayable: isReplayable(given),
      init: merged,
    };
  }
  const body = init?.body ?? null;
  return {
    method: (init?.method ?? 'GET').toUpperCase(),
    url: input instanceof URL ? input.href : String(input),
    headers: headersOf(init?.headers),
    body,
    replayable: isReplayable(body),
    init: init ?? {},
  };
}

function isRequest(input: FetchInput): input is Request {
  return typeof input === 'object' && 'method' in input && !(input instanceof URL);
}

/**
 * The caller's signal: init's, or else a Request's own; init's `null` is none, over a Request's
 * too, as fetch reads it. One that cannot be listened to (a string, `{}`) is refused with fetch's
 * own TypeError; one from a polyfill is taken.
 */
export function signalOf(input: FetchInput, init: RequestInit | undefined): AbortSignal | undefined {
  const signal = init?.signal !== undefined ? init.signal : isRequest(input) ? input.signal : undefined;
  if (signal == null) return undefined;
  if (typeof signal.addEventListener === 'function') return signal;
  throw new TypeError("Failed to construct 'Request': member signal is not of type AbortSignal.");
}

/** `new Headers(init)`; its error for a value it refuses quotes the value (a token with a newline in it): ours shows `***`. */
function headersOf(init: RequestInit['headers']): Headers {
  try {
    return new Headers(init);
  } catch (error) {
    throw error instanceof TypeError ? new TypeError(error.message.replace(/".*"/s, '***')) : error;
  }
}

/** A Request's own fetch options (`redirect: 'manual'` above all: a guard against following redirects). */
function ownOptions(r: Request): RequestInit {
  const { credentials, integrity, keepalive, mode, redirect, referrer, referrerPolicy } = r;
  return { credentials, integrity, keepalive, mode, redirect, referrer, referrerPolicy };
}

/** A `Request`'s body, read whole; `signal` stops the read, and the body is cancelled then. */
async function readAll(stream: ReadableStream<Uint8Array>, signal: AbortSignal): Promise<Uint8Array> {
  const reader = stream.getReader();
  let stop!: (reason: unknown) => void;
  const stopped = new Promise<never>((_, reject) => {
    stop = reject;
  });
  stopped.catch(() => {});
  const onAbort = () => stop(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  if (signal.aborted) onAbort();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const chunk = await Promise.race([reader.read(), stopped]);
      if (chunk.done) break;
      chunks.push(chunk.value);
      size += chunk.value.byteLength;
    }
  } catch (error) {
    reader.cancel(error).catch(() => {});
    throw error;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

function isReplayable(body: Body | null): boolean {
  return body === null || typeof body === 'string' || !(body instanceof ReadableStream || isAsyncIterable(body));
}

function isAsyncIterable(value: unknown): boolean {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

/**
 * The host a path names of its own though it names no scheme (`//host/x`, `/\\host/x`, a tab
 * between the slashes), or undefined. Joined to a base URL it would take the request, headers
 * and all, to that host; a path built from input (`/${tenant}/orders`) must not. An absolute URL
 * (one that reads the same whatever the base) is not a path: resilientFetch decides on it.
 */
export function hostOfPath(url: string): string | undefined {
  try {
    const a = new URL(url, 'http://a.invalid');
    const b = new URL(url, 'https://b.invalid');
    if (a.href === b.href || (a.host === 'a.invalid' && b.host === 'b.invalid')) return undefined;
    return a.host === 'a.invalid' ? b.host : a.host;
  } catch {
    return undefined; // not a URL: joining it fails with its own error
  }
}

/**
 * An absolute URL as axios tells one: a scheme, then two slashes (URL's own rules, read with
 * the tabs and newlines they drop, take `\\` for them too). URL's rules alone also read
 * `user:42` or `c:/x` as a URL of scheme `user:` or `c:`: joined to a base URL, they are paths.
 */
const absolute = /^[a-z][a-z\d+\-.]*:[\\/]{2}/i;

/** `path` read as an absolute URL, if it is one (a scheme and two slashes, as axios tells one). */
export function absoluteUrl(path: string): URL | undefined {
  return absolute.test(path.replace(/[\t\n\r]/g, '').replace(/^[\0- ]+/, '')) && URL.canParse(path)
    ? new URL(path)
    : undefined;
}

/**
 * What follows `base` in `url` (`/charges?page=2` for `http://h/v1/charges?page=2` under
 * `http://h/v1`), or undefined when `url` is not under it: another origin as URL reads origins
 * (scheme and host case, default ports and IPv6 forms do not matter; `h.` or another port is
 * another), credentials (fetch refuses them), or a path outside the base path (`/v10`, and
 * `/v1/../x` or `/v1/%2e%2e/x`, which URL resolves to `/x`), as URL reads it or as a server that
 * decodes reads it (`/v1/..%2Fx`).
 */
export function restUnder(url: URL, base: string): string | undefined {
  if (!URL.canParse(base)) return undefined;
  const b = new URL(base);
  if (url.origin === 'null' || url.origin !== b.origin || url.username !== '' || url.password !== '') return undefined;
  const dir = b.pathname.replace(/\/$/, '');
  const rest = url.pathname.slice(dir.length);
  if (!url.pathname.startsWith(dir) || (rest !== '' && !rest.startsWith('/'))) return undefined;
  return dir !== '' && climbs(rest) ? undefined : rest + url.search;
}

/**
 * Whether `rest` climbs above where it starts as a server may read it: many servers and proxies
 * decode `%2F` and `%5C` before they resolve dot segments (twice, `%252F`, through a proxy chain),
 * merge slashes, and drop `;params` (`..;x` is `..` to Tomcat). URL keeps `..%2Fx` as one segment.
 * Some read an overlong `%c0%af`, IIS's `%u002f` or a full-width `／` (NFKC) as `/`; a proxy that
 * decodes `%3F` or `%23` ends the path for the next server, as a C server ends it at a NUL.
 * Decoded at most 8 times (a chain that long is no proxy chain): linear in the URL's length.
 */
function climbs(rest: string): boolean {
  let p = rest;
  // Each distinct escape read once: a 1 MB URL of `%c3%a9` is not read nine times over.
  const memo = new Map<string, string>();
  const read = (e: string) => memo.get(e) ?? memo.set(e, lenient(e)).get(e) ?? e;
  for (let n = 0, last = ''; last !== p; n++) {
    if (n > 8) return true;
    last = p;
    p = p.replace(asciiEscape, read);
  }
  let depth = 0;
  for (const segment of p.split(/[\\/]/)) {
    const dots = segment.split(/[;?#\0]/)[0];
    if (dots !== '..') depth += dots !== '.' && segment !== '' ? 1 : 0;
    else if (--depth < 0) return true;
  }
  return false;
}

/** A percent-escape that decodes to ASCII somewhere: ASCII, `%uXXXX`, UTF-8 (overlong too). */
const asciiEscape =
  /%[0-7][\da-f]|%u[\da-f]{4}|%[cd][\da-f]%[89ab][\da-f]|%e[\da-f](?:%[89ab][\da-f]){2}|%f[0-7](?:%[89ab][\da-f]){3}/gi;

/** An escape as the most lenient server reads it (NFKC: `／` is `/`), or itself if not ASCII then. */
function lenient(e: string): string {
  const iis = /^%u/i.test(e);
  const [lead = 0, ...more] = iis
    ? []
    : e
        .slice(1)
        .split('%')
        .map((h) => Number.parseInt(h, 16));
  const code = iis
    ? Number.parseInt(e.slice(2), 16)
    : more.reduce((c, b) => (c << 6) | (b & 63), more.length === 0 ? lead : lead & (127 >> (more.length + 1)));
  const read = code > 0x10ffff ? e : String.fromCodePoint(code).normalize('NFKC');
  return /^[\0-\x7f]+$/.test(read) ? read : e;
}

/** `rest` (from {@link restUnder}) put back under `base`'s path, byte for byte: `//x` stays a path. */
export function rebase(rest: string, base: string): string {
  const url = new URL(base);
  const query = rest.indexOf('?');
  url.pathname = url.pathname.replace(/\/$/, '') + (query < 0 ? rest : rest.slice(0, query));
  url.search = query < 0 ? '' : rest.slice(query);
  return url.href;
}

/**
 * `path` under `base`'s path, as axios joins a path to its baseURL: `http://h/v1` and `/users`
 * make `http://h/v1/users` (URL's own rules make `http://h/users`), `user:42` makes
 * `http://h/v1/user:42`; an empty path, the base URL itself. An absolute URL
 * (`https://other/x`) is itself.
 */
export function joinPath(path: string, base: string): URL {
  const url = absoluteUrl(path);
  if (url !== undefined) return url;
  // No path at all: the base URL itself (`http://h/graphql`), as axios and URL's own rules have it.
  if (/^[\0- ]*$/.test(path)) return new URL(base);
  const dir = new URL(base);
  if (!dir.pathname.endsWith('/')) dir.pathname += '/';
  // `./` first: what follows the slashes is a path, never a scheme of its own (`/https:evil/x`).
  return new URL(`./${path.replace(/^[\0- ]+/, '').replace(/^[\\/]+/, '')}`, dir);
}

/** Whether sending the request twice is safe: an idempotent method, or a key (not blank) the server dedupes on. */
export function isSafeToRepeat(plan: Plan, keyHeader: string): boolean {
  return plan.replayable && (idempotentMethods.has(plan.method) || !!plan.headers.get(keyHeader));
}

/**
 * The init of one attempt: the plan's method, headers and body, and the attempt's signal. A
 * stream body goes through a wrapper that calls `onRead` when fetch first reads from it: until
 * then (a refused connection, a refusal here) it is untouched and may still go elsewhere.
 */
export function attemptInit(plan: Plan, signal: AbortSignal, onRead: () => void): RequestInit {
  const body = plan.replayable || plan.body === null ? plan.body : watched(plan.body, onRead);
  // Object.assign: V8 (Node 20) makes a spread with more properties after it ~1 µs slower.
  return Object.assign({}, plan.init, { method: plan.method, headers: plan.headers, body, signal });
}

/** `body` (a ReadableStream or an async iterable), read only when fetch reads, and said so on first read. */
function watched(body: Body, onRead: () => void): Body {
  if (body instanceof ReadableStream) {
    const source = body as ReadableStream<Uint8Array>;
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    return new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          if (reader === undefined) {
            onRead();
            reader = source.getReader();
          }
          const chunk = await reader.read();
          if (chunk.done) controller.close();
          else controller.enqueue(chunk.value);
        },
        // Cancelled before any read (an attempt refused or aborted): the caller's stream stays whole.
        cancel: (reason) => reader?.cancel(reason),
      },
      { highWaterMark: 0 },
    );
  }
  const iterable = body as unknown as AsyncIterable<unknown>;
  let inner: AsyncIterator<unknown> | undefined;
  const started = () => {
    if (inner === undefined) {
      onRead();
      inner = iterable[Symbol.asyncIterator]();
    }
    return inner;
  };
  const iterator: AsyncIterator<unknown> = {
    next: () => started().next(),
    return: async (value?: unknown) =>
      inner?.return !== undefined ? inner.return(value) : { done: true as const, value: undefined },
  };
  return { [Symbol.asyncIterator]: () => iterator } as unknown as Body;
}

/** Frees the connection behind a response nobody will read. */
export function discard(response: Response | undefined): void {
  if (response?.body && !response.bodyUsed) response.body.cancel().catch(() => {});
}
