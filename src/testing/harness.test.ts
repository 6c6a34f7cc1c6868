import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run } from './exec.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { basicAuth, httpFetch } from './http.js';
import { makeBusyboxImage, makeRandomImage, writeOciLayout, type TestImage } from './images.js';
import { installCredentialHelper } from './credential-helper.js';
import { startRegistry, type TestRegistry, type TokenRegistry } from './registry.js';
import { skopeoInspectRaw, skopeoPush } from './skopeo.js';
import { tempDir } from './tmp.js';

const sha = (b: Buffer | string) => 'sha256:' + createHash('sha256').update(b).digest('hex');

async function getToken(reg: TokenRegistry, scopes: string[], creds?: { user: string; pass: string }, ca?: string) {
  const q = new URLSearchParams({ service: reg.tokenServer.service });
  for (const s of scopes) q.append('scope', s);
  const headers: Record<string, string> = creds ? { authorization: basicAuth(creds.user, creds.pass) } : {};
  return httpFetch(`${reg.tokenServer.realm}?${q}`, { headers, ...(ca ? { ca } : {}) });
}

function claimsOf(token: string): { sub: string; aud: string; access: Array<{ type: string; name: string; actions: string[] }> } {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
}

describe('plain registry', () => {
  let reg: TestRegistry;
  const images: TestImage[] = [];
  before(async () => {
    reg = await startRegistry({ kind: 'plain' });
  });
  after(async () => {
    await reg?.stop();
    for (const img of images) await img.cleanup();
  });

  it('answers GET /v2/ with 200 on 127.0.0.1', async () => {
    assert.match(reg.host, /^127\.0\.0\.1:\d+$/);
    assert.equal(reg.url, `http://${reg.host}`);
    const res = await httpFetch(`${reg.url}/v2/`);
    assert.equal(res.status, 200, reg.logs());
    assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
  });

  it('stores an OCI image pushed by skopeo byte for byte', async () => {
    const img = await makeRandomImage({ layers: 2, layerBytes: 256 * 1024, seed: 7 });
    images.push(img);
    await skopeoPush(img, reg, 'harness/oci:v1');
    const raw = await skopeoInspectRaw(reg, 'harness/oci:v1');
    assert.equal(sha(raw), img.manifest.digest);
    const repos = await readdir(join(reg.dataDir, 'docker', 'registry', 'v2', 'repositories', 'harness'));
    assert.deepEqual(repos, ['oci']);
  });

  it('stores a Docker schema2 image pushed by skopeo byte for byte', async () => {
    const img = await makeRandomImage({ layers: 1, layerBytes: 64 * 1024, seed: 8, mediaTypes: 'docker' });
    images.push(img);
    await skopeoPush(img, reg, 'harness/docker:v1');
    const res = await httpFetch(`${reg.url}/v2/harness/docker/manifests/v1`, { headers: { accept: img.manifest.mediaType } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(sha(res.body), img.manifest.digest);
  });

  it('stops and frees its port', async () => {
    const other = await startRegistry({ kind: 'plain' });
    await other.stop();
    await assert.rejects(httpFetch(`${other.url}/v2/`), /ECONNREFUSED/);
    await other.stop(); // idempotent
  });
});

describe('tls-htpasswd registry', () => {
  let reg: TestRegistry;
  let ca: string;
  before(async () => {
    reg = await startRegistry({ kind: 'tls-htpasswd', username: 'alice', password: 'wonder land' });
    ca = await readFile(reg.caFile!, 'utf8');
  });
  after(() => reg?.stop());

  it('challenges anonymous clients with Basic and accepts the configured credentials', async () => {
    assert.equal(reg.url, `https://${reg.host}`);
    assert.equal(reg.username, 'alice');
    const anon = await httpFetch(`${reg.url}/v2/`, { ca });
    assert.equal(anon.status, 401);
    assert.match(String(anon.headers['www-authenticate']), /^Basic realm="[^"]+"/);
    const ok = await httpFetch(`${reg.url}/v2/`, { ca, headers: { authorization: basicAuth('alice', 'wonder land') } });
    assert.equal(ok.status, 200, reg.logs());
    const bad = await httpFetch(`${reg.url}/v2/`, { ca, headers: { authorization: basicAuth('alice', 'nope') } });
    assert.equal(bad.status, 401);
  });

  it('serves a certificate that only the test CA vouches for', async () => {
    await assert.rejects(httpFetch(`${reg.url}/v2/`), /self[- ]signed|unable to verify|certificate/i);
    const viaLocalhost = await httpFetch(`https://localhost:${reg.host.split(':')[1]}/v2/`, { ca });
    assert.equal(viaLocalhost.status, 401);
  });

  it('accepts a skopeo push that trusts certDir and logs in', async () => {
    const img = await makeRandomImage({ layers: 1, layerBytes: 32 * 1024, seed: 9 });
    after(() => img.cleanup());
    await skopeoPush(img, reg, 'secure/app:1');
    assert.equal(sha(await skopeoInspectRaw(reg, 'secure/app:1')), img.manifest.digest);
    await assert.rejects(skopeoInspectRaw(reg, 'secure/app:1', { creds: false }), /unauthorized|authentication required/i);
  });
});

describe('token registry', () => {
  let reg: TokenRegistry;
  const user = { user: 'bob', pass: 'builder' };
  before(async () => {
    reg = await startRegistry({ kind: 'token', users: { bob: 'builder', carol: 'pw' }, access: { bob: [{ repo: '*', actions: ['*'] }], carol: [{ repo: 'team/*', actions: ['pull'] }] } });
  });
  after(() => reg?.stop());

  it('challenges with a Bearer realm and service pointing at the token server', async () => {
    const res = await httpFetch(`${reg.url}/v2/`);
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], `Bearer realm="${reg.tokenServer.realm}",service="${reg.tokenServer.service}"`);
    assert.equal(reg.username, 'bob');
    assert.equal(reg.password, 'builder');
  });

  it('accepts a token the token server issued for Basic credentials', async () => {
    const t = await getToken(reg, ['repository:app/web:pull,push'], user);
    assert.equal(t.status, 200, t.body.toString());
    const body = JSON.parse(t.body.toString()) as { token: string; access_token: string; expires_in: number; issued_at: string };
    assert.equal(body.token, body.access_token);
    assert.ok(body.expires_in >= 60);
    assert.ok(!Number.isNaN(Date.parse(body.issued_at)));
    assert.deepEqual(claimsOf(body.token).access, [{ type: 'repository', name: 'app/web', actions: ['pull', 'push'] }]);
    const auth = { authorization: `Bearer ${body.token}` };
    assert.equal((await httpFetch(`${reg.url}/v2/`, { headers: auth })).status, 200, reg.logs());
    const tags = await httpFetch(`${reg.url}/v2/app/web/tags/list`, { headers: auth });
    assert.equal(tags.status, 404, 'an authorized request for a missing repository is NAME_UNKNOWN');
    assert.match(tags.body.toString(), /NAME_UNKNOWN/);
    const other = await httpFetch(`${reg.url}/v2/app/other/tags/list`, { headers: auth });
    assert.equal(other.status, 401);
    assert.match(String(other.headers['www-authenticate']), /scope="repository:app\/other:pull"/);
    assert.deepEqual(reg.tokenServer.requests.at(-1), { method: 'GET', scopes: ['repository:app/web:pull,push'], account: 'bob', authorized: true });
  });

  it('grants only the intersection of requested and allowed actions', async () => {
    const t = await getToken(reg, ['repository:team/x:pull,push', 'repository:other:pull'], { user: 'carol', pass: 'pw' });
    assert.equal(t.status, 200);
    assert.deepEqual(claimsOf(JSON.parse(t.body.toString()).token).access, [
      { type: 'repository', name: 'team/x', actions: ['pull'] },
      { type: 'repository', name: 'other', actions: [] },
    ]);
  });

  it('parses scopes whose repository names contain host:port', async () => {
    const t = await getToken(reg, ['repository:127.0.0.1:5000/a/b:pull'], user);
    assert.deepEqual(claimsOf(JSON.parse(t.body.toString()).token).access, [{ type: 'repository', name: '127.0.0.1:5000/a/b', actions: ['pull'] }]);
  });

  it('refuses wrong passwords and anonymous requests', async () => {
    const bad = await getToken(reg, ['repository:app/web:pull'], { user: 'bob', pass: 'wrong' });
    assert.equal(bad.status, 401);
    const anon = await getToken(reg, ['repository:app/web:pull']);
    assert.equal(anon.status, 401);
    assert.deepEqual(reg.tokenServer.requests.slice(-2).map((r) => r.authorized), [false, false]);
  });

  it('issues and honours refresh tokens through the OAuth2 POST grants', async () => {
    const form = (f: Record<string, string>) =>
      httpFetch(reg.tokenServer.realm, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(f).toString() });
    const first = await form({ grant_type: 'password', username: 'bob', password: 'builder', service: reg.tokenServer.service, client_id: 'gantry', access_type: 'offline', scope: 'repository:app/web:pull' });
    assert.equal(first.status, 200, first.body.toString());
    const { refresh_token: refresh, access_token: access } = JSON.parse(first.body.toString()) as { refresh_token: string; access_token: string };
    assert.equal(reg.tokenServer.refreshTokens.get(refresh), 'bob');
    assert.equal((await httpFetch(`${reg.url}/v2/`, { headers: { authorization: `Bearer ${access}` } })).status, 200);

    const again = await form({ grant_type: 'refresh_token', refresh_token: refresh, service: reg.tokenServer.service, client_id: 'gantry', scope: 'repository:app/web:pull repository:app/api:push' });
    assert.equal(again.status, 200);
    const claims = claimsOf(JSON.parse(again.body.toString()).access_token);
    assert.equal(claims.sub, 'bob');
    assert.equal(claims.access.length, 2);
    assert.deepEqual(reg.tokenServer.requests.at(-1), { method: 'POST', scopes: ['repository:app/web:pull', 'repository:app/api:push'], grantType: 'refresh_token', account: 'bob', authorized: true });

    assert.equal((await form({ grant_type: 'refresh_token', refresh_token: 'bogus', client_id: 'gantry' })).status, 401);
    assert.equal((await form({ grant_type: 'password', username: 'bob', password: 'builder' })).status, 400, 'client_id is required');
  });

  it('lets skopeo push and read back through the token flow', async () => {
    const img = await makeRandomImage({ layers: 1, layerBytes: 16 * 1024, seed: 10 });
    after(() => img.cleanup());
    await skopeoPush(img, reg, 'app/web:1');
    assert.equal(sha(await skopeoInspectRaw(reg, 'app/web:1')), img.manifest.digest);
  });
});

describe('token registry over TLS with anonymous pull', () => {
  let reg: TokenRegistry;
  let ca: string;
  before(async () => {
    reg = await startRegistry({ kind: 'token', tls: true, anonymousPull: true, oauthPost: false });
    ca = await readFile(reg.caFile!, 'utf8');
  });
  after(() => reg?.stop());

  it('serves registry and token server over https trusted by caFile', async () => {
    assert.match(reg.url, /^https:/);
    assert.match(reg.tokenServer.realm, /^https:\/\/127\.0\.0\.1:\d+\/token$/);
    const res = await httpFetch(`${reg.url}/v2/`, { ca });
    assert.equal(res.status, 401);
    assert.match(String(res.headers['www-authenticate']), /^Bearer realm="https:/);
  });

  it('gives anonymous clients pull but never push', async () => {
    const img = await makeRandomImage({ layers: 1, layerBytes: 1024, seed: 11 });
    after(() => img.cleanup());
    await skopeoPush(img, reg, 'pub/img:1');
    const t = await getToken(reg, ['repository:pub/img:pull,push'], undefined, ca);
    assert.equal(t.status, 200);
    const token = JSON.parse(t.body.toString()).token as string;
    assert.deepEqual(claimsOf(token).access[0]!.actions, ['pull']);
    const m = await httpFetch(`${reg.url}/v2/pub/img/manifests/1`, { ca, headers: { authorization: `Bearer ${token}`, accept: img.manifest.mediaType } });
    assert.equal(m.status, 200);
    assert.equal(sha(m.body), img.manifest.digest);
    const up = await httpFetch(`${reg.url}/v2/pub/img/blobs/uploads/`, { method: 'POST', ca, headers: { authorization: `Bearer ${token}` } });
    assert.equal(up.status, 401);
  });

  it('answers POST with 404 when OAuth2 is switched off', async () => {
    const res = await httpFetch(reg.tokenServer.realm, { method: 'POST', ca, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=password' });
    assert.equal(res.status, 404);
  });
});

describe('token registry with expired tokens', () => {
  it('rejects tokens past exp plus the registry\'s 60 s leeway with invalid_token', async () => {
    const reg = await startRegistry({ kind: 'token', expiresInSeconds: -61 });
    after(() => reg.stop());
    const t = await getToken(reg, [], { user: reg.username!, pass: reg.password! });
    const res = await httpFetch(`${reg.url}/v2/`, { headers: { authorization: `Bearer ${JSON.parse(t.body.toString()).token}` } });
    assert.equal(res.status, 401);
    assert.match(String(res.headers['www-authenticate']), /error="invalid_token"/);
  });
});

/** GET that reports how many body bytes arrived before the connection failed. */
function fetchCounting(url: string): Promise<{ status: number; received: number; error?: string }> {
  return new Promise((resolve) => {
    let status = 0;
    let received = 0;
    const req = request(url, { agent: false }, (res) => {
      status = res.statusCode ?? 0;
      res.on('data', (c: Buffer) => (received += c.length));
      res.on('end', () => resolve({ status, received }));
      res.on('error', (e) => resolve({ status, received, error: e.message }));
    });
    req.on('error', (e) => resolve({ status, received, error: e.message }));
    req.end();
  });
}

describe('fault proxy', () => {
  let reg: TestRegistry;
  let proxy: FaultProxy;
  let img: TestImage;
  before(async () => {
    reg = await startRegistry({ kind: 'plain' });
    proxy = await startFaultProxy(reg);
    img = await makeRandomImage({ layers: 1, layerBytes: 200 * 1024, seed: 12 });
  });
  after(async () => {
    await proxy?.stop();
    await reg?.stop();
    await img?.cleanup();
  });

  it('forwards a whole push, uploads included, when no rule matches', async () => {
    // Works only if the registry's Location URLs point back at the proxy.
    await skopeoPush(img, { ...reg, host: proxy.host, url: proxy.url }, 'via/proxy:1');
    assert.ok(proxy.hits.some((h) => h.method === 'PUT' && h.path.includes('/blobs/uploads/')));
    assert.ok(proxy.hits.every((h) => h.rule === undefined));
    assert.equal(sha(await skopeoInspectRaw(reg, 'via/proxy:1')), img.manifest.digest);
  });

  it('answers 503 with Retry-After for a matched rule once, then forwards', async () => {
    proxy.rules.push({ match: { method: 'GET', path: /^\/v2\/$/ }, action: { kind: 'status', status: 503, headers: { 'Retry-After': '1' }, body: 'busy' } });
    const first = await httpFetch(`${proxy.url}/v2/`);
    assert.equal(first.status, 503);
    assert.equal(first.headers['retry-after'], '1');
    assert.equal(first.body.toString(), 'busy');
    const second = await httpFetch(`${proxy.url}/v2/`);
    assert.equal(second.status, 200);
    assert.deepEqual(proxy.hits.slice(-2), [{ method: 'GET', path: '/v2/', rule: proxy.rules.length - 1 }, { method: 'GET', path: '/v2/' }]);
  });

  it('resets the connection in the middle of a response body', async () => {
    const layer = img.layers[0]!;
    const url = `${proxy.url}/v2/via/proxy/blobs/${layer.digest}`;
    proxy.rules.push({ match: { path: /\/blobs\/sha256:/ }, times: 2, action: { kind: 'reset-response-after', bytes: 1000 } });
    for (let i = 0; i < 2; i++) {
      const cut = await fetchCounting(url);
      assert.equal(cut.status, 200);
      assert.ok(cut.error, 'the client sees a connection error');
      assert.ok(cut.received <= 1000, `received ${cut.received} bytes`);
    }
    const whole = await fetchCounting(url);
    assert.deepEqual(whole, { status: 200, received: layer.size });
  });

  it('resets a request before it reaches the registry', async () => {
    proxy.rules.push({ match: { method: 'POST', path: /\/blobs\/uploads\/$/ }, action: { kind: 'reset-request' } });
    await assert.rejects(httpFetch(`${proxy.url}/v2/via/proxy/blobs/uploads/`, { method: 'POST', body: Buffer.alloc(64 * 1024) }), /ECONNRESET|socket hang up/);
    const next = await httpFetch(`${proxy.url}/v2/via/proxy/blobs/uploads/`, { method: 'POST' });
    assert.equal(next.status, 202);
    assert.match(String(next.headers.location), new RegExp(`^http://${proxy.host.replace(/\./g, '\\.')}/v2/via/proxy/blobs/uploads/`));
  });

  it('delays a matched request', async () => {
    proxy.rules.push({ match: { path: /^\/v2\/$/ }, action: { kind: 'delay', ms: 300 } });
    const t0 = Date.now();
    assert.equal((await httpFetch(`${proxy.url}/v2/`)).status, 200);
    assert.ok(Date.now() - t0 >= 290);
  });
});

describe('fault proxy in front of a TLS registry', () => {
  it('speaks plain HTTP to clients and TLS to the registry', async () => {
    const reg = await startRegistry({ kind: 'tls-htpasswd' });
    after(() => reg.stop());
    const proxy = await startFaultProxy(reg);
    after(() => proxy.stop());
    assert.equal((await httpFetch(`${proxy.url}/v2/`)).status, 401);
    const ok = await httpFetch(`${proxy.url}/v2/`, { headers: { authorization: basicAuth(reg.username!, reg.password!) } });
    assert.equal(ok.status, 200, reg.logs());
    const up = await httpFetch(`${proxy.url}/v2/x/blobs/uploads/`, { method: 'POST', headers: { authorization: basicAuth(reg.username!, reg.password!) } });
    assert.equal(up.status, 202);
    assert.ok(String(up.headers.location).startsWith(`${proxy.url}/v2/x/blobs/uploads/`), String(up.headers.location));
  });
});

describe('test images', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('makeRandomImage is reproducible for a seed and differs across seeds', async () => {
    const a = await makeRandomImage({ layers: 2, layerBytes: 100_000, seed: 1 });
    const b = await makeRandomImage({ layers: 2, layerBytes: 100_000, seed: 1 });
    const c = await makeRandomImage({ layers: 2, layerBytes: 100_000, seed: 2 });
    cleanups.push(a.cleanup, b.cleanup, c.cleanup);
    assert.equal(a.manifest.digest, b.manifest.digest);
    assert.notEqual(a.manifest.digest, c.manifest.digest);
    assert.equal(a.layers.length, 2);
    assert.ok(a.layers.every((l) => l.size > 100_000 && l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip'));
    const manifest = JSON.parse(a.manifest.bytes.toString());
    assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(manifest.config.digest, sha(a.config));
    assert.deepEqual(JSON.parse(a.config.toString()).rootfs.diff_ids, a.diffIds);
  });

  it('serves blobs verified against their descriptors', async () => {
    const img = await makeRandomImage({ layers: 1, layerBytes: 50_000, seed: 3 });
    cleanups.push(img.cleanup);
    const layer = img.layers[0]!;
    const chunks: Buffer[] = [];
    for await (const c of await img.openBlob(layer)) chunks.push(c as Buffer);
    assert.equal(sha(Buffer.concat(chunks)), layer.digest);
    assert.equal((await img.getManifest('latest')).digest, img.manifest.digest);
    await assert.rejects(img.getManifest('sha256:' + '0'.repeat(64)), /not found/);

    const bytes = await readFile(img.blobPath(layer.digest));
    bytes[bytes.length - 100] ^= 0xff;
    await writeFile(img.blobPath(layer.digest), bytes);
    await assert.rejects(async () => {
      for await (const _ of await img.openBlob(layer)) void _;
    }, /sha256/);
  });

  it('makeBusyboxImage holds a runnable busybox rootfs with a shell', async () => {
    const img = await makeBusyboxImage();
    const tmp = await tempDir('busybox-rootfs');
    cleanups.push(img.cleanup, tmp.cleanup);
    const cfg = JSON.parse(img.config.toString());
    assert.deepEqual(cfg.config.Cmd, ['sh']);
    assert.equal(cfg.os, 'linux');
    await run('tar', ['-xzf', img.blobPath(img.layers[0]!.digest), '-C', tmp.path], { check: true });
    const passwd = await readFile(join(tmp.path, 'etc', 'passwd'), 'utf8');
    assert.match(passwd, /^root:x:0:0:/);
    const out = await run(join(tmp.path, 'bin', 'sh'), ['-c', 'echo hello from $0; ls /'], { check: true });
    assert.match(out.stdout, /^hello from/);
  });

  it('writeOciLayout produces a layout skopeo can read', async () => {
    const img = await makeBusyboxImage();
    const tmp = await tempDir('layout');
    cleanups.push(img.cleanup, tmp.cleanup);
    await writeOciLayout(img, tmp.path, 'one');
    await writeOciLayout(img, tmp.path, 'two');
    const index = JSON.parse(await readFile(join(tmp.path, 'index.json'), 'utf8'));
    assert.equal(index.manifests.length, 2);
    const r = await run('skopeo', ['inspect', '--raw', `oci:${tmp.path}:two`], { check: true });
    assert.equal(sha(r.stdout), img.manifest.digest);
  });
});

describe('fake credential helper', () => {
  it('answers get/store/list/erase as docker-credential-helpers do and logs every call', async () => {
    const tmp = await tempDir('cred-helper');
    after(() => tmp.cleanup());
    const helper = await installCredentialHelper(tmp.path, 'fake', { 'reg.example:5000': { Username: 'u', Secret: 's' } });
    const bin = join(helper.binDir, 'docker-credential-fake');
    const got = await run(bin, ['get'], { input: 'reg.example:5000\n', check: true });
    assert.deepEqual(JSON.parse(got.stdout), { ServerURL: 'reg.example:5000', Username: 'u', Secret: 's' });
    const missing = await run(bin, ['get'], { input: 'other.example' });
    assert.equal(missing.code, 1);
    assert.match(missing.stdout, /credentials not found in native keychain/);
    await run(bin, ['store'], { input: JSON.stringify({ ServerURL: 'new.example', Username: '<token>', Secret: 'tok' }), check: true });
    assert.deepEqual(JSON.parse((await run(bin, ['list'], { check: true })).stdout), { 'reg.example:5000': 'u', 'new.example': '<token>' });
    await run(bin, ['erase'], { input: 'new.example', check: true });
    const viaPath = await run('docker-credential-fake', ['get'], { input: 'reg.example:5000', env: { ...process.env, PATH: `${helper.binDir}:${process.env.PATH}` } });
    assert.equal(viaPath.code, 0);
    assert.deepEqual(helper.calls(), ['get reg.example:5000', 'get other.example', 'store new.example', 'list', 'erase new.example', 'get reg.example:5000']);
  });
});
