// A NestJS-like routing layer in 80 lines: @Controller(prefix), @Get(path), @Post(path) on
// classes, served by node:http. Like holdfast's own decorators, these work in both TypeScript
// modes: (value, context) for TC39 decorators, (target, key, descriptor) with experimentalDecorators.
import { createServer, type IncomingMessage, type Server } from 'node:http';

/** What a handler gets. */
export interface Request {
  readonly params: Record<string, string>;
  readonly headers: IncomingMessage['headers'];
  readonly body: unknown;
}

/** Thrown by a handler for a 4xx: sent as application/problem+json. */
export class HttpException extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Turns an error a handler threw into the HttpException to answer, as NestJS's exception filters do. */
export type ExceptionFilter = (error: unknown) => HttpException | undefined;

/** The largest request body read; a larger one is answered 413 and its connection closed. */
const MAX_BODY_BYTES = 1_048_576;

interface Route {
  readonly method: string;
  readonly path: string;
  readonly key: string | symbol;
}
type Class = abstract new (...args: never[]) => object;
const routes = new WeakMap<object, Route[]>();
const prefixes = new WeakMap<object, string>();

function addRoute(owner: object, route: Route): void {
  const list = routes.get(owner) ?? [];
  if (!list.some((r) => r.key === route.key)) list.push(route);
  routes.set(owner, list);
}

/** A method decorator in either mode. */
interface RouteDecorator {
  (value: (...args: never) => unknown, context: ClassMethodDecoratorContext): void;
  (target: object, key: string | symbol, descriptor: PropertyDescriptor): void;
}

function route(method: string, path: string): RouteDecorator {
  return (...args: unknown[]) => {
    if (args.length === 2) {
      const context = args[1] as ClassMethodDecoratorContext;
      context.addInitializer(function (this: unknown) {
        addRoute((this as object).constructor, { method, path, key: context.name });
      });
    } else addRoute((args[0] as object).constructor, { method, path, key: args[1] as string | symbol });
  };
}

export const Get = (path: string) => route('GET', path);
export const Post = (path: string) => route('POST', path);

/** A class decorator in either mode: `(class, context)` or `(class)`. */
export function Controller(prefix: string) {
  return <C extends Class>(target: C, _context?: ClassDecoratorContext<C>): void => {
    prefixes.set(target, prefix);
  };
}

/** Serves the controllers' routes; a handler's return value is sent as JSON. */
export function serve(controllers: readonly object[], filters: readonly ExceptionFilter[] = []): Server {
  const table = controllers.flatMap((c) =>
    (routes.get(c.constructor) ?? []).map((r) => ({
      ...r,
      pattern: new RegExp(`^${(prefixes.get(c.constructor) ?? '') + r.path.replace(/:(\w+)/g, '(?<$1>[^/]+)')}$`),
      run: (req: Request) => (c as Record<string | symbol, (req: Request) => unknown>)[r.key]?.(req),
    })),
  );
  return createServer(async (req, res) => {
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, {
        'content-type': status < 400 ? 'application/json' : 'application/problem+json',
        ...headers,
      });
      res.end(JSON.stringify(body));
    };
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const match = table.find((r) => r.method === req.method && r.pattern.test(path));
    if (!match) return send(404, { title: 'Not Found', status: 404 });
    try {
      const params = { ...match.pattern.exec(path)?.groups };
      send(200, await match.run({ params, headers: req.headers, body: await readJson(req) }));
    } catch (error) {
      const known = error instanceof HttpException ? error : filters.map((f) => f(error)).find((e) => e !== undefined);
      const status = known?.status ?? 503;
      const title = known?.message ?? 'a dependency is failing; try again later';
      if (status === 413) res.shouldKeepAlive = false; // the rest of the body is not read: close the connection
      send(status, { title, status, code: (error as { code?: string }).code }, known?.headers);
    }
  });
}

/** The request's JSON body (undefined when it has none): 415 if it is not JSON, 413 past MAX_BODY_BYTES. */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) return void chunks.push(chunk);
      // Answer now; the rest is read and dropped (not destroyed: the 413 must reach the client).
      req.off('data', onData).resume();
      reject(new HttpException(413, `the body is larger than ${MAX_BODY_BYTES} bytes`));
    };
    req.on('data', onData).once('end', resolve).once('error', reject);
  });
  if (size === 0) return undefined;
  if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
    throw new HttpException(415, 'send the body as application/json');
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString());
  } catch {
    throw new HttpException(400, 'the body is not JSON');
  }
}
