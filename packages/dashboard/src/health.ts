import type { IncomingMessage, ServerResponse } from 'node:http';
import { type HealthReportOptions, healthReport, healthReportOptionsSchema, parseOptions } from '@holdfast/core';

/** A `node:http` request handler; Express mounts it as it is (`next` is its third argument). */
export type NodeHandler = (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => void;

/** On every response: no sniffing a feed into a page, no URL passed on to another site. */
export const SECURITY_HEADERS = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' } as const;

/**
 * A readiness endpoint: `healthReport()` as JSON, with status 200 when ready and 503 when not.
 * Mount it with Express (`app.get('/health', healthHandler())`), Fastify
 * (`app.get('/health', toFastify(healthHandler()))`) or `node:http`. Methods other than GET and
 * HEAD get 405.
 */
export function healthHandler(options: HealthReportOptions = {}): NodeHandler {
  // Checked once here: a bad option would otherwise serve 503 on every request, with no word why.
  parseOptions('healthHandler', healthReportOptionsSchema, options);
  return (req, res) => {
    if (!readOnly(req, res)) return;
    let report: ReturnType<typeof healthReport>;
    try {
      report = healthReport(options);
    } catch {
      // A health endpoint that throws reads as "down" to a load balancer anyway. The error's
      // message stays out: /health is often served to anyone, and a message may hold a password.
      sendJson(res, 503, { status: 'fail', ready: false, error: 'health report failed' });
      return;
    }
    sendJson(res, report.ready ? 200 : 503, report, req.method === 'HEAD');
  };
}

/** Whether `req` is a GET or a HEAD; answers 405 to any other method (a POST is no way to read). */
export function readOnly(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return true;
  res.writeHead(405, { allow: 'GET, HEAD', 'content-length': 0, ...SECURITY_HEADERS }).end();
  return false;
}

/** Writes `body` as JSON, never cached. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headOnly = false): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...SECURITY_HEADERS,
  });
  res.end(headOnly ? undefined : text);
}

/** The parts of a Fastify request and reply that {@link toFastify} uses. */
export interface FastifyLikeRequest {
  /** The `node:http` request under Fastify's. */
  readonly raw: IncomingMessage;
}
/** The parts of a Fastify reply that {@link toFastify} uses. */
export interface FastifyLikeReply {
  /** The `node:http` response under Fastify's. */
  readonly raw: ServerResponse;
  /** Tells Fastify that the handler answers on `raw` itself. */
  hijack(): unknown;
}

/**
 * Adapts a `node:http` handler to a Fastify route handler: Fastify hands the raw request and
 * response over and stays out of the way (`reply.hijack()`).
 *
 * @example
 * app.get('/health', toFastify(healthHandler()));
 */
export function toFastify(handler: NodeHandler): (request: FastifyLikeRequest, reply: FastifyLikeReply) => void {
  return (request, reply) => {
    reply.hijack();
    handler(request.raw, reply.raw);
  };
}
