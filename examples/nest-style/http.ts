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
  ) {
    super(message);
  }
}

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
export function serve(controllers: readonly object[]): Server {
  const table = controllers.flatMap((c) =>
    (routes.get(c.constructor) ?? []).map((r) => ({
      ...r,
      pattern: new RegExp(`^${(prefixes.get(c.constructor) ?? '') + r.path.replace(/:(\w+)/g, '(?<$1>[^/]+)')}$`),
      run: (req: Request) => (c as Record<string | symbol, (req: Request) => unknown>)[r.key]?.(req),
    })),
  );
  return createServer(async (req, res) => {
    const send = (status: number, body: unknown, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type });
      res.end(JSON.stringify(body));
    };
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const match = table.find((r) => r.method === req.method && r.pattern.test(path));
    if (!match) return send(404, { title: 'Not Found', status: 404 }, 'application/problem+json');
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const text = Buffer.concat(chunks).toString();
      let body: unknown;
      try {
        body = text === '' ? undefined : JSON.parse(text);
      } catch {
        throw new HttpException(400, 'the body is not JSON');
      }
      const params = { ...match.pattern.exec(path)?.groups };
      send(200, await match.run({ params, headers: req.headers, body }));
    } catch (error) {
      const status = error instanceof HttpException ? error.status : 503;
      const detail = error instanceof HttpException ? error.message : 'a dependency is failing; try again later';
      send(status, { title: detail, status, code: (error as { code?: string }).code }, 'application/problem+json');
    }
  });
}
