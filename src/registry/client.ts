import { GantryError, wrapError } from '../util/errors.js';
import { backoffDelay, parseRetryAfter } from '../util/retry.js';
import { Authenticator } from './auth/authenticator.js';
import { parseChallenges, pickChallenge, type Challenge } from './auth/challenge.js';
import { DockerKeychain, type Keychain } from './auth/keychain.js';
import { allowsPlainHttp, resolveOptions, type RegistryOptions, type ResolvedRegistryOptions } from './options.js';
import { normalizeRegistry, registryApiHost } from './reference.js';
import { errorFromResponse, isRetryableStatus, type ErrorContext } from './response-error.js';
import { HttpTransport, headerValue, isCertificateError, pause, isTransientNetworkError, networkError, redactUrl, type BodyFactory, type HttpRequest, type HttpResponse } from './transport.js';

/** Where a registry's `/v2/` lives and how it wants to be authenticated (learned by one ping). */
export interface Endpoint {
  registry: string;
  origin: string;
  plainHttp: boolean;
  /** Updated when a later 401 carries a different challenge. */
  challenge: Challenge | undefined;
}

export interface RequestSpec {
  registry: string;
  method: HttpRequest['method'];
  /** `/v2/...` relative to the registry, or an absolute URL (upload locations). */
  path: string | URL;
  headers?: Record<string, string>;
  body?: BodyFactory;
  /** Token scopes the request needs, e.g. `repository:app:pull`. */
  scopes: string[];
  /** Statuses handed back to the caller; anything else becomes an error. */
  expect: number[];
  ctx: Omit<ErrorContext, 'registry' | 'credentialsSource' | 'configPath'>;
  /** Retry transient failures here (default true). False for requests whose replay is not safe (PATCH). */
  retry?: boolean;
  /** Follow redirects (default true). */
  redirects?: boolean;
  /**
   * On a 401, fetch a token for the scopes the registry names and send again (default true).
   * False for best-effort requests whose failure is harmless: no extra token request, and the
   * token the other requests share is not thrown away.
   */
  authReplay?: boolean;
  /** Response body buffering before the socket is paused (blobs: larger, fewer pause/resume turns). */
  highWaterMark?: number;
  signal?: AbortSignal;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** How long a plain-HTTP ping of an insecure registry runs alone before HTTPS is tried too. */
const PLAIN_HTTP_HEAD_START_MS = 150;
const MAX_REDIRECTS = 10;

export interface RegistryClientDeps {
  keychain?: Keychain;
}

/**
 * Talks HTTP to registries: finds the scheme (HTTPS, or plain HTTP for insecure/loopback
 * registries when HTTPS fails, as go-containerregistry does), authenticates (pre-emptively once
 * the challenge is known; on a 401 refreshes and replays once), retries transient failures
 * honouring Retry-After, follows redirects without leaking Authorization to other hosts, and maps
 * error responses to GantryErrors. One client serves many registries; close() releases sockets.
 */
export class RegistryClient {
  readonly options: ResolvedRegistryOptions;
  private readonly transport: HttpTransport;
  private readonly auth: Authenticator;
  private readonly endpoints = new Map<string, Promise<Endpoint>>();
  /** `registry/repository@digest` of blobs seen in or pushed to a repository by this client. */
  private readonly blobsPresent = new Set<string>();

  constructor(options: RegistryOptions | ResolvedRegistryOptions = {}, deps: RegistryClientDeps = {}) {
    this.options = resolveOptions(options);
    this.transport = new HttpTransport(this.options);
    const keychain = deps.keychain ?? new DockerKeychain(this.options);
    this.auth = new Authenticator(keychain, (req) => this.sendWithRetry(req), this.options.userAgent.split('/')[0] ?? 'gantry', this.options.logger);
  }

  /**
   * Whether this client already saw the blob in the repository (a HEAD or an upload): a push
   * that checks the same layers twice (mounts from the cache repository, then the copy) asks once.
   */
  knowsBlob(registry: string, repository: string, digest: string): boolean {
    return this.blobsPresent.has(`${normalizeRegistry(registry)}/${repository}@${digest}`);
  }

  rememberBlob(registry: string, repository: string, digest: string): void {
    this.blobsPresent.add(`${normalizeRegistry(registry)}/${repository}@${digest}`);
  }

  /**
   * Forgets the blobs remembered for one repository, for a push that starts over: a registry may
   * accept a mount or upload yet later call the blob unknown, and a retry that trusted the memory
   * would never send it again.
   */
  forgetBlobs(registry: string, repository: string): void {
    // Repository names cannot contain `@`, so the prefix names this repository only.
    const prefix = `${normalizeRegistry(registry)}/${repository}@`;
    for (const key of this.blobsPresent) if (key.startsWith(prefix)) this.blobsPresent.delete(key);
  }

  get authenticator(): Authenticator {
    return this.auth;
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  private delay(attempt: number): number {
    return backoffDelay({ attempts: this.options.retries + 1, ...this.options.backoff }, attempt);
  }

  /** Raw request with transient-failure retries; used for token servers. */
  async sendWithRetry(req: HttpRequest, opts: { retryNetwork?: boolean } = {}): Promise<HttpResponse> {
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await this.transport.send(req);
        if (isRetryableStatus(res.status) && attempt <= this.options.retries) {
          const wait = parseRetryAfter(headerValue(res.headers, 'retry-after')) ?? this.delay(attempt);
          await res.body.dump();
          await pause(wait, req.signal);
          continue;
        }
        return res;
      } catch (err) {
        if (attempt > this.options.retries || req.signal?.aborted || opts.retryNetwork === false || !isTransientNetworkError(err)) throw err;
        await pause(this.delay(attempt), req.signal);
      }
    }
  }

  /** Resolves (once per registry) the scheme and auth challenge with `GET /v2/`. */
  endpoint(registry: string, signal?: AbortSignal): Promise<Endpoint> {
    const key = normalizeRegistry(registry);
    let p = this.endpoints.get(key);
    if (!p) {
      p = this.ping(key, signal);
      this.endpoints.set(key, p);
      p.catch(() => {
        if (this.endpoints.get(key) === p) this.endpoints.delete(key);
      });
    }
    return p;
  }

  private async ping(registry: string, signal?: AbortSignal): Promise<Endpoint> {
    if (!allowsPlainHttp(this.options, registry)) {
      const r = await this.probe(registry, 'https', true, signal);
      if ('endpoint' in r) return r.endpoint;
      throw unreachable(registry, [r.failure], true);
    }
    // HTTPS is preferred, plain HTTP is the fallback, and a port speaks one of the two. Plain HTTP
    // is asked first, with a head start: an answer that is unmistakably a registry's is taken as
    // it comes, without the TLS handshake (setting up TLS and failing it is most of a local
    // copy's start-up). Any other answer, or none within the head start, starts the HTTPS probe,
    // whose outcome then decides as a sequential probe would.
    const http = this.probe(registry, 'http', true, signal);
    http.catch(() => undefined);
    const registryAnswer = http.then((r) => ('endpoint' in r && r.isRegistry ? r : undefined), () => undefined);
    let timer: NodeJS.Timeout | undefined;
    const headStart = new Promise<undefined>((resolve) => (timer = setTimeout(resolve, PLAIN_HTTP_HEAD_START_MS, undefined)));
    const first = await Promise.race([http.then((r) => r, () => undefined), headStart]);
    clearTimeout(timer);
    if (first && 'endpoint' in first && first.isRegistry) return this.plainHttp(first.endpoint, first.status);
    const stopHttps = new AbortController();
    const https = this.probe(registry, 'https', false, signal ? AbortSignal.any([signal, stopHttps.signal]) : stopHttps.signal);
    https.catch(() => undefined);
    const late = await Promise.race([registryAnswer, https.then(() => undefined, () => undefined)]);
    if (late) {
      stopHttps.abort();
      return this.plainHttp(late.endpoint, late.status);
    }
    const failures: GantryError[] = [];
    const viaHttps = await https;
    if ('endpoint' in viaHttps) return viaHttps.endpoint;
    failures.push(viaHttps.failure);
    const viaHttp = await http;
    if ('endpoint' in viaHttp) return this.plainHttp(viaHttp.endpoint, viaHttp.status);
    failures.push(viaHttp.failure);
    throw unreachable(registry, failures, false);
  }

  private plainHttp(endpoint: Endpoint, status: number): Endpoint {
    if (status !== 401) this.options.logger.log('warn', `using plain HTTP for registry ${endpoint.registry}`);
    return endpoint;
  }

  /**
   * One `GET /v2/` over one scheme: the endpoint, or why this scheme does not serve a registry.
   * Throws when no other scheme may be tried: aborted, untrusted certificate, registry error (5xx).
   */
  private async probe(registry: string, scheme: 'https' | 'http', retryNetwork: boolean, signal: AbortSignal | undefined): Promise<{ endpoint: Endpoint; status: number; isRegistry: boolean } | { failure: GantryError }> {
    const url = new URL(`${scheme}://${registryApiHost(registry)}/v2/`);
    let res: HttpResponse;
    try {
      const req: HttpRequest = { method: 'GET', url, signal, tlsFallbackRegistry: registry };
      // With plain HTTP still to try, an HTTPS failure is an answer, not a hiccup to retry.
      res = await this.sendWithRetry(req, { retryNetwork });
    } catch (err) {
      const e = networkError(err, `GET ${url.href}`, signal);
      if (e.code === 'ABORTED' || isCertificateError(err)) throw wrapError(e, `connecting to ${registry}`);
      return { failure: e };
    }
    if (scheme === 'http' && res.status !== 200 && res.status !== 401 && res.status !== 404) {
      // e.g. 400 "plain HTTP request sent to HTTPS port": not a plain-HTTP registry after all.
      await res.body.dump();
      return { failure: new GantryError('REGISTRY_UNREACHABLE', `GET ${url.href} answered ${res.status}`, { status: res.status }) };
    }
    if (res.status >= 500) throw await errorFromResponse(res, { what: `connecting to ${registry}`, registry, kind: 'ping' });
    // 200 or 401; or 404 from registries that do not implement the base endpoint: usable either way.
    const endpoint: Endpoint = { registry, origin: url.origin, plainHttp: scheme === 'http', challenge: undefined };
    if (res.status === 401) endpoint.challenge = pickChallenge(parseChallenges(res.headers['www-authenticate']));
    await res.body.dump();
    const isRegistry = (res.status === 200 || res.status === 401) && headerValue(res.headers, 'docker-distribution-api-version') !== undefined;
    return { endpoint, status: res.status, isRegistry };
  }

  /**
   * Connects ahead of the first real request: the `/v2/` ping and, where the registry wants one,
   * the token for `scopes`, so callers can overlap them with work elsewhere (a copy pings its
   * destination while the source manifest downloads). Failures are left for that first request to
   * report, with its own context.
   */
  async warmUp(registry: string, scopes: string[], signal?: AbortSignal): Promise<void> {
    try {
      const key = normalizeRegistry(registry);
      const ep = await this.endpoint(key, signal);
      await this.auth.authorization({ registry: key, challenge: ep.challenge, scopes, allowHttpRealm: ep.plainHttp, signal });
    } catch {
      // reported by the request that needs the connection
    }
  }

  /**
   * Sends a registry request and returns the response when its status is in `spec.expect` (body
   * unread); throws a GantryError otherwise.
   */
  async request(spec: RequestSpec): Promise<HttpResponse> {
    const registry = normalizeRegistry(spec.registry);
    let ep: Endpoint;
    try {
      ep = await this.endpoint(registry, spec.signal);
    } catch (err) {
      throw err instanceof GantryError ? withWhat(err, spec.ctx.what) : networkError(err, spec.ctx.what, spec.signal);
    }
    const url = typeof spec.path === 'string' && spec.path.startsWith('/') ? new URL(spec.path, ep.origin) : new URL(spec.path);
    let scopes = [...spec.scopes];
    let replayedAuth = false;
    const retries = spec.retry === false ? 0 : this.options.retries;
    for (let attempt = 1; ; attempt++) {
      let res: HttpResponse;
      try {
        const authorization = await this.auth.authorization({ registry, challenge: ep.challenge, scopes, allowHttpRealm: ep.plainHttp, signal: spec.signal });
        res = await this.sendFollowing(spec, ep, url, authorization);
      } catch (err) {
        if (attempt <= retries && !spec.signal?.aborted && isTransientNetworkError(err)) {
          this.options.logger.log('debug', `${spec.ctx.what}: ${(err as Error).message}; retrying`);
          await pause(this.delay(attempt), spec.signal);
          continue;
        }
        if (err instanceof GantryError) throw withWhat(err, spec.ctx.what);
        throw networkError(err, spec.ctx.what, spec.signal);
      }
      warnings(res, this.options.logger, registry);
      if (spec.expect.includes(res.status)) return res;
      if (res.status === 401 && !replayedAuth && spec.authReplay !== false) {
        const challenge = pickChallenge(parseChallenges(res.headers['www-authenticate']));
        if (challenge) {
          await res.body.dump();
          replayedAuth = true;
          this.auth.invalidate(registry, scopes);
          // Registries name the scope they want; ask for it first since some only read the first.
          const wanted = challenge.params.scope?.split(' ').filter((s) => s && !scopes.includes(s)) ?? [];
          scopes = [...wanted, ...scopes];
          ep.challenge = challenge;
          attempt--;
          continue;
        }
      }
      if (isRetryableStatus(res.status) && attempt <= retries) {
        const wait = parseRetryAfter(headerValue(res.headers, 'retry-after')) ?? this.delay(attempt);
        this.options.logger.log('debug', `${spec.ctx.what}: HTTP ${res.status}; retrying in ${wait} ms`);
        await res.body.dump();
        await pause(wait, spec.signal);
        continue;
      }
      const creds = await this.auth.credentials(registry).catch(() => undefined);
      throw await errorFromResponse(res, {
        ...spec.ctx,
        registry,
        credentialsSource: creds?.source,
        configPath: this.auth.configPath(),
      });
    }
  }

  private async sendFollowing(spec: RequestSpec, ep: Endpoint, start: URL, authorization: string | undefined): Promise<HttpResponse> {
    let url = start;
    let method = spec.method;
    let body = spec.body;
    let headers = { ...spec.headers };
    const registryHost = new URL(ep.origin).host;
    for (let hop = 0; ; hop++) {
      const sameHost = url.host === registryHost;
      const h = { ...headers };
      // Authorization belongs to the registry; storage backends behind redirects get none.
      if (authorization && sameHost) h.authorization = authorization;
      const res = await this.transport.send({
        method,
        url,
        headers: h,
        body,
        signal: spec.signal,
        tlsFallbackRegistry: url.hostname === new URL(ep.origin).hostname ? ep.registry : undefined,
        ...(spec.highWaterMark ? { highWaterMark: spec.highWaterMark } : {}),
      });
      if (!REDIRECTS.has(res.status) || spec.redirects === false) return res;
      const location = headerValue(res.headers, 'location');
      if (!location) return res;
      await res.body.dump();
      if (hop >= MAX_REDIRECTS) {
        throw new GantryError('REGISTRY_ERROR', `${spec.ctx.what}: more than ${MAX_REDIRECTS} redirects (last to ${redactUrl(new URL(location, url))})`);
      }
      const next = new URL(location, url);
      if (url.protocol === 'https:' && next.protocol === 'http:' && !ep.plainHttp) {
        throw new GantryError('REGISTRY_ERROR', `${spec.ctx.what}: refusing redirect from HTTPS to plain HTTP (${redactUrl(next)})`);
      }
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = method === 'HEAD' ? 'HEAD' : 'GET';
        body = undefined;
        const { ['content-length']: _l, ['content-type']: _t, ...rest } = headers;
        headers = rest;
      }
      url = next;
    }
  }
}

function withWhat(err: GantryError, what: string): GantryError {
  if (err.message.startsWith(what)) return err;
  return new GantryError(err.code, `${what}: ${err.message}`, { ...err.details }, { cause: err });
}

function warnings(res: HttpResponse, logger: ResolvedRegistryOptions['logger'], registry: string): void {
  const w = res.headers.warning;
  if (!w) return;
  for (const line of Array.isArray(w) ? w : [w]) {
    const m = /^299\s+\S+\s+"(.*)"/.exec(line);
    if (m) logger.log('warn', `${registry}: ${m[1]}`);
  }
}

function unreachable(registry: string, failures: GantryError[], httpsOnly: boolean): GantryError {
  const last = failures[failures.length - 1]!;
  const message = `connecting to ${registry}: ${failures.map((f) => f.message).join('; ')}`;
  const hint =
    httpsOnly && /wrong version number|EPROTO|ssl/i.test(message)
      ? `the registry seems to speak plain HTTP; allow it with --insecure-registry ${registry}`
      : last.hint;
  return new GantryError('REGISTRY_UNREACHABLE', message, { ...last.details, registry, ...(hint ? { hint } : {}) }, { cause: last });
}
