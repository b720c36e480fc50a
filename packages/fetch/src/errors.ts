import { HoldfastError } from '@holdfast/core';

/**
 * A response whose status says the call failed. Thrown for statuses worth retrying while
 * retries last, and for every non-2xx status when `throwOnHttpError` is on. `response` is the
 * response itself, its body unread.
 */
export class HttpError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.HttpError');
  override name = 'HttpError';
  /** The response's HTTP status. */
  readonly status: number;
  /** The request's method. */
  readonly method: string;
  /** The request's URL. */
  readonly url: string;
  /**
   * The response itself, its body unread. Not enumerable: a logger or `console.error(error)`
   * would print its `url`, secret query parameters included, which `url` above hides.
   */
  declare readonly response: Response;

  constructor(method: string, url: string, response: Response) {
    super(
      'E_HTTP_STATUS',
      `${method} ${url}: ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`,
    );
    this.status = response.status;
    this.method = method;
    this.url = url;
    Object.defineProperty(this, 'response', {
      value: response,
      enumerable: false,
      writable: false,
      configurable: true,
    });
  }

  /** Retry-After is read from here by @holdfast/retry. */
  get headers(): Headers {
    return this.response.headers;
  }
}
