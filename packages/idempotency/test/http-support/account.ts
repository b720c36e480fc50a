import type { FastifyInstance, FastifyRequest } from 'fastify';

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller, as {@link authenticateByApiKey} found it ('' until then). */
    account: string;
  }
}

/**
 * An authentication as a Fastify app has one: in `hook` (after `pauseMs`, so a body sent with
 * the head is buffered meanwhile), `x-api-key` names the account; none is a 401.
 */
export function authenticateByApiKey(
  app: FastifyInstance,
  hook: 'onRequest' | 'preValidation' = 'onRequest',
  pauseMs = 0,
): void {
  app.decorateRequest('account', '');
  app.addHook(hook, async (request: FastifyRequest, reply) => {
    if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    const account = request.headers['x-api-key'];
    if (typeof account !== 'string') return reply.code(401).send({ error: 'unauthenticated' });
    request.account = account;
  });
}

/** A scope of the account {@link authenticateByApiKey} set (undefined while unset), counting its calls. */
export function accountScope(counts: { scoped: number }): (request: FastifyRequest) => string | undefined {
  return (request) => {
    counts.scoped++;
    return request.account === '' ? undefined : request.account;
  };
}
