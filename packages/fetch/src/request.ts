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
  readonly signal: AbortSignal | undefined;
}

/**
 * Turns fetch's arguments into a plan that can be sent several times: a `Request`'s body is read
 * once into bytes; a stream body given in `init` cannot be replayed and is sent once.
 */
export async function planOf(input: FetchInput, init: RequestInit | undefined): Promise<Plan> {
  if (typeof input === 'object' && 'method' in input && !(input instanceof URL)) {
    const request = input as Request;
    const body = request.body === null ? null : new Uint8Array(await request.arrayBuffer());
    const merged: RequestInit = { ...init };
    const headers = new Headers(request.headers);
    if (init?.headers) {
      for (const [name, value] of new Headers(init.headers)) headers.set(name, value);
    }
    return {
      method: (init?.method ?? request.method).toUpperCase(),
      url: request.url,
      headers,
      body: init?.body !== undefined ? init.body : body,
      replayable: init?.body === undefined || isReplayable(init.body),
      init: merged,
      signal: init?.signal ?? request.signal,
    };
  }
  const body = init?.body ?? null;
  return {
    method: (init?.method ?? 'GET').toUpperCase(),
    url: input instanceof URL ? input.href : String(input),
    headers: new Headers(init?.headers),
    body,
    replayable: isReplayable(body),
    init: init ?? {},
    signal: init?.signal ?? undefined,
  };
}

function isReplayable(body: Body | null): boolean {
  return body === null || typeof body === 'string' || !(body instanceof ReadableStream || isAsyncIterable(body));
}

function isAsyncIterable(value: unknown): boolean {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

/** Whether sending the request twice is safe: an idempotent method, or a key the server dedupes on. */
export function isSafeToRepeat(plan: Plan, keyHeader: string): boolean {
  return plan.replayable && (idempotentMethods.has(plan.method) || plan.headers.has(keyHeader));
}

/** The init of one attempt: the plan's method, headers and body, and the attempt's signal. */
export function attemptInit(plan: Plan, signal: AbortSignal): RequestInit {
  // Object.assign: V8 (Node 20) makes a spread with more properties after it ~1 µs slower.
  return Object.assign({}, plan.init, { method: plan.method, headers: plan.headers, body: plan.body, signal });
}

/** Frees the connection behind a response nobody will read. */
export function discard(response: Response | undefined): void {
  if (response?.body && !response.bodyUsed) response.body.cancel().catch(() => {});
}
