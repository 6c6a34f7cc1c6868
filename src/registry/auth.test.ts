import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startRegistry, type TestRegistry, type TokenRegistry } from '../testing/registry.js';
import { makeRandomImage, type TestImage } from '../testing/images.js';
import { installCredentialHelper } from '../testing/credential-helper.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { copyImage } from '../oci/copy.js';
import { isGantryError } from '../util/errors.js';
import { RegistryClient } from './client.js';
import { RegistryImageReader, RegistryImageWriter, checkPushPermission } from './image.js';
import { obtainIdentityToken } from './login.js';
import type { RegistryOptions } from './options.js';

const FAST = { backoff: { baseDelayMs: 5, maxDelayMs: 20 } };
const b64 = (s: string) => Buffer.from(s).toString('base64');

let tls: TestRegistry;
let tok: TokenRegistry;
let tokNoOauth: TokenRegistry;
let tokTls: TokenRegistry;
let image: TestImage;
const temps: TempDir[] = [];
const clients: RegistryClient[] = [];

before(async () => {
  [tls, tok, tokNoOauth, tokTls, image] = await Promise.all([
    startRegistry({ kind: 'tls-htpasswd' }),
    startRegistry({
      kind: 'token',
      users: { gantry: 'pw-gantry', reader: 'pw-reader' },
      access: { gantry: [{ repo: '*', actions: ['pull', 'push'] }], reader: [{ repo: '*', actions: ['pull'] }] },
      anonymousPull: true,
    }),
    startRegistry({ kind: 'token', oauthPost: false }),
    startRegistry({ kind: 'token', tls: true }),
    makeRandomImage({ layers: 2, layerBytes: 16 * 1024, seed: 3 }),
  ]);
});

after(async () => {
  for (const c of clients) await c.close();
  await Promise.all([tls?.stop(), tok?.stop(), tokNoOauth?.stop(), tokTls?.stop(), image?.cleanup()]);
  for (const t of temps) await t.cleanup();
});

async function dockerConfig(config: unknown): Promise<string> {
  const d = await tempDir('auth-config');
  temps.push(d);
  await writeFile(join(d.path, 'config.json'), JSON.stringify(config));
  return d.path;
}

async function clientWith(config: unknown, extra: RegistryOptions = {}): Promise<RegistryClient> {
  const dir = await dockerConfig(config);
  const c = new RegistryClient({ ...FAST, env: { DOCKER_CONFIG: dir, PATH: process.env.PATH }, ...extra });
  clients.push(c);
  return c;
}

async function pushAndPull(c: RegistryClient, registry: string, repo: string): Promise<void> {
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${registry}/${repo}`, client: c }), { tags: ['t'] });
  const raw = await new RegistryImageReader({ reference: `${registry}/${repo}:t`, client: c }).getManifest();
  assert.equal(raw.digest, image.manifest.digest);
}

test('Basic auth over TLS with the registry CA from caFiles: push and pull', async () => {
  const c = await clientWith({ auths: { [tls.host]: { auth: b64(`${tls.username}:${tls.password}`) } } }, { caFiles: { [tls.host]: [tls.caFile!] } });
  await pushAndPull(c, tls.host, 'basic/app');
});

test('Basic auth: a wrong password is UNAUTHORIZED naming the registry and where the credentials came from', async () => {
  const c = await clientWith({ auths: { [`https://${tls.host}`]: { username: tls.username, password: 'wrong' } } }, { caFiles: { [tls.host]: [tls.caFile!] } });
  await assert.rejects(
    new RegistryImageReader({ reference: `${tls.host}/basic/app:t`, client: c }).getManifest(),
    (e: unknown) =>
      isGantryError(e, 'UNAUTHORIZED') &&
      e.message.includes(tls.host) &&
      /401/.test(e.message) &&
      /config\.json/.test(e.hint ?? '') &&
      (e.hint ?? '').includes(`docker login ${tls.host}`),
  );
});

test('Basic auth: no credentials at all is UNAUTHORIZED saying none were found', async () => {
  const c = await clientWith({}, { caFiles: { [tls.host]: [tls.caFile!] } });
  await assert.rejects(new RegistryImageReader({ reference: `${tls.host}/basic/app:t`, client: c }).getManifest(), (e: unknown) => isGantryError(e, 'UNAUTHORIZED') && /no credentials were found/.test(e.hint ?? ''));
});

test('TLS: an untrusted certificate fails with a --registry-certificate hint; skipTlsVerify accepts it', async () => {
  const auths = { auths: { [tls.host]: { auth: b64(`${tls.username}:${tls.password}`) } } };
  const strict = await clientWith(auths);
  await assert.rejects(
    new RegistryImageReader({ reference: `${tls.host}/basic/app:t`, client: strict }).getManifest(),
    (e: unknown) => isGantryError(e, 'REGISTRY_UNREACHABLE') && e.message.includes(tls.host) && /--registry-certificate/.test(e.hint ?? ''),
  );
  const lax = await clientWith(auths, { skipTlsVerify: [tls.host] });
  assert.equal((await new RegistryImageReader({ reference: `${tls.host}/basic/app:t`, client: lax }).getManifest()).digest, image.manifest.digest);
});

test('token auth: GET with Basic credentials; one token per scope set serves every blob', async () => {
  const c = await clientWith({ auths: { [tok.host]: { auth: b64('gantry:pw-gantry') } } });
  const before = tok.tokenServer.requests.length;
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${tok.host}/get/app`, client: c }), { tags: ['t'] });
  const reqs = tok.tokenServer.requests.slice(before);
  assert.deepEqual(reqs, [{ method: 'GET', scopes: ['repository:get/app:pull,push'], account: 'gantry', authorized: true }]);
});

test('token auth over TLS: the registry CA also verifies its token server on another port', async () => {
  const c = await clientWith({ auths: { [tokTls.host]: { auth: b64(`${tokTls.username}:${tokTls.password}`) } } }, { caFiles: { [tokTls.host]: [tokTls.caFile!] } });
  await pushAndPull(c, tokTls.host, 'tls/app');
  assert.ok(new URL(tokTls.tokenServer.realm).protocol === 'https:');
  assert.ok(tokTls.tokenServer.requests.some((r) => r.method === 'GET' && r.authorized));
});

test('token auth: a cross-repo mount asks for pull on the source repository too', async () => {
  const c = await clientWith({ auths: { [tok.host]: { auth: b64('gantry:pw-gantry') } } });
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${tok.host}/mnt/src`, client: c }), { tags: ['t'] });
  const before = tok.tokenServer.requests.length;
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${tok.host}/mnt/dst`, client: c }), { tags: ['t'], mountFrom: { registry: tok.host, repository: 'mnt/src' } });
  const scopes = tok.tokenServer.requests.slice(before).map((r) => [...r.scopes].sort().join(' '));
  assert.ok(scopes.includes('repository:mnt/dst:pull,push repository:mnt/src:pull'), scopes.join(' | '));
});

test('OAuth2: login trades the password for a refresh token, which later pulls exchange with POST', async () => {
  const login = new RegistryClient({ ...FAST, env: {} });
  clients.push(login);
  const before = tok.tokenServer.requests.length;
  const refresh = await obtainIdentityToken(login, tok.host, { username: 'gantry', password: 'pw-gantry' });
  assert.ok(refresh);
  assert.equal(tok.tokenServer.refreshTokens.get(refresh), 'gantry');
  assert.deepEqual(tok.tokenServer.requests.slice(before).map((r) => [r.method, r.grantType, r.account, r.authorized]), [['POST', 'password', 'gantry', true]]);

  const c = await clientWith({ auths: { [tok.host]: { identitytoken: refresh } } });
  const mark = tok.tokenServer.requests.length;
  await pushAndPull(c, tok.host, 'oauth/app');
  const used = tok.tokenServer.requests.slice(mark);
  assert.ok(used.length >= 1);
  for (const r of used) assert.deepEqual([r.method, r.grantType, r.account, r.authorized], ['POST', 'refresh_token', 'gantry', true]);
});

test('OAuth2: a token server without POST (404) gets the GET exchange instead', async () => {
  const user = tokNoOauth.username!;
  const c = await clientWith({ auths: { [tokNoOauth.host]: { auth: b64(`${user}:${tokNoOauth.password}`), identitytoken: 'stale' } } });
  // The token server does not record the POSTs it refuses, so watch them leave the client.
  const sent: string[] = [];
  const send = c.sendWithRetry.bind(c);
  c.sendWithRetry = async (req, opts) => {
    const res = await send(req, opts);
    if (req.url.pathname === '/token') sent.push(`${req.method} ${res.status}`);
    return res;
  };
  await pushAndPull(c, tokNoOauth.host, 'fallback/app');
  assert.deepEqual(sent.slice(0, 2), ['POST 404', 'GET 200']);
  const methods = tokNoOauth.tokenServer.requests.map((r) => `${r.method}:${r.account}:${r.authorized}`);
  assert.ok(methods.includes(`GET:${user}:true`), methods.join(' '));
});

test('registrytoken from config.json is sent as the Bearer token without asking the token server', async () => {
  const realm = new URL(tok.tokenServer.realm);
  realm.searchParams.set('service', tok.tokenServer.service);
  realm.searchParams.append('scope', 'repository:get/app:pull');
  const res = await fetch(realm, { headers: { authorization: `Basic ${b64('gantry:pw-gantry')}` } });
  const { token } = (await res.json()) as { token: string };
  const c = await clientWith({ auths: { [tok.host]: { registrytoken: token } } });
  const before = tok.tokenServer.requests.length;
  assert.equal((await new RegistryImageReader({ reference: `${tok.host}/get/app:t`, client: c }).getManifest()).digest, image.manifest.digest);
  assert.equal(tok.tokenServer.requests.length, before);
});

test('anonymous pull on a token registry that allows it; anonymous push is UNAUTHORIZED', async () => {
  const c = await clientWith({});
  const before = tok.tokenServer.requests.length;
  assert.equal((await new RegistryImageReader({ reference: `${tok.host}/get/app:t`, client: c }).getManifest()).digest, image.manifest.digest);
  const reqs = tok.tokenServer.requests.slice(before);
  assert.deepEqual(reqs[0], { method: 'GET', scopes: ['repository:get/app:pull'], authorized: true });
  await assert.rejects(
    copyImage(image, undefined, new RegistryImageWriter({ reference: `${tok.host}/anon/app`, client: c }), { tags: ['t'] }),
    (e: unknown) => isGantryError(e, 'UNAUTHORIZED') && /no credentials were found/.test(e.hint ?? ''),
  );
});

test('credential helper from credHelpers supplies the credentials (asked once)', async () => {
  const d = await tempDir('helper');
  temps.push(d);
  const helper = await installCredentialHelper(d.path, 'gantrytest', { [tok.host]: { Username: 'gantry', Secret: 'pw-gantry' } });
  const dir = await dockerConfig({ credHelpers: { [tok.host]: 'gantrytest' }, auths: { [tok.host]: { auth: b64('reader:pw-reader') } } });
  const c = new RegistryClient({ ...FAST, env: { DOCKER_CONFIG: dir, PATH: `${helper.binDir}:${process.env.PATH}` } });
  clients.push(c);
  await pushAndPull(c, tok.host, 'helper/app');
  assert.deepEqual(helper.calls(), [`get ${tok.host}`]);
});

test('checkPushPermission: a pull-only account is refused before any build work', async () => {
  const readerDir = await dockerConfig({ auths: { [tok.host]: { auth: b64('reader:pw-reader') } } });
  await assert.rejects(
    checkPushPermission(`${tok.host}/perm/app:1`, { ...FAST, env: { DOCKER_CONFIG: readerDir } }),
    (e: unknown) => isGantryError(e, 'DENIED') && e.message.includes(`checking push permission for ${tok.host}/perm/app`) && /lack permission/.test(e.hint ?? ''),
  );
  const writerDir = await dockerConfig({ auths: { [tok.host]: { auth: b64('gantry:pw-gantry') } } });
  await checkPushPermission(`${tok.host}/perm/app:1`, { ...FAST, env: { DOCKER_CONFIG: writerDir } });
});

test('checkPushPermission on a shared client costs one push token, which the push then reuses', async () => {
  const c = await clientWith({ auths: { [tok.host]: { auth: b64('gantry:pw-gantry') } } });
  const from = tok.tokenServer.requests.length;
  await checkPushPermission(`${tok.host}/perm/shared:1`, {}, c);
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${tok.host}/perm/shared`, client: c }), { tags: ['t'] });
  // The cancelled upload session would want a `delete` token: not worth one (nor losing the push token).
  assert.deepEqual(
    tok.tokenServer.requests.slice(from).map((r) => r.scopes.join(' ')),
    ['repository:perm/shared:pull,push'],
  );
});

test('token cache: a token is reused until shortly before it expires, then fetched again', async () => {
  const short = await startRegistry({ kind: 'token', expiresInSeconds: 2 });
  try {
    const c = await clientWith({ auths: { [short.host]: { auth: b64(`${short.username}:${short.password}`) } } });
    await copyImage(image, undefined, new RegistryImageWriter({ reference: `${short.host}/ttl/app`, client: c }), { tags: ['t'] });
    const reader = new RegistryImageReader({ reference: `${short.host}/ttl/app:t`, client: c });
    const count = () => short.tokenServer.requests.filter((r) => r.scopes.includes('repository:ttl/app:pull')).length;
    await reader.getManifest();
    await reader.getManifest();
    assert.equal(count(), 1);
    await new Promise((resolve) => setTimeout(resolve, 1800));
    await reader.getManifest();
    assert.equal(count(), 2);
  } finally {
    await short.stop();
  }
});
