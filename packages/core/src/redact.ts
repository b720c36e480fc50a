/** Query parameters whose values are hidden whatever the options say. */
export const defaultSecretParams = [
  'access_token',
  'api_key',
  'apikey',
  'key',
  'password',
  'secret',
  'sig',
  'signature',
  'token',
];

/**
 * Hides what must not leave the process: URL credentials and the values of secret query
 * parameters. Shared by every package that shows a URL in a message, an event or a snapshot.
 */
export class Redactor {
  readonly #secrets: ReadonlySet<string>;

  constructor(extra: readonly string[] = []) {
    this.#secrets = new Set([...defaultSecretParams, ...extra].map((p) => p.toLowerCase()));
  }

  /** `url` with `***` for its credentials and secret parameter values. */
  url(url: string): string {
    if (!url.includes('@') && !url.includes('?')) return url;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return url.replace(/\/\/[^/@\s]*@/, '//***@');
    }
    if (parsed.username !== '' || parsed.password !== '') {
      parsed.username = '***';
      parsed.password = '';
    }
    for (const name of new Set(parsed.searchParams.keys())) {
      if (this.#secrets.has(name.toLowerCase())) parsed.searchParams.set(name, '***');
    }
    return parsed.href;
  }

  /** `text` with every URL in it redacted. */
  text(text: string): string {
    return text.replace(/\bhttps?:\/\/[^\s'"<>]+/g, (url) => this.url(url));
  }
}
