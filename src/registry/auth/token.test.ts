import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { isGantryError } from '../../util/errors.js';
import type { HttpRequest, HttpResponse } from '../transport.js';
import { DEFAULT_TOKEN_LIFETIME_S, fetchToken, type TokenRequest } from './token.js';

// These cases pin the request shapes of the token protocol at the function boundary; the same
// flows run against a real registry + token server in ../auth.test.ts.
function responder(answers: Array<{ status: number; body: unknown }>) {
  const seen: Array<{ method: string; url: URL; headers: Record<string, string>; body: string }> = [];
  const send = async (req: HttpRequest): Promise<HttpResponse> => {
    const raw = req.body ? await req.body() : undefined;
    seen.push({ method: req.method, url: req.url, headers: req.headers ?? {}, body: raw ? String(raw) : '' });
    const a = answers.shift() ?? { status: 500, body: {} };
    const body = Readable.from([Buffer.from(JSON.stringify(a.body))]) as unknown as HttpResponse['body'];
    (body as unknown as { dump: () => Promise<void> }).dump = async () => {};
    return { status: a.status, headers: {}, body, url: req.url };
  };
  return { send, seen };
}

const base: Omit<TokenRequest, 'credentials'> = {
  registry: 'registry.example.com',
  challenge: { scheme: 'bearer', params: { realm: 'https://auth.example.com/token', service: 'registry.example.com' } },
  scopes: ['repository:a/b:pull,push', 'repository:c/d:pull'],
  clientId: 'gantry',
  allowHttpRealm: false,
};

test('GET exchange: service, one scope parameter per scope, account and Basic credentials', async () => {
  const { send, seen } = responder([{ status: 200, body: { token: 't1', expires_in: 300 } }]);
  const before = Date.now();
  const tok = await fetchToken(send, { ...base, credentials: { username: 'u', password: 'p', source: 'x' } });
  assert.equal(tok.token, 't1');
  assert.ok(tok.expiresAt >= before + 300_000 && tok.expiresAt <= Date.now() + 300_000);
  assert.equal(seen[0]!.method, 'GET');
  assert.equal(seen[0]!.url.searchParams.get('service'), 'registry.example.com');
  assert.deepEqual(seen[0]!.url.searchParams.getAll('scope'), base.scopes);
  assert.equal(seen[0]!.url.searchParams.get('account'), 'u');
  assert.equal(seen[0]!.headers.authorization, `Basic ${Buffer.from('u:p').toString('base64')}`);
});

test('token responses: access_token is accepted and a missing expires_in means 60 s', async () => {
  const { send } = responder([{ status: 200, body: { access_token: 'a1' } }]);
  const before = Date.now();
  const tok = await fetchToken(send, { ...base, credentials: { source: 'anonymous' } });
  assert.equal(tok.token, 'a1');
  assert.ok(tok.expiresAt >= before + DEFAULT_TOKEN_LIFETIME_S * 1000 && tok.expiresAt <= Date.now() + DEFAULT_TOKEN_LIFETIME_S * 1000);
});

test('identity token: OAuth2 POST with grant_type=refresh_token; 404 or 405 falls back to GET', async () => {
  for (const status of [404, 405]) {
    const { send, seen } = responder([{ status, body: {} }, { status: 200, body: { token: 'g' } }]);
    const tok = await fetchToken(send, { ...base, credentials: { identityToken: 'rt', username: 'u', password: 'p', source: 'x' } });
    assert.equal(tok.token, 'g');
    assert.deepEqual(seen.map((s) => s.method), ['POST', 'GET']);
    const form = new URLSearchParams(seen[0]!.body);
    assert.deepEqual(Object.fromEntries(form), { client_id: 'gantry', service: 'registry.example.com', scope: base.scopes.join(' '), grant_type: 'refresh_token', refresh_token: 'rt' });
    assert.equal(seen[0]!.headers['content-type'], 'application/x-www-form-urlencoded');
  }
  const { send, seen } = responder([{ status: 401, body: { error: 'invalid_grant', error_description: 'unknown refresh token' } }]);
  await assert.rejects(fetchToken(send, { ...base, credentials: { identityToken: 'rt', source: 'cfg' } }), (e: unknown) => isGantryError(e, 'UNAUTHORIZED') && /unknown refresh token/.test(e.message));
  assert.equal(seen.length, 1, 'a rejected refresh token is not retried with GET');
});

test('realms: plain HTTP refused for TLS registries (except loopback); missing realm or token is an error', async () => {
  const { send } = responder([]);
  const http = { ...base, challenge: { scheme: 'bearer', params: { realm: 'http://auth.example.com/token' } }, credentials: { source: 'x' } };
  await assert.rejects(fetchToken(send, http), /plain-HTTP token realm/);
  const ok = responder([{ status: 200, body: { token: 'x' } }]);
  assert.equal((await fetchToken(ok.send, { ...http, allowHttpRealm: true })).token, 'x');
  const loop = responder([{ status: 200, body: { token: 'y' } }]);
  assert.equal((await fetchToken(loop.send, { ...http, challenge: { scheme: 'bearer', params: { realm: 'http://127.0.0.1:9/token' } } })).token, 'y');
  await assert.rejects(fetchToken(send, { ...base, challenge: { scheme: 'bearer', params: {} }, credentials: { source: 'x' } }), /without a realm/);
  const empty = responder([{ status: 200, body: { expires_in: 10 } }]);
  await assert.rejects(fetchToken(empty.send, { ...base, credentials: { source: 'x' } }), /has no token/);
});

test('credentials only go to token realms in the registry\'s domain', async () => {
  const cases: Array<{ registry: string; realm: string; ok: boolean }> = [
    { registry: 'docker.io', realm: 'https://auth.docker.io/token', ok: true },
    { registry: 'ghcr.io', realm: 'https://ghcr.io/token', ok: true },
    { registry: 'registry.gitlab.example.com', realm: 'https://gitlab.example.com/jwt/auth', ok: true },
    { registry: '127.0.0.1:5000', realm: 'http://127.0.0.1:5001/token', ok: true },
    { registry: 'registry.example.com', realm: 'https://collector.evil.test/token', ok: false },
    { registry: 'registry.example.com', realm: 'https://169.254.169.254/token', ok: false },
  ];
  for (const c of cases) {
    const { send } = responder([{ status: 200, body: { token: 't' } }]);
    const req = { ...base, registry: c.registry, challenge: { scheme: 'bearer', params: { realm: c.realm } }, credentials: { username: 'u', password: 'p', source: 'x' } };
    if (c.ok) assert.equal((await fetchToken(send, req)).token, 't', c.realm);
    else await assert.rejects(fetchToken(send, req), /another domain/, c.realm);
  }
  // Anonymous token requests carry nothing to steal.
  const { send } = responder([{ status: 200, body: { token: 'anon' } }]);
  assert.equal((await fetchToken(send, { ...base, challenge: { scheme: 'bearer', params: { realm: 'https://elsewhere.test/t' } }, credentials: { source: 'anonymous' } })).token, 'anon');
});
