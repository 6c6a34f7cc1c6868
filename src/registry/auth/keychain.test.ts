import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../testing/tmp.js';
import { installCredentialHelper } from '../../testing/credential-helper.js';
import { isGantryError } from '../../util/errors.js';
import { silentLogger } from '../../util/logger.js';
import { configKeyToRegistry, credentialsFromEntry, lookupByRegistry } from './docker-config.js';
import { DockerKeychain } from './keychain.js';

const dirs: TempDir[] = [];
after(async () => {
  for (const d of dirs) await d.cleanup();
});

async function configDir(config: unknown): Promise<string> {
  const d = await tempDir('docker-config');
  dirs.push(d);
  await writeFile(join(d.path, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return d.path;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('configKeyToRegistry reduces URL-shaped and Hub keys to registry names', () => {
  const cases: Array<[string, string]> = [
    ['https://index.docker.io/v1/', 'docker.io'],
    ['index.docker.io', 'docker.io'],
    ['docker.io', 'docker.io'],
    ['registry-1.docker.io', 'docker.io'],
    ['https://ghcr.io', 'ghcr.io'],
    ['http://127.0.0.1:5000/v2/', '127.0.0.1:5000'],
    ['Registry.Example.com:443', 'registry.example.com:443'],
  ];
  for (const [key, want] of cases) assert.equal(configKeyToRegistry(key), want, key);
});

test('lookupByRegistry prefers exact keys over normalised ones', () => {
  const map = { 'https://ghcr.io/v1/': 1, 'ghcr.io': 2, 'https://index.docker.io/v1/': 3, 'http://localhost:5000': 4 };
  assert.deepEqual(lookupByRegistry(map, 'ghcr.io'), { key: 'ghcr.io', value: 2 });
  assert.deepEqual(lookupByRegistry(map, 'docker.io'), { key: 'https://index.docker.io/v1/', value: 3 });
  assert.deepEqual(lookupByRegistry(map, 'index.docker.io'), { key: 'https://index.docker.io/v1/', value: 3 });
  assert.deepEqual(lookupByRegistry(map, 'localhost:5000'), { key: 'http://localhost:5000', value: 4 });
  assert.equal(lookupByRegistry(map, 'quay.io'), undefined);
});

test('credentialsFromEntry decodes auth and keeps tokens', () => {
  assert.deepEqual(credentialsFromEntry({ auth: b64('user:pa:ss') }, 's'), { source: 's', username: 'user', password: 'pa:ss' });
  assert.deepEqual(credentialsFromEntry({ username: 'u', password: 'p' }, 's'), { source: 's', username: 'u', password: 'p' });
  assert.deepEqual(credentialsFromEntry({ identitytoken: 'rt' }, 's'), { source: 's', identityToken: 'rt' });
  assert.deepEqual(credentialsFromEntry({ registrytoken: 'bt' }, 's'), { source: 's', registryToken: 'bt' });
  assert.throws(() => credentialsFromEntry({ auth: b64('nocolon') }, 's'), (e: unknown) => isGantryError(e, 'CREDENTIALS'));
});

test('DockerKeychain reads auths from DOCKER_CONFIG, Hub under its v1 URL key', async () => {
  const dir = await configDir({
    auths: {
      'https://index.docker.io/v1/': { auth: b64('hubuser:hubpass') },
      'https://registry.example.com:5443/v2/': { auth: b64('ex:pw') },
      'ghcr.io': { username: 'octo', password: 'ghp_x' },
      'tok.example.com': { identitytoken: 'refresh-me' },
    },
  });
  const kc = new DockerKeychain({ env: { DOCKER_CONFIG: dir }, dockerConfigDir: undefined, logger: silentLogger });
  const cases: Array<[string, Record<string, string | undefined>]> = [
    ['docker.io', { username: 'hubuser', password: 'hubpass' }],
    ['index.docker.io', { username: 'hubuser', password: 'hubpass' }],
    ['registry.example.com:5443', { username: 'ex', password: 'pw' }],
    ['ghcr.io', { username: 'octo', password: 'ghp_x' }],
    ['tok.example.com', { identityToken: 'refresh-me' }],
    ['quay.io', {}],
  ];
  for (const [registry, want] of cases) {
    const c = await kc.resolve(registry);
    assert.deepEqual({ username: c.username, password: c.password, identityToken: c.identityToken }, { username: undefined, password: undefined, identityToken: undefined, ...want }, registry);
  }
  assert.match((await kc.resolve('ghcr.io')).source, /config\.json/);
  assert.equal((await kc.resolve('quay.io')).source, 'anonymous');
});

test('DockerKeychain: credHelpers beats credsStore beats auths; helper "not found" is anonymous', async () => {
  const work = await tempDir('helpers');
  dirs.push(work);
  const per = await installCredentialHelper(join(work.path, 'per'), 'per', { 'ghcr.io': { Username: 'from-per', Secret: 's1' } });
  const store = await installCredentialHelper(join(work.path, 'store'), 'store', {
    'https://index.docker.io/v1/': { Username: 'from-store', Secret: 's2' },
    'tok.example.com': { Username: '<token>', Secret: 'identity' },
  });
  const dir = await configDir({
    auths: { 'ghcr.io': { auth: b64('from-auths:x') }, 'quay.io': { auth: b64('from-auths:y') } },
    credHelpers: { 'ghcr.io': 'per' },
    credsStore: 'store',
  });
  const env = { DOCKER_CONFIG: dir, PATH: `${per.binDir}:${store.binDir}:${process.env.PATH}` };
  const kc = new DockerKeychain({ env, dockerConfigDir: undefined, logger: silentLogger });
  assert.deepEqual(await kc.resolve('ghcr.io'), { username: 'from-per', password: 's1', source: 'docker-credential-per' });
  assert.deepEqual(await kc.resolve('docker.io'), { username: 'from-store', password: 's2', source: 'docker-credential-store' });
  assert.deepEqual(await kc.resolve('tok.example.com'), { identityToken: 'identity', source: 'docker-credential-store' });
  assert.equal((await kc.resolve('quay.io')).source, 'anonymous');
  assert.deepEqual(per.calls(), ['get ghcr.io']);
  assert.deepEqual(store.calls().sort(), ['get https://index.docker.io/v1/', 'get quay.io', 'get tok.example.com']);
});

test('DockerKeychain: a missing helper binary is a CREDENTIALS error naming it', async () => {
  const dir = await configDir({ credHelpers: { 'ghcr.io': 'does-not-exist' } });
  const kc = new DockerKeychain({ env: { DOCKER_CONFIG: dir, PATH: '/nonexistent' }, dockerConfigDir: undefined, logger: silentLogger });
  await assert.rejects(kc.resolve('ghcr.io'), (e: unknown) => isGantryError(e, 'CREDENTIALS') && /docker-credential-does-not-exist/.test(e.message) && /install/.test(e.hint ?? ''));
});

test('DockerKeychain: no config file means anonymous; malformed JSON is an error; DOCKER_AUTH_CONFIG layers over', async () => {
  const empty = await tempDir('empty-config');
  dirs.push(empty);
  await mkdir(join(empty.path, 'sub'));
  const none = new DockerKeychain({ env: { DOCKER_CONFIG: join(empty.path, 'sub') }, dockerConfigDir: undefined, logger: silentLogger });
  assert.equal((await none.resolve('ghcr.io')).source, 'anonymous');
  const bad = await configDir('{"auths": ');
  const broken = new DockerKeychain({ env: { DOCKER_CONFIG: bad }, dockerConfigDir: undefined, logger: silentLogger });
  await assert.rejects(broken.resolve('ghcr.io'), (e: unknown) => isGantryError(e, 'CREDENTIALS') && /not valid JSON/.test(e.message));
  const envOnly = new DockerKeychain({
    env: { DOCKER_CONFIG: join(empty.path, 'sub'), DOCKER_AUTH_CONFIG: JSON.stringify({ auths: { 'ghcr.io': { auth: b64('ci:tok') } } }) },
    dockerConfigDir: undefined,
    logger: silentLogger,
  });
  assert.equal((await envOnly.resolve('ghcr.io')).username, 'ci');
  // explicit dockerConfigDir wins over the environment
  const dir = await configDir({ auths: { 'ghcr.io': { auth: b64('explicit:p') } } });
  const explicit = new DockerKeychain({ env: { DOCKER_CONFIG: bad }, dockerConfigDir: dir, logger: silentLogger });
  assert.equal((await explicit.resolve('ghcr.io')).username, 'explicit');
});
