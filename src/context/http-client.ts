/**
 * The HTTP transport for remote contexts (git smart HTTP and plain tarball URLs), on node:http.
 * It owns the credentials rather than handing them to the git library: Basic auth is attached
 * only to requests for the origin the user named, so a redirect to another host never carries
 * it, and no URL we build or report ever contains it.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';
import { GantryError } from '../util/errors.js';
import type { GitCredentials } from './location.js';

export interface HttpTransportOptions {
  credentials?: GitCredentials;
  /** The origin (`https://host:port`) the credentials belong to. */
  credentialOrigin?: string;
  insecureSkipTls?: boolean;
  signal?: AbortSignal;
  userAgent?: string;
  maxRedirects?: number;
  /** A connection silent for this long fails the request (default 120 s). */
  idleTimeoutMs?: number;
}

export interface HttpTransport {
  request(method: string, url: string, headers?: Record<string, string>, body?: Buffer): Promise<{ url: string; res: IncomingMessage }>;
  /** The adapter isomorphic-git calls for every smart-HTTP request. */
  git: HttpClient;
  close(): void;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export function basicAuthorization(c: GitCredentials): string {
  return 'Basic ' + Buffer.from(`${c.username}:${c.password}`).toString('base64');
}

async function collect(body: AsyncIterable<Uint8Array> | undefined): Promise<Buffer | undefined> {
  if (!body) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

function flattenHeaders(res: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

export function createHttpTransport(opts: HttpTransportOptions = {}): HttpTransport {
  const httpAgent = new HttpAgent({ keepAlive: true });
  const httpsAgent = new HttpsAgent({ keepAlive: true, rejectUnauthorized: !opts.insecureSkipTls });
  const maxRedirects = opts.maxRedirects ?? 5;
  const userAgent = opts.userAgent ?? 'gantry';
  const idleTimeoutMs = opts.idleTimeoutMs ?? 120_000;

  function once(method: string, url: URL, headers: OutgoingHttpHeaders, body: Buffer | undefined): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const isHttps = url.protocol === 'https:';
      if (!isHttps && url.protocol !== 'http:') {
        reject(new GantryError('UNSUPPORTED', `unsupported URL scheme ${url.protocol}`));
        return;
      }
      const send = isHttps ? httpsRequest : httpRequest;
      const req = send(url, { method, headers, agent: isHttps ? httpsAgent : httpAgent, signal: opts.signal }, resolve);
      // Covers the response body too: the socket stays assigned while it streams.
      req.setTimeout(idleTimeoutMs, () => {
        req.destroy(new GantryError('IO', `no data from ${url.host} for ${Math.round(idleTimeoutMs / 1000)} s`, { hint: 'check the network, or that the server is up' }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  async function request(method: string, rawUrl: string, headers: Record<string, string> = {}, body?: Buffer) {
    let url = new URL(rawUrl);
    let m = method;
    let b = body;
    for (let hop = 0; ; hop++) {
      const h: OutgoingHttpHeaders = { 'user-agent': userAgent, ...headers };
      // Only the origin the user named gets the credentials (curl and git behave the same way).
      if (opts.credentials && opts.credentialOrigin === url.origin) h.authorization = basicAuthorization(opts.credentials);
      if (b) h['content-length'] = String(b.length);
      const res = await once(m, url, h, b);
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (!REDIRECTS.has(status) || !location) return { url: url.toString(), res };
      res.resume();
      if (hop >= maxRedirects) {
        throw new GantryError('IO', `too many redirects fetching ${url.origin}${url.pathname}`, { hint: 'check the URL' });
      }
      const next = new URL(location, url);
      if (url.protocol === 'https:' && next.protocol === 'http:') {
        throw new GantryError('IO', `refusing a redirect from https to plain http (${url.host} -> ${next.host})`);
      }
      if (status === 303 || ((status === 301 || status === 302) && m === 'POST')) {
        m = 'GET';
        b = undefined;
      }
      url = next;
    }
  }

  const git: HttpClient = {
    async request(r: GitHttpRequest): Promise<GitHttpResponse> {
      // Upload-pack requests are a few KB of wants/haves; buffering lets a 307 replay them.
      const body = await collect(r.body);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(r.headers ?? {})) {
        // Credentials come from this transport only, never from the library.
        if (k.toLowerCase() !== 'authorization') headers[k] = v;
      }
      const { url, res } = await request(r.method ?? 'GET', r.url, headers, body);
      return {
        url,
        method: r.method ?? 'GET',
        statusCode: res.statusCode ?? 0,
        statusMessage: res.statusMessage ?? '',
        headers: flattenHeaders(res),
        body: res[Symbol.asyncIterator]() as AsyncIterableIterator<Uint8Array>,
      };
    },
  };

  return {
    request,
    git,
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
