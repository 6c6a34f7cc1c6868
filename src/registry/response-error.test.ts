import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errorFromParts, parseErrorBody, type ErrorContext } from './response-error.js';
import type { ErrorCode } from '../util/errors.js';

test('parseErrorBody reads distribution and OAuth2 error bodies', () => {
  assert.deepEqual(parseErrorBody('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}'), [
    { code: 'MANIFEST_UNKNOWN', message: 'manifest unknown', detail: { Tag: 'x' } },
  ]);
  assert.deepEqual(parseErrorBody('{"error":"invalid_grant","error_description":"bad refresh token"}'), [{ code: 'INVALID_GRANT', message: 'bad refresh token' }]);
  assert.deepEqual(parseErrorBody('<html>502</html>'), []);
});

test('errorFromParts maps status and registry codes to gantry codes with hints', () => {
  const base: ErrorContext = { what: 'pushing manifest to r/app', registry: 'registry.example.com', kind: 'manifest', credentialsSource: '/cfg/config.json (auths["registry.example.com"])', configPath: '/cfg/config.json' };
  const cases: Array<{ status: number; body: string; headers?: Record<string, string>; ctx?: Partial<ErrorContext>; code: ErrorCode; message: RegExp; hint?: RegExp }> = [
    {
      status: 401,
      body: '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
      code: 'UNAUTHORIZED',
      message: /registry\.example\.com answered 401 Unauthorized: UNAUTHORIZED: authentication required/,
      hint: /credentials from \/cfg\/config\.json .* were rejected.*docker login registry\.example\.com.*\/cfg\/config\.json/,
    },
    { status: 401, body: '', ctx: { credentialsSource: 'anonymous' }, code: 'UNAUTHORIZED', message: /401/, hint: /no credentials were found/ },
    {
      status: 403,
      body: '{"errors":[{"code":"DENIED","message":"permission_denied: write_package"}]}',
      ctx: { registry: 'ghcr.io' },
      code: 'DENIED',
      message: /write_package/,
      hint: /permissions: packages: write.*write:packages.*linked to the repository/,
    },
    { status: 403, body: '', code: 'DENIED', message: /403/, hint: /lack permission/ },
    {
      status: 401,
      body: '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
      headers: { 'www-authenticate': 'Bearer realm="https://t/token",service="s",scope="repository:r/app:pull,push",error="insufficient_scope"' },
      code: 'DENIED',
      message: /401/,
      hint: /lack permission/,
    },
    {
      status: 401,
      body: '',
      headers: { 'www-authenticate': 'Bearer realm="https://t/token",error="insufficient_scope"' },
      ctx: { credentialsSource: 'anonymous' },
      code: 'UNAUTHORIZED',
      message: /401/,
      hint: /no credentials were found/,
    },
    { status: 404, body: '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}', code: 'NOT_FOUND', message: /MANIFEST_UNKNOWN/, hint: /tag not found/ },
    { status: 404, body: '{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}', code: 'NOT_FOUND', message: /NAME_UNKNOWN/, hint: /repository not found/ },
    { status: 429, body: '{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}', ctx: { registry: 'docker.io' }, code: 'TOO_MANY_REQUESTS', message: /429/, hint: /rate limit/ },
    { status: 400, body: '{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}', code: 'MANIFEST_INVALID', message: /MANIFEST_BLOB_UNKNOWN/, hint: /push the blobs first/ },
    { status: 400, body: '{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}', ctx: { kind: 'upload' }, code: 'DIGEST_MISMATCH', message: /DIGEST_INVALID/ },
    { status: 416, body: 'the request body is too large', ctx: { registry: 'ghcr.io', kind: 'upload' }, code: 'REGISTRY_ERROR', message: /416/, hint: /4 MiB/ },
    { status: 502, body: '<html>bad gateway</html>', code: 'REGISTRY_ERROR', message: /502 Bad Gateway: <html>bad gateway/ },
  ];
  for (const c of cases) {
    const err = errorFromParts(c.status, c.headers ?? {}, c.body, { ...base, ...c.ctx });
    assert.equal(err.code, c.code, `${c.status} ${c.body}`);
    assert.match(err.message, c.message);
    assert.match(err.message, /^pushing manifest to r\/app: /);
    assert.equal(err.details.status, c.status);
    if (c.hint) assert.match(err.hint ?? '', c.hint, `${c.status} hint`);
  }
  const withCodes = errorFromParts(404, {}, '{"errors":[{"code":"BLOB_UNKNOWN"},{"code":"X"}]}', base);
  assert.deepEqual(withCodes.details.registryCodes, ['BLOB_UNKNOWN', 'X']);
});
