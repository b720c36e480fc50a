import { hash } from 'node:crypto';

// The floor for the Fastify rows: what the plugin's hook design costs (three hooks: preParsing,
// preHandler, onSend; the body's chunks kept as the request stream is pushed them, with no
// listener; a 'close' listener on a claimed request's response) with the least work an
// Idempotency-Key plugin can do in them: keep the body's chunks, hash them, keep each response in
// a Map, replay it. No key checks, no scope, no LRU or byte limit, no leases, no events, no
// copies: not safe to use, only a measure of how far the plugin's own work puts it from what its
// hooks cost. (Until #19 the floor had four hooks (an onResponse too) and a 'data' listener:
// the plugin no longer uses either.)

interface Reply {
  readonly raw: { on(event: 'close', listener: () => void): unknown };
  code(status: number): Reply;
  headers(values: Record<string, unknown>): Reply;
  send(body: unknown): unknown;
  getHeaders(): Record<string, unknown>;
  readonly statusCode: number;
}
interface Request {
  readonly headers: Record<string, string | string[] | undefined>;
}
interface Stream {
  push(chunk: unknown, encoding?: BufferEncoding): boolean;
}
interface Instance {
  decorateRequest(name: string, value: unknown): void;
  addHook(name: string, hook: (...args: never[]) => unknown): void;
}
interface Kept {
  status: number;
  headers: Record<string, unknown> | undefined;
  body: Buffer | undefined;
}
interface State {
  readonly key: string;
  readonly chunks: Buffer[];
}

const SLOT = 'benchFloorState';

async function floor(fastify: Instance): Promise<void> {
  const kept = new Map<string, Kept>();
  fastify.decorateRequest(SLOT, null);
  const stateOf = (request: Request) => (request as unknown as Record<string, State | null>)[SLOT];
  fastify.addHook(
    'preParsing',
    (request: Request, _reply: Reply, payload: Stream, done: (e: null, p: Stream) => void) => {
      const key = request.headers['idempotency-key'];
      if (typeof key !== 'string') return done(null, payload);
      const chunks: Buffer[] = [];
      (request as unknown as Record<string, State>)[SLOT] = { key, chunks };
      const push = payload.push;
      payload.push = function (this: Stream, chunk: unknown, encoding?: BufferEncoding) {
        if (chunk instanceof Buffer) chunks.push(chunk);
        return push.call(this, chunk, encoding);
      };
      done(null, payload);
    },
  );
  fastify.addHook('preHandler', (request: Request, reply: Reply, done: () => void) => {
    const state = stateOf(request);
    if (!state) return done();
    hash('sha256', Buffer.concat(state.chunks), 'base64url');
    const found = kept.get(state.key);
    if (found?.body !== undefined) {
      reply
        .code(found.status)
        .headers(found.headers ?? {})
        .send(found.body);
      return;
    }
    const entry: Kept = { status: 0, headers: undefined, body: undefined };
    kept.set(state.key, entry);
    // A response that closes unsent frees its key.
    reply.raw.on('close', () => {
      if (entry.body === undefined) kept.delete(state.key);
    });
    done();
  });
  fastify.addHook('onSend', (request: Request, reply: Reply, payload: string, done: (e: null, p: string) => void) => {
    const state = stateOf(request);
    const entry = state ? kept.get(state.key) : undefined;
    if (entry !== undefined && entry.body === undefined) {
      entry.status = reply.statusCode;
      entry.headers = Object.assign({}, reply.getHeaders());
      entry.body = Buffer.from(payload);
    }
    done(null, payload);
  });
}

/** The floor plugin, registered without encapsulation (what fastify-plugin would mark). */
export const floorPlugin = Object.assign(floor, { [Symbol.for('skip-override')]: true });
