import { GantryError } from '../../util/errors.js';
import { errorFromResponse, readLimited } from '../response-error.js';
import type { HttpRequest, HttpResponse } from '../transport.js';
import type { Challenge } from './challenge.js';
import { basicAuthHeader, isAnonymous, type Credentials } from './credentials.js';
import { registryApiHost } from '../reference.js';

export interface Token {
  token: string;
  /** ms since epoch */
  expiresAt: number;
  /** When to fetch a new one: shortly before expiry, so a token does not lapse in flight. */
  renewAt: number;
  refreshToken?: string;
}

/** Sends one HTTP request (the caller supplies transport, TLS and retries). */
export type Send = (req: HttpRequest) => Promise<HttpResponse>;

export interface TokenRequest {
  registry: string;
  challenge: Challenge;
  scopes: string[];
  credentials: Credentials;
  clientId: string;
  /** Plain-HTTP realms are only accepted for registries we already talk to over HTTP or on loopback. */
  allowHttpRealm: boolean;
  signal?: AbortSignal;
  configPath?: string;
}

/** The spec's default when a token server omits `expires_in` (GHCR does). */
export const DEFAULT_TOKEN_LIFETIME_S = 60;

function realmUrl(req: TokenRequest): URL {
  const realm = req.challenge.params.realm;
  if (!realm) {
    throw new GantryError('REGISTRY_ERROR', `${req.registry} sent a Bearer challenge without a realm`, { hint: 'the registry or its proxy is misconfigured' });
  }
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new GantryError('REGISTRY_ERROR', `${req.registry} sent an invalid token realm "${realm}"`);
  }
  const loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/i.test(url.hostname);
  if (url.protocol === 'http:' && !req.allowHttpRealm && !loopback) {
    throw new GantryError('REGISTRY_ERROR', `${req.registry} asks for credentials to be sent to a plain-HTTP token realm ${url.origin}`, {
      hint: 'refusing to send credentials without TLS; mark the registry insecure (--insecure-registry) if this is intended',
    });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new GantryError('REGISTRY_ERROR', `${req.registry} sent a token realm with unsupported scheme ${url.protocol}`);
  }
  if (!isAnonymous(req.credentials) && effectiveDomain(url.hostname) !== effectiveDomain(hostOnly(registryApiHost(req.registry)))) {
    // A compromised or spoofed registry must not be able to collect credentials for another
    // domain (go-containerregistry applies the same rule).
    throw new GantryError('REGISTRY_ERROR', `${req.registry} asks for credentials to be sent to a token service in another domain (${url.host})`, {
      hint: 'refusing to send credentials across domains; check that the registry address is right',
    });
  }
  return url;
}

function hostOnly(hostPort: string): string {
  if (hostPort.startsWith('[')) return hostPort.slice(1, hostPort.indexOf(']'));
  const i = hostPort.lastIndexOf(':');
  return i === -1 ? hostPort : hostPort.slice(0, i);
}

/** The last two labels of a host name (`auth.docker.io` -> `docker.io`); IP addresses stand for themselves. */
export function effectiveDomain(host: string): string {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
  if (/^\d+\.\d+\.\d+\.\d+$/.test(h) || h.includes(':')) return h;
  return h.split('.').slice(-2).join('.');
}

/**
 * Gets a bearer token. Like go-containerregistry: an identity token (OAuth2 refresh token) is
 * exchanged with `POST grant_type=refresh_token`, falling back to GET when the server has no
 * OAuth2 endpoint (404/405); everything else uses `GET ?service=&scope=` with Basic credentials
 * (or none). GET is what GHCR, Docker Hub and distribution all accept.
 */
export async function fetchToken(send: Send, req: TokenRequest): Promise<Token> {
  const url = realmUrl(req);
  const what = `getting a token for ${req.registry} (scope ${req.scopes.join(' ') || 'none'}) from ${url.origin}${url.pathname}`;
  if (req.credentials.identityToken) {
    const res = await postOAuth(send, url, req, { grant_type: 'refresh_token', refresh_token: req.credentials.identityToken });
    if (res.status !== 404 && res.status !== 405) return parseTokenResponse(res, req, what);
    await res.body.dump();
  }
  return parseTokenResponse(await getToken(send, url, req), req, what);
}

/**
 * `docker login`'s OAuth2 password grant with `access_type=offline`: returns a refresh token to
 * store as `identitytoken`, so the password itself need not be kept.
 */
export async function fetchRefreshToken(send: Send, req: TokenRequest): Promise<Token> {
  const url = realmUrl(req);
  const { username, password } = req.credentials;
  if (!username || !password) throw new GantryError('CREDENTIALS', 'a username and password are needed to obtain a refresh token');
  const res = await postOAuth(send, url, req, { grant_type: 'password', username, password, access_type: 'offline' });
  return parseTokenResponse(res, req, `logging in to ${req.registry} at ${url.origin}${url.pathname}`);
}

async function postOAuth(send: Send, url: URL, req: TokenRequest, fields: Record<string, string>): Promise<HttpResponse> {
  const form = new URLSearchParams();
  form.set('client_id', req.clientId);
  if (req.challenge.params.service) form.set('service', req.challenge.params.service);
  if (req.scopes.length) form.set('scope', req.scopes.join(' '));
  for (const [k, v] of Object.entries(fields)) form.set(k, v);
  const body = Buffer.from(form.toString());
  return send({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(body.length) },
    body: () => body,
    signal: req.signal,
    tlsFallbackRegistry: req.registry,
  });
}

async function getToken(send: Send, realm: URL, req: TokenRequest): Promise<HttpResponse> {
  const url = new URL(realm);
  if (req.challenge.params.service) url.searchParams.set('service', req.challenge.params.service);
  for (const s of req.scopes) url.searchParams.append('scope', s);
  const headers: Record<string, string> = {};
  const { username, password } = req.credentials;
  if (!isAnonymous(req.credentials) && username && password !== undefined) {
    url.searchParams.set('account', username);
    headers.authorization = basicAuthHeader(username, password);
  }
  return send({ method: 'GET', url, headers, signal: req.signal, tlsFallbackRegistry: req.registry });
}

async function parseTokenResponse(res: HttpResponse, req: TokenRequest, what: string): Promise<Token> {
  if (res.status !== 200) {
    throw await errorFromResponse(res, {
      what,
      registry: req.registry,
      kind: 'token',
      credentialsSource: req.credentials.source,
      configPath: req.configPath,
    });
  }
  const text = await readLimited(res.body, 1024 * 1024, 'token response');
  let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown; refresh_token?: unknown };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw new GantryError('REGISTRY_ERROR', `${what}: the token server answered something that is not JSON`);
  }
  const token = typeof parsed.token === 'string' && parsed.token ? parsed.token : typeof parsed.access_token === 'string' ? parsed.access_token : '';
  if (!token) throw new GantryError('REGISTRY_ERROR', `${what}: the token server's answer has no token`);
  const lifetime = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_LIFETIME_S;
  let issued = Date.now();
  if (typeof parsed.issued_at === 'string') {
    const t = Date.parse(parsed.issued_at);
    // Trust the server's clock only when it roughly agrees with ours.
    if (!Number.isNaN(t) && Math.abs(t - issued) < 5 * 60_000) issued = Math.min(issued, t);
  }
  const lifetimeMs = lifetime * 1000;
  const out: Token = { token, expiresAt: issued + lifetimeMs, renewAt: issued + lifetimeMs - Math.min(10_000, lifetimeMs / 5) };
  if (typeof parsed.refresh_token === 'string' && parsed.refresh_token) out.refreshToken = parsed.refresh_token;
  return out;
}
