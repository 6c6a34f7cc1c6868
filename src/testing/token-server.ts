import { createPrivateKey, createSign, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

/** One access rule: repositories whose name matches `repo` (`*` matches any run of characters, `/` included) get `actions`. */
export interface AccessRule {
  repo: string;
  actions: string[];
}

export interface TokenRequestRecord {
  method: 'GET' | 'POST';
  scopes: string[];
  account?: string;
  grantType?: string;
  /** True when a token was issued (valid credentials, a valid refresh token, or allowed anonymous access). */
  authorized: boolean;
}

export interface TokenServerOptions {
  service: string;
  issuer: string;
  /** account -> password */
  users: Record<string, string>;
  /** Per-account rules; an account missing from a given map gets nothing. Without a map, valid users get everything. */
  access?: Record<string, AccessRule[]>;
  anonymousPull?: boolean;
  /** PEM private key and DER (base64) certificate the registry trusts through rootcertbundle. */
  signingKeyPem: string;
  signingCertDerBase64: string;
  tls?: { cert: string; key: string };
  expiresInSeconds: number;
  /** False makes POST answer 404, as registries without OAuth2 support do, so clients fall back to GET. */
  oauthPost: boolean;
}

export interface TokenServer {
  url: string;
  realm: string;
  service: string;
  requests: TokenRequestRecord[];
  refreshTokens: Map<string, string>;
  stop(): Promise<void>;
}

interface Claims {
  iss: string;
  sub: string;
  aud: string;
  exp: number;
  nbf: number;
  iat: number;
  jti: string;
  access: Array<{ type: string; name: string; actions: string[] }>;
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

/**
 * Signs a registry token. distribution 2.8 verifies the `x5c` chain against its rootcertbundle and
 * then the signature with the leaf's key; ES256 signatures must be raw r||s (JOSE), not DER.
 */
export function signToken(claims: Claims, key: KeyObject, certDerBase64: string): string {
  const header = { typ: 'JWT', alg: 'ES256', x5c: [certDerBase64] };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const sig = createSign('SHA256').update(input).sign({ key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64url(sig)}`;
}

/** A parsed `type[(class)]:name:actions` scope. The name may contain `host:port`, so split at the first and last colon. */
export function parseScope(scope: string): { type: string; name: string; actions: string[] } | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last === first) return undefined;
  const type = scope.slice(0, first).replace(/\(.*\)$/, '');
  return { type, name: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(',').filter(Boolean) };
}

function globToRegExp(glob: string): RegExp {
  return new RegExp('^' + glob.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
}

function grant(
  opts: TokenServerOptions,
  account: string | undefined,
  scopes: string[],
): Claims['access'] {
  const out: Claims['access'] = [];
  for (const raw of scopes) {
    const scope = parseScope(raw);
    if (!scope) continue;
    let allowed: Set<string>;
    if (account === undefined) {
      allowed = new Set(opts.anonymousPull && scope.type === 'repository' ? ['pull'] : []);
    } else if (!opts.access) {
      allowed = new Set(scope.actions);
    } else {
      allowed = new Set();
      for (const rule of opts.access[account] ?? []) {
        if (scope.type === 'repository' && globToRegExp(rule.repo).test(scope.name)) rule.actions.forEach((a) => allowed.add(a));
      }
    }
    // Partial grants are the protocol: the intersection, never an error (token.md).
    const actions = allowed.has('*') ? scope.actions : scope.actions.filter((a) => allowed.has(a));
    out.push({ type: scope.type, name: scope.name, actions });
  }
  return out;
}

function basicCredentials(req: IncomingMessage): { user: string; pass: string } | undefined {
  const h = req.headers.authorization;
  if (!h || !/^basic /i.test(h)) return undefined;
  const text = Buffer.from(h.slice(6).trim(), 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i < 0 ? { user: text, pass: '' } : { user: text.slice(0, i), pass: text.slice(i + 1) };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** A Docker token server (GET, and OAuth2 POST with password and refresh-token grants) that real distribution accepts. */
export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const key = createPrivateKey(opts.signingKeyPem);
  const requests: TokenRequestRecord[] = [];
  const refreshTokens = new Map<string, string>();
  let realm = '';

  const issue = (account: string | undefined, scopes: string[]) => {
    const now = Math.floor(Date.now() / 1000);
    const claims: Claims = {
      iss: opts.issuer,
      sub: account ?? '',
      aud: opts.service,
      exp: now + opts.expiresInSeconds,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access: grant(opts, account, scopes),
    };
    return { token: signToken(claims, key, opts.signingCertDerBase64), issuedAt: new Date(now * 1000).toISOString() };
  };
  const newRefreshToken = (account: string): string => {
    const t = randomBytes(24).toString('base64url');
    refreshTokens.set(t, account);
    return t;
  };
  const validUser = (c: { user: string; pass: string } | undefined) =>
    c !== undefined && Object.prototype.hasOwnProperty.call(opts.users, c.user) && opts.users[c.user] === c.pass;
  const unauthorized = (res: ServerResponse, message: string) =>
    json(res, 401, { errors: [{ code: 'UNAUTHORIZED', message }] }, { 'www-authenticate': `Basic realm="${realm}"` });

  const handleGet = (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
    const creds = basicCredentials(req);
    const record: TokenRequestRecord = { method: 'GET', scopes, authorized: false };
    const account = creds?.user ?? url.searchParams.get('account') ?? undefined;
    if (account !== undefined) record.account = account;
    requests.push(record);
    const service = url.searchParams.get('service');
    if (service !== null && service !== opts.service) return json(res, 400, { errors: [{ code: 'INVALID_REQUEST', message: `unknown service ${service}` }] });
    if (creds) {
      if (!validUser(creds)) return unauthorized(res, 'invalid username or password');
    } else if (!opts.anonymousPull) {
      return unauthorized(res, 'authentication required');
    }
    record.authorized = true;
    const { token, issuedAt } = issue(creds?.user, scopes);
    const body: Record<string, unknown> = { token, access_token: token, expires_in: opts.expiresInSeconds, issued_at: issuedAt };
    if (creds && url.searchParams.get('offline_token') === 'true') body.refresh_token = newRefreshToken(creds.user);
    json(res, 200, body);
  };

  const handlePost = async (req: IncomingMessage, res: ServerResponse) => {
    const form = new URLSearchParams(await readBody(req));
    const grantType = form.get('grant_type') ?? undefined;
    const scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
    const record: TokenRequestRecord = { method: 'POST', scopes, authorized: false };
    if (grantType !== undefined) record.grantType = grantType;
    requests.push(record);
    if (!/^application\/x-www-form-urlencoded/i.test(req.headers['content-type'] ?? '')) {
      return json(res, 400, { error: 'invalid_request', error_description: 'expected application/x-www-form-urlencoded' });
    }
    if (!form.get('client_id')) return json(res, 400, { error: 'invalid_request', error_description: 'client_id is required' });
    const service = form.get('service');
    if (service !== null && service !== opts.service) return json(res, 400, { error: 'invalid_request', error_description: `unknown service ${service}` });
    let account: string;
    if (grantType === 'password') {
      const creds = { user: form.get('username') ?? '', pass: form.get('password') ?? '' };
      record.account = creds.user;
      if (!validUser(creds)) return json(res, 401, { error: 'invalid_grant', error_description: 'invalid username or password' });
      account = creds.user;
    } else if (grantType === 'refresh_token') {
      const owner = refreshTokens.get(form.get('refresh_token') ?? '');
      if (owner === undefined) return json(res, 401, { error: 'invalid_grant', error_description: 'unknown refresh token' });
      record.account = owner;
      account = owner;
    } else {
      return json(res, 400, { error: 'unsupported_grant_type' });
    }
    record.authorized = true;
    const { token, issuedAt } = issue(account, scopes);
    const body: Record<string, unknown> = {
      access_token: token, token, scope: scopes.join(' '), expires_in: opts.expiresInSeconds, issued_at: issuedAt,
    };
    if (form.get('access_type') === 'offline') {
      body.refresh_token = grantType === 'refresh_token' ? form.get('refresh_token') : newRefreshToken(account);
    }
    json(res, 200, body);
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/token') return json(res, 404, { error: 'not found' });
    if (req.method === 'GET') return handleGet(req, res, url);
    if (req.method === 'POST') {
      if (!opts.oauthPost) {
        req.resume();
        return json(res, 404, { error: 'not found' });
      }
      return void handlePost(req, res).catch((e: unknown) => json(res, 500, { error: String(e) }));
    }
    res.writeHead(405, { allow: 'GET, POST' }).end();
  };

  const server: Server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createHttpServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  realm = `${url}/token`;
  return {
    url,
    realm,
    service: opts.service,
    requests,
    refreshTokens,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
