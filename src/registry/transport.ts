import { rootCertificates } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, ProxyAgent, request, type Dispatcher } from 'undici';
import { GantryError } from '../util/errors.js';
import { hasTlsConfig, tlsSettingsFor, type ResolvedRegistryOptions } from './options.js';
import { normalizeRegistry, registryApiHost } from './reference.js';
import { proxyForUrl } from './proxy.js';

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
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData['body'];
  url: URL;
}

/**
 * One undici Agent per host, carrying that host's TLS settings (extra CAs on top of the system
 * roots, skip-verify, client certificate). No retries, redirects or auth here: that is client.ts.
 */
export class HttpTransport {
  private readonly agents = new Map<string, Promise<Dispatcher>>();
  private closed = false;

  constructor(private readonly opts: ResolvedRegistryOptions) {}

  private settingsKey(url: URL, fallback?: string): string {
    const host = url.host.toLowerCase();
    // Config is keyed by registry names (docker.io), requests go to API hosts (registry-1.docker.io).
    if (fallback && registryApiHost(fallback) === host) return normalizeRegistry(fallback);
    if (hasTlsConfig(this.opts, host)) return host;
    return fallback ? normalizeRegistry(fallback) : host;
  }

  private dispatcher(url: URL, fallback?: string): Promise<Dispatcher> {
    const proxy = proxyForUrl(url, this.opts.env);
    const key = `${url.protocol}//${url.host.toLowerCase()}|${this.settingsKey(url, fallback)}|${proxy ?? ''}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent = (async () => {
        const tls = await tlsSettingsFor(this.opts, this.settingsKey(url, fallback));
        const connect = {
          // undici replaces the system roots when `ca` is given; registries with a private CA
          // still redirect to public storage, so keep both (as Kaniko does).
          ...(tls.ca ? { ca: [...rootCertificates, ...tls.ca.map((b) => b.toString('utf8'))] } : {}),
          rejectUnauthorized: tls.rejectUnauthorized,
          ...(tls.cert ? { cert: tls.cert } : {}),
          ...(tls.key ? { key: tls.key } : {}),
        };
        if (proxy) {
          // https goes through a CONNECT tunnel; plain http is sent to the proxy in absolute form,
          // as Go does (many proxies only allow CONNECT to port 443).
          return new ProxyAgent({ uri: proxy, requestTls: connect, proxyTunnel: url.protocol === 'https:', connections: 16 });
        }
        return new Agent({ connect, connections: 16 });
      })();
      agent.catch(() => this.agents.delete(key));
      this.agents.set(key, agent);
    }
    return agent;
  }

  /** Sends one request. Network failures become REGISTRY_UNREACHABLE with `details.errno`. */
  async send(req: HttpRequest): Promise<HttpResponse> {
    if (this.closed) throw new GantryError('ABORTED', 'registry transport was closed');
    const dispatcher = await this.dispatcher(req.url, req.tlsFallbackRegistry);
    const body = req.body ? await req.body() : undefined;
    const headers: Record<string, string> = { 'user-agent': this.opts.userAgent, ...req.headers };
    try {
      const res = await request(req.url, {
        method: req.method,
        headers,
        body: body ?? null,
        dispatcher,
        signal: req.signal ?? null,
      });
      // An early error answer (401, 413, 5xx) leaves a file stream half read: release it now.
      if (res.statusCode >= 300 && body && typeof body === 'object' && 'destroy' in body && !(body as Readable).readableEnded) (body as Readable).destroy();
      return { status: res.statusCode, headers: res.headers, body: res.body, url: req.url };
    } catch (err) {
      if (body && typeof body === 'object' && 'destroy' in body) (body as Readable).destroy();
      throw networkError(err, `${req.method} ${redactUrl(req.url)}`, req.signal);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const agents = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(agents.map(async (p) => (await p.catch(() => undefined))?.close()));
  }
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
