import { setTimeout as sleep } from 'node:timers/promises';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { GantryError } from '../util/errors.js';
import { hasTlsConfig, tlsSettingsFor, type ResolvedRegistryOptions } from './options.js';
import { normalizeRegistry, registryApiHost } from './reference.js';
import { proxyForUrl } from './proxy.js';
import { builtin } from '../util/builtin.js';

/** Request bodies are factories so every retry, redirect and auth replay sends the whole body again. */
export type BodyFactory = () => Buffer | string | Readable | Promise<Buffer | string | Readable>;

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: URL;
  headers?: Record<string, string>;
  body?: BodyFactory;
  signal?: AbortSignal;
  /** Registry whose TLS settings apply when `url` is on a host without settings of its own. */
  tlsFallbackRegistry?: string;
  /** Bytes of response body buffered before the socket is paused (default: 64 KiB). */
  highWaterMark?: number;
}

/** A response body: a stream, plus `dump()` to discard the rest and free the connection. */
export type ResponseBody = Readable & { dump(): Promise<void> };

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
  url: URL;
}

/**
 * A connection stalled this long (no bytes either way) fails with ETIMEDOUT, a transient error,
 * so the retry and resume logic takes over instead of hanging forever (undici's default too).
 */
const IDLE_TIMEOUT_MS = 300_000;
const CONNECTIONS_PER_HOST = 16;

interface Route {
  /** Direct connections: a node:http(s) keep-alive agent carrying the host's TLS settings. */
  agent?: HttpAgent;
  /** http.request or https.request, to go with `agent`. */
  send?: typeof httpRequest;
  /** Through a proxy: an undici ProxyAgent (CONNECT tunnels for https). */
  proxy?: import('undici').Dispatcher;
}

/**
 * One keep-alive agent per host, carrying that host's TLS settings (extra CAs on top of the system
 * roots, skip-verify, client certificate). Direct connections use node:http, which costs nothing
 * to load; undici (~100 ms of CPU at first use) is loaded only for proxies. No retries, redirects
 * or auth here: that is client.ts.
 */
export class HttpTransport {
  private readonly routes = new Map<string, Promise<Route>>();
  private closed = false;

  constructor(private readonly opts: ResolvedRegistryOptions) {}

  private settingsKey(url: URL, fallback?: string): string {
    const host = url.host.toLowerCase();
    // Config is keyed by registry names (docker.io), requests go to API hosts (registry-1.docker.io).
    if (fallback && registryApiHost(fallback) === host) return normalizeRegistry(fallback);
    if (hasTlsConfig(this.opts, host)) return host;
    return fallback ? normalizeRegistry(fallback) : host;
  }

  private route(url: URL, fallback?: string): Promise<Route> {
    const proxy = proxyForUrl(url, this.opts.env);
    const key = `${url.protocol}//${url.host.toLowerCase()}|${this.settingsKey(url, fallback)}|${proxy ?? ''}`;
    let route = this.routes.get(key);
    if (!route) {
      route = (async (): Promise<Route> => {
        const tls = await tlsSettingsFor(this.opts, this.settingsKey(url, fallback));
        // A `ca` replaces the system roots; registries with a private CA still redirect to public
        // storage, so keep both (as Kaniko does). node:tls is loaded only when a CA is given.
        const ca = tls.ca ? [...builtin<typeof import('node:tls')>('node:tls').rootCertificates, ...tls.ca.map((b) => b.toString('utf8'))] : undefined;
        const connect = {
          ...(ca ? { ca } : {}),
          rejectUnauthorized: tls.rejectUnauthorized,
          ...(tls.cert ? { cert: tls.cert } : {}),
          ...(tls.key ? { key: tls.key } : {}),
        };
        if (proxy) {
          // https goes through a CONNECT tunnel; plain http is sent to the proxy in absolute form,
          // as Go does (many proxies only allow CONNECT to port 443).
          const { newProxyAgent } = await import('./proxy-dispatch.js');
          return { proxy: newProxyAgent({ uri: proxy, requestTls: connect, proxyTunnel: url.protocol === 'https:', connections: CONNECTIONS_PER_HOST }) };
        }
        const agentOpts = { keepAlive: true, maxSockets: CONNECTIONS_PER_HOST, ...(this.opts.lookup ? { lookup: this.opts.lookup } : {}) };
        if (url.protocol !== 'https:') return { agent: new HttpAgent(agentOpts), send: httpRequest };
        // node:https (and node:tls) only for HTTPS hosts: a few ms of start-up a local registry does not need.
        const https = builtin<typeof import('node:https')>('node:https');
        return { agent: new https.Agent({ ...agentOpts, ...connect }), send: https.request as typeof httpRequest };
      })();
      route.catch(() => this.routes.delete(key));
      this.routes.set(key, route);
    }
    return route;
  }

  /** Sends one request. Network failures become REGISTRY_UNREACHABLE with `details.errno`. */
  async send(req: HttpRequest): Promise<HttpResponse> {
    if (this.closed) throw new GantryError('ABORTED', 'registry transport was closed');
    const route = await this.route(req.url, req.tlsFallbackRegistry);
    const body = req.body ? await req.body() : undefined;
    const headers: Record<string, string> = { 'user-agent': this.opts.userAgent, ...req.headers };
    try {
      const res = route.proxy ? await this.viaProxy(route.proxy, req, headers, body) : await this.direct(route.agent!, route.send!, req, headers, body);
      // An early error answer (401, 413, 5xx) leaves a file stream half read: release it now.
      if (res.status >= 300 && isStream(body) && !body.readableEnded) body.destroy();
      return res;
    } catch (err) {
      if (isStream(body)) body.destroy();
      throw networkError(err, `${req.method} ${redactUrl(req.url)}`, req.signal);
    }
  }

  private direct(agent: HttpAgent, send: typeof httpRequest, req: HttpRequest, headers: Record<string, string>, body: Buffer | string | Readable | undefined): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      let r: ClientRequest;
      try {
        r = send(req.url, { method: req.method, headers, agent, ...(req.signal ? { signal: req.signal } : {}), ...(req.highWaterMark ? { highWaterMark: req.highWaterMark } : {}) });
      } catch (err) {
        reject(err);
        return;
      }
      r.setTimeout(IDLE_TIMEOUT_MS, () => r.destroy(Object.assign(new Error(`no data for ${IDLE_TIMEOUT_MS / 1000}s`), { code: 'ETIMEDOUT' })));
      r.once('error', reject);
      r.once('response', (res: IncomingMessage) => {
        // After the answer, request errors (the socket dropping mid-body) surface on the body.
        r.off('error', reject);
        r.on('error', (err) => res.destroy(err));
        if (isStream(body) && !body.readableEnded) {
          // Answered before the whole body was sent (401, 413…): once the answer is read, the
          // half-sent request cannot be completed, so its connection is closed, not pooled.
          const abandon = () => {
            if (!r.writableFinished) r.destroy();
          };
          res.once('end', abandon);
          res.once('close', abandon);
        }
        resolve({ status: res.statusCode ?? 0, headers: distinctHeaders(res), body: withDump(res), url: req.url });
      });
      if (body === undefined) r.end();
      else if (!isStream(body)) r.end(body);
      else {
        // A failing source (digest mismatch, read error) aborts the request with its error.
        body.once('error', (err) => r.destroy(err));
        body.pipe(r);
      }
    });
  }

  private async viaProxy(dispatcher: import('undici').Dispatcher, req: HttpRequest, headers: Record<string, string>, body: Buffer | string | Readable | undefined): Promise<HttpResponse> {
    const { requestVia } = await import('./proxy-dispatch.js');
    const res = await requestVia(dispatcher, req.url, {
      method: req.method,
      headers,
      body: body ?? null,
      signal: req.signal ?? null,
      ...(req.highWaterMark ? { highWaterMark: req.highWaterMark } : {}),
    });
    return { status: res.statusCode, headers: res.headers, body: res.body as unknown as ResponseBody, url: req.url };
  }

  async close(): Promise<void> {
    this.closed = true;
    const routes = [...this.routes.values()];
    this.routes.clear();
    await Promise.all(
      routes.map(async (p) => {
        const r = await p.catch(() => undefined);
        r?.agent?.destroy();
        await r?.proxy?.close();
      }),
    );
  }
}

function isStream(body: unknown): body is Readable {
  return typeof body === 'object' && body !== null && typeof (body as Readable).pipe === 'function';
}

/** Repeated headers as arrays (several WWW-Authenticate challenges), single ones as strings. */
function distinctHeaders(res: IncomingMessage): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [name, values] of Object.entries(res.headersDistinct)) {
    if (values) (out as Record<string, string | string[]>)[name] = values.length === 1 ? values[0]! : values;
  }
  return out;
}

/** Bodies larger than this are not read to the end to keep the connection: it is closed instead. */
const DUMP_LIMIT = 128 * 1024;

function withDump(res: IncomingMessage): ResponseBody {
  const body = res as IncomingMessage & { dump(): Promise<void> };
  body.dump = () =>
    new Promise<void>((resolve) => {
      if (res.readableEnded || res.destroyed) return resolve();
      let seen = 0;
      res.on('data', (c: Buffer) => {
        seen += c.length;
        if (seen > DUMP_LIMIT) res.destroy();
      });
      res.once('end', () => resolve());
      res.once('close', () => resolve());
      res.on('error', () => resolve());
      res.resume();
    });
  return body;
}

/** Upload locations and redirects may carry signatures in the query; keep them out of messages. */
export function redactUrl(url: URL): string {
  return url.search ? `${url.origin}${url.pathname}?…` : `${url.origin}${url.pathname}`;
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
]);

function errCode(err: unknown): string | undefined {
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    if (e instanceof GantryError) {
      if (typeof e.details.errno === 'string') return e.details.errno;
    } else if (typeof e.code === 'string') return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

/** The server speaks TLS but its certificate is not trusted: falling back to HTTP would not help. */
export function isCertificateError(err: unknown): boolean {
  const code = errCode(err);
  return code !== undefined && TLS_CODES.has(code);
}

export function isTlsError(err: unknown): boolean {
  const code = errCode(err);
  if (code && TLS_CODES.has(code)) return true;
  const msg = String((err as Error)?.message ?? '');
  return /wrong version number|ssl|tls|certificate/i.test(msg) || (code !== undefined && /^ERR_SSL|^ERR_TLS/.test(code)) || code === 'EPROTO';
}

export function networkError(err: unknown, doing: string, signal?: AbortSignal): GantryError {
  if (err instanceof GantryError) return err;
  const code = errCode(err);
  const message = (err as Error)?.message ?? String(err);
  if (signal?.aborted || code === 'UND_ERR_ABORTED' || (err as Error)?.name === 'AbortError') {
    return new GantryError('ABORTED', `${doing}: aborted`, {}, { cause: err });
  }
  let hint: string | undefined;
  if (code && TLS_CODES.has(code)) {
    hint = 'the registry certificate is not trusted: pass its CA with --registry-certificate <registry>=<ca.pem>, or (unsafe) --skip-tls-verify-registry <registry>';
  } else if (isTlsError(err)) {
    hint = 'TLS handshake failed; if the registry only speaks plain HTTP, allow it with --insecure-registry <registry>';
  } else if (code === 'ECONNREFUSED') {
    hint = 'nothing listens there: check the registry host and port';
  } else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    hint = 'the registry host name does not resolve: check the name and DNS';
  }
  return new GantryError('REGISTRY_UNREACHABLE', `${doing}: ${message}${code && !message.includes(code) ? ` (${code})` : ''}`, { errno: code, ...(hint ? { hint } : {}) }, { cause: err });
}

const RETRYABLE_NET = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_REQ_RETRY',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** Whether a failure is the kind a later attempt may not see (dropped connection, timeout). */
export function isTransientNetworkError(err: unknown): boolean {
  if (err instanceof GantryError) {
    if (err.code !== 'REGISTRY_UNREACHABLE' && err.code !== 'IO') return false;
    const errno = err.details.errno;
    if (typeof errno === 'string') return RETRYABLE_NET.has(errno);
    return isTransientNetworkError(err.cause);
  }
  const code = errCode(err);
  if (code) return RETRYABLE_NET.has(code);
  return /terminated|other side closed|socket hang up/i.test(String((err as Error)?.message ?? ''));
}

export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  if (Array.isArray(v)) return v[0];
  return v;
}

/** Waits between retries; cancellation surfaces as ABORTED like every other aborted operation. */
export async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, signal ? { signal } : undefined);
  } catch (err) {
    throw new GantryError('ABORTED', 'aborted while waiting to retry', {}, { cause: err });
  }
}
