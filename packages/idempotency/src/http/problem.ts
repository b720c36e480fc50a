import { Buffer } from 'node:buffer';
import type { HttpResponse } from './capture.js';

/** The problems the middleware answers with, by their stable `type` (RFC 9457). */
export const problemTypes = {
  missingKey: 'urn:holdfast:problem:idempotency-key-missing',
  invalidKey: 'urn:holdfast:problem:idempotency-key-invalid',
  inProgress: 'urn:holdfast:problem:idempotency-key-in-progress',
  mismatch: 'urn:holdfast:problem:idempotency-key-reused',
  storeUnavailable: 'urn:holdfast:problem:idempotency-store-unavailable',
  tooLarge: 'urn:holdfast:problem:idempotency-request-too-large',
  responseLost: 'urn:holdfast:problem:idempotency-response-lost',
  uploadUnreadable: 'urn:holdfast:problem:idempotency-upload-unreadable',
} as const;

export type ProblemKind = keyof typeof problemTypes;

const problems: Record<ProblemKind, { status: number; title: string; detail: string }> = {
  missingKey: {
    status: 400,
    title: 'Idempotency-Key is missing',
    detail:
      'This endpoint requires an Idempotency-Key header. Send a unique key (e.g. a UUID) and reuse it on retries.',
  },
  invalidKey: {
    status: 400,
    title: 'Idempotency-Key is invalid',
    detail: 'Send 1-255 printable ASCII characters, as a bare value or a quoted string.',
  },
  inProgress: {
    status: 409,
    title: 'A request with this Idempotency-Key is in progress',
    detail: 'The first request with this key has not finished. Retry after the Retry-After delay to get its response.',
  },
  mismatch: {
    status: 422,
    title: 'Idempotency-Key reused with a different request',
    detail:
      'This key was first used with a different method, URL or body. Use a new key for a new request, or resend the original request.',
  },
  tooLarge: {
    status: 413,
    title: 'Request too large for an Idempotency-Key',
    detail:
      'The body of a request with an Idempotency-Key is read whole to fingerprint it, and this one is larger than the server allows. Send a smaller body.',
  },
  // Stored for a key whose response was cut off (see Run.lost): a 5xx, which clients retry a
  // few times and then give up on, never a 409 they would retry until the record expires.
  responseLost: {
    status: 500,
    title: 'The request was processed; its response was lost',
    detail:
      'Its response was cut off and cannot be replayed; the request is not run again with this key. Check its effect before sending it with a new key.',
  },
  // An uploaded file the server stored (multer's diskStorage) and lost before it was read: the
  // server's fault, not the client's; nothing ran and no key was claimed.
  uploadUnreadable: {
    status: 500,
    title: 'An uploaded file could not be read',
    detail:
      'The request was not processed: a file it uploaded could not be read back on the server. Retry with the same key.',
  },
  storeUnavailable: {
    status: 503,
    title: 'Idempotency store unavailable',
    detail: 'The request was not processed because its key could not be checked. Retry later with the same key.',
  },
};

const bodies = Object.fromEntries(
  Object.entries(problems).map(([kind, p]) => [
    kind,
    Buffer.from(JSON.stringify({ type: problemTypes[kind as ProblemKind], ...p })),
  ]),
) as Record<ProblemKind, Buffer>;

/** An `application/problem+json` response. `detail` replaces the standard one (e.g. why a key is invalid). */
export function problem(kind: ProblemKind, extra: { detail?: string; retryAfterSeconds?: number } = {}): HttpResponse {
  const p = problems[kind];
  const body =
    extra.detail === undefined
      ? // A copy: a layer may change the bytes it sends in place (a Fastify onSend hook), and
        // every later problem of this kind would carry the change.
        Buffer.from(bodies[kind])
      : Buffer.from(JSON.stringify({ type: problemTypes[kind], ...p, detail: `${extra.detail}. ${p.detail}` }));
  const headers: Record<string, string> = {
    'content-type': 'application/problem+json',
    'content-length': String(body.length),
    'cache-control': 'no-store',
  };
  if (extra.retryAfterSeconds !== undefined) headers['retry-after'] = String(extra.retryAfterSeconds);
  return { status: p.status, headers, body };
}
