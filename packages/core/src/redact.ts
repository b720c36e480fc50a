// errors.ts imports this module too: HoldfastConfigError is only read when a Redactor is refused.
import { HoldfastConfigError } from './errors.js';

/** Query parameters whose values are hidden whatever the options say. */
export const defaultSecretParams = [
  'access_token',
  'api_key',
  'apikey',
  'auth', // Firebase's REST API
  'client_secret',
  'id_token',
  'jwt',
  'key',
  'passwd',
  'password',
  'private_token', // GitLab
  'refresh_token',
  'secret',
  'sig',
  'signature',
  'token',
  'x-amz-security-token', // signed S3 URLs
  'x-amz-signature',
  'x-goog-signature', // signed GCS URLs
];

/**
 * A secret parameter after `?`, `&`, `;` or `#` (a query's, a connection string's, a fragment's:
 * OAuth's implicit flow hands its token there) and its value, which ends where theirs do
 * (`;Password=x;Database=y`). A value at least: `;password= x` (a space after `=`) is
 * {@link hideCredentials}' to hide, whole. Shared by {@link Redactor} and {@link shownKey}.
 */
function secretParamPattern(names: Iterable<string>): RegExp {
  const escaped = [...names].map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`([?&;#](?:${escaped.join('|')})=)[^&#;\\s"]+`, 'gi');
}

/**
 * Hides what must not leave the process: URL credentials and the values of secret query
 * parameters. Shared by every package that shows a URL in a message, an event or a snapshot.
 */
export class Redactor {
  readonly #secrets: ReadonlySet<string>;
  /** A secret parameter and its value, in text that is no URL the parser takes. */
  readonly #secretParam: RegExp;

  constructor(extra: readonly string[] = []) {
    // A string is iterable: `new Redactor('session_id')` would hide its letters, not it.
    if (!Array.isArray(extra) || !extra.every((p) => typeof p === 'string')) {
      const message = 'must be an array of query parameter names';
      throw new HoldfastConfigError('Redactor', [{ path: 'extraParams', message, value: extra }]);
    }
    this.#secrets = new Set([...defaultSecretParams, ...extra].map((p) => p.toLowerCase()));
    this.#secretParam = secretParamPattern(this.#secrets);
  }

  /** `url` with `***` for its credentials and secret parameter values, in its query or fragment. */
  url(url: string): string {
    if (!/[@?#]/.test(url)) return url;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      // Not a URL (a bad port, a space in the host, a `/` in the password): hidden as text, the
      // user info up to the last `@` (showing less of a bad URL is the safe way to be wrong).
      const from = url.indexOf('://') + 3;
      const at = url.lastIndexOf('@');
      const shown = from > 2 && at >= from ? `${url.slice(0, from)}***${url.slice(at)}` : url;
      return shown.replace(this.#secretParam, '$1***');
    }
    let hidden = false;
    const userInfo = parsed.username !== '' || parsed.password !== '';
    // A password that opens with digits and a `#`, `?` or `/` (`redis://u:1#pw@h`) is read as a
    // port: the rest of it, to its `@`, became the path, query or fragment. Shown to its `:`.
    const port = userInfo ? null : /^[a-z][a-z\d+.-]*:\/\/[^/?#@\s]*:(?=\d*[/?#]\S*@)/i.exec(url);
    if (port) return `${port[0]}***${this.text(url.slice(url.slice(port[0].length).search(/\s|$/) + port[0].length))}`;
    if (userInfo) {
      parsed.username = '***';
      parsed.password = '';
      hidden = true;
    }
    // As searchParams.set() would (the first of a name's repeats, `***`, the others gone), in one
    // pass: set() splices out each repeat, 40,000 `&token=` took seconds.
    const kept: [string, string][] = [];
    const seen = new Set<string>();
    for (const [name, value] of parsed.searchParams) {
      if (!this.#secrets.has(name.toLowerCase())) kept.push([name, value]);
      else if (!seen.has(name)) {
        kept.push([name, '***']);
        seen.add(name);
      }
    }
    if (seen.size > 0) {
      parsed.search = new URLSearchParams(kept).toString();
      hidden = true;
    }
    // Text that starts with a URL (a warning naming a policy by it): hidden as written. As URL
    // writes it, the rest of the text is a path (spaces as %20), and another URL in it was no URL
    // for text() to find. Kept as written only if the parser finds nothing left to hide in it.
    if (hidden && /\s/.test(url)) {
      const shown = this.#asWritten(url, userInfo);
      if (shown !== undefined) return shown;
    }
    // Nothing hidden: the text as given, not as URL writes it (`A:?` stays `A:?`, not `a:?`).
    // A fragment's parameters too: OAuth's implicit flow hands the token there (#access_token=).
    return (hidden ? parsed.href : url).replace(this.#secretParam, '$1***');
  }

  /** `url` (text with a space) with its user info and secret parameters hidden as written, if that hides all. */
  #asWritten(url: string, userInfo: boolean): string | undefined {
    const from = url.indexOf('://') + 3;
    const end = url.slice(from).search(/[/?#]/);
    const at = url.lastIndexOf('@', end < 0 ? url.length : from + end);
    if (userInfo && (from < 3 || at < from)) return undefined;
    const shown = (userInfo ? `${url.slice(0, from)}***${url.slice(at)}` : url).replace(this.#secretParam, '$1***');
    let parsed: URL;
    try {
      parsed = new URL(shown);
    } catch {
      return undefined;
    }
    if (parsed.username.replace(/^\*\*\*$/, '') !== '' || parsed.password !== '') return undefined;
    for (const [name, value] of parsed.searchParams) {
      // Hidden up to a space: what follows it is more text, for text() to look through.
      if (this.#secrets.has(name.toLowerCase()) && !/^\*\*\*(?:\s|$)/.test(value)) return undefined;
    }
    return shown;
  }

  /**
   * `url` hidden, and each URL joined to it with no space (`http://a/,http://u:pw@b/`, a list of
   * nodes) hidden apart: as one URL, the others' credentials were its path, shown.
   */
  #each(url: string): string {
    let out = '';
    let from = 0;
    for (let next = url.indexOf('://', 3); next >= 0; next = url.indexOf('://', next + 3)) {
      let start = next;
      while (start > from && /[a-z\d+.-]/i.test(url[start - 1] as string)) start--;
      while (start < next && !/[a-z]/i.test(url[start] as string)) start++;
      // The first scheme's, or `:///`: no URL starts here.
      if (start === next || start === from) continue;
      out += this.url(url.slice(from, start));
      from = start;
    }
    return out + this.url(url.slice(from));
  }

  /** `text` with every URL in it redacted, and the credentials {@link hideCredentials} finds. */
  text(text: string): string {
    // Any scheme, any case: `HTTP://`, `redis://user:pass@...` in a driver's message.
    // Then a secret parameter left outside any URL found (one cut by a space) is hidden too.
    return hideCredentials(
      text
        // Tried where a run of scheme characters starts, not at each word in it: `a-a-a-…` is linear.
        .replace(/(?<![a-z\d+.-])[a-z][a-z\d+.-]*:\/\/[^\s'"<>]+/gi, (url) => this.#each(url))
        .replace(this.#secretParam, '$1***'),
    );
  }
}

/**
 * A credential written as `key=value` or `key: value` outside a URL: a libpq/ODBC connection
 * string's `password=`, YAML's `password: x`, JSON's `"password":"x"`, `aws_secret_access_key=`,
 * Azure's `AccountKey=`, `SharedAccessKey=` and `SharedAccessSignature=`, `Authorization: Bearer x`.
 * The key is a whole word ending in a credential's name (`DB_PASSWORD`, `clientSecret`, not
 * `maxTokens`, `SharedAccessKeyName` or `aws_access_key_id`). A quoted value ends at its quote;
 * an unquoted one at a space, a `;`, an `&` that starts another `name=`, or a `,` `}` `)` `]`
 * `"` `'` that ends it (the quote around a message's `(got "…")` stays). Linear: every part after the key is optional, so nothing backtracks.
 */
const credential =
  /(?<![\w.-])((?:[\w.-]*?authorization\\?["']?\s*[:=]\s*(?:\[\s*)?(?:[a-z][\w-]*\s+(?=[\w.~+/*-]))?|(?:[\w.-]*?(?:passw(?:or)?d|pwd|secret|token|signature|cookie|(?:api|access|account|private)[_-]?key)|pass)\\?["']?\s*[:=]\s*(?:\[\s*)?(?:(?:bearer|basic|digest|negotiate|ntlm|token)\s+)?))(?:"(?:[^"\\]|\\.|"")*"?|'(?:[^'\\]|\\.|'')*'?|\{(?:[^}]|\}\})*\}?|(?:[^\s;&\\,})\]"']|\\.|&(?![\w.-]+=)|[,})\]"'](?=[^\s;,})\]"']))*)/gi;
/**
 * The credentials of an HTTP authentication scheme anywhere in text (a logged header, a curl line,
 * a header list's value): a bearer token; `Basic` base64 that decodes to `user:password` (RFC
 * 7617: "basic auth" and "Basic Orders" stay); a `Negotiate` or `NTLM` token (16 base64
 * characters at least, shaped so: "negotiate authentication" stays).
 */
const schemeToken = /\b(bearer|basic|negotiate|ntlm)(\s+)([\w.~+/-]+=*)/gi;
/**
 * A `Digest` credential's parameters (`Digest username="a", response="…"`), over several lines
 * too, with spaces around `=` (RFC 7235's BWS): the list of them, to where it ends ("expected
 * digest sha256=… got …" keeps what follows its one parameter).
 */
const digest =
  /\b(digest\s+)(?=[\w-]+\s*=)(?:[\w-]+\s*=\s*(?:"(?:[^"\\]|\\.)*"?|[^\s,"]*)(?:\s*,\s*(?=[\w-]+\s*=))?)+/gi;

function hideToken(match: string, scheme: string, space: string, token: string): string {
  const kind = scheme.toLowerCase();
  const secret =
    kind === 'bearer' ||
    (kind === 'basic'
      ? decodesToUserPass(token)
      : token.length >= 16 && /^[a-z\d+/]+=*$/i.test(token) && base64Shaped(token));
  return secret ? `${scheme}${space}***` : match;
}

/** Whether `token` looks like base64 rather than a word: a digit, `+`, `/` or `=`, or capitals past its first letter and small ones. */
const base64Shaped = (token: string): boolean =>
  /[\d+/=]/.test(token) || (/[A-Z]/.test(token.slice(1)) && /[a-z]/.test(token));

/**
 * Whether `token` is a Basic credential: base64 of its full length (a multiple of 4, padded), 8
 * characters at least, shaped so, that decodes to printable `user:password` (`:` not first).
 * "Orders", "Open", "Operations" decode to a `:` too, and are words.
 */
function decodesToUserPass(token: string): boolean {
  if (token.length < 8 || token.length % 4 !== 0 || !base64Shaped(token)) return false;
  try {
    const text = atob(token);
    return /^[!-9;-~\u00a0-\u00ff][ -~\u00a0-\u00ff]*:[ -~\u00a0-\u00ff]*$/.test(text);
  } catch {
    return false; // No base64: a word.
  }
}
/** A DSN's leading `user:password@` with no scheme (not a URL's `scheme://`), nor an image's `name:tag@sha256:...`. */
const leadingUserInfo = /^[^\s:/@]+:(?!\/\/)\S*@(?!sha(?:256|384|512):)/;

/**
 * `text` with credentials outside URLs hidden: values of `key=value` and `key: value` pairs whose
 * key names a credential (`"password":***`), bearer, `Basic`, `Digest`, `Negotiate` and `NTLM`
 * credentials, and a DSN's leading
 * `user:password@`. Text in, text out: nothing is parsed or normalised, and hiding twice changes
 * nothing more.
 *
 * @example
 * hideCredentials('AccountName=a;AccountKey=abc==;EndpointSuffix=core.windows.net')
 * // 'AccountName=a;AccountKey=***;EndpointSuffix=core.windows.net'
 */
export function hideCredentials(text: string): string {
  return text
    .replace(leadingUserInfo, '***@')
    .replace(digest, '$1***')
    .replace(credential, '$1***')
    .replace(schemeToken, hideToken);
}

const redactor = new Redactor();

/**
 * `text` as shown in messages, events and snapshots: a URL that is all of it, or any URL in it,
 * without credentials and secret parameter values (the whole text first: a password with a space
 * or a `/` is no URL to find), and the credentials {@link hideCredentials} finds.
 *
 * @example
 * hideSecrets('postgres://app:pw@db/orders') // 'postgres://***@db/orders'
 * hideSecrets('login failed: password: hunter2') // 'login failed: password: ***'
 */
export const hideSecrets = (text: string): string => redactor.text(redactor.url(text));

const secretParamText = secretParamPattern(defaultSecretParams);

/**
 * A key (a breaker's or a watched call's name) as events, snapshots, errors and metrics show it:
 * each URL in it (a DSN, an endpoint) without its credentials, the values of secret query
 * parameters anywhere in it (a request path's `?api_key=`, `;token=`), and what
 * {@link hideCredentials} finds (`password=`, `AccountKey=`, `token: x`, a leading
 * `user:password@`). Text in, text out (no URL parser normalises it), so a shown key shows as
 * itself: packages that show one key (the breaker registry, the anomaly watch) show it alike.
 *
 * @example
 * shownKey('/v1/users?api_key=abc') // '/v1/users?api_key=***'
 * shownKey('postgres://app:pw@db/orders') // 'postgres://***@db/orders'
 */
export function shownKey(key: string): string {
  const starts: number[] = [];
  for (let i = key.indexOf('://'); i !== -1; i = key.indexOf('://', i + 3)) {
    let start = i;
    while (start > 0 && /[a-z\d+.-]/i.test(key[start - 1] as string)) start--;
    starts.push(start);
  }
  let out = starts.length === 0 ? key : key.slice(0, starts[0]);
  starts.forEach((start, i) => {
    out += keyUrl(key.slice(start, starts[i + 1]));
  });
  return hideCredentials(out.replace(secretParamText, '$1***'));
}

/** One URL of a key and what follows it up to the next: its user info up to the last `@` (for a web URL, in its authority). */
function keyUrl(text: string): string {
  const from = text.indexOf('://') + 3;
  // A password may hold an unencoded `/` (or `?`, `#`) in a DSN; a web URL's path may hold an `@` (npm's /@scope).
  // A web URL the parser refuses (such a password makes its port bad) is read as a DSN: up to its last `@`.
  const web = /^(?:https?|wss?):/i.test(text) && URL.canParse(text);
  const authority = web ? text.slice(from).search(/[/?#\\]/) : -1;
  const end = authority === -1 ? text.length : from + authority;
  const at = text.lastIndexOf('@', end - 1);
  return at >= from ? `${text.slice(0, from)}***${text.slice(at)}` : text;
}
