import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { startRegistry, type TestRegistry, type TokenRegistry } from '../testing/registry.js';
import { startFaultProxy, type FaultProxy } from '../testing/fault-proxy.js';
import { freePort } from '../testing/ports.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { writeLayer } from '../archive/index.js';
import { OciLayoutReader } from '../oci/layout.js';
import type { Descriptor } from '../oci/types.js';
import type { RegistryOptions } from '../registry/options.js';
import { cacheKey } from './keys.js';
import { defaultCacheRepo, ociLayoutCacheStore, registryCacheStore } from './registry-store.js';
import { parseCacheSpec } from './spec.js';
import type { CacheEntry, CacheStore } from './store.js';

const FAST: RegistryOptions = { backoff: { baseDelayMs: 5, maxDelayMs: 20 }, env: { HOME: '/nonexistent' }, retries: 1 };
const HOUR = 3_600_000;

let registry: TestRegistry;
let token: TokenRegistry;
let proxy: FaultProxy;
let tmp: TempDir;
const stores: CacheStore[] = [];

before(async () => {
  [registry, token, tmp] = await Promise.all([startRegistry({ kind: 'plain' }), startRegistry({ kind: 'token' }), tempDir('cache-registry')]);
  proxy = await startFaultProxy(registry);
});

after(async () => {
  for (const s of stores) await s.close?.();
  await proxy?.stop();
  await Promise.all([registry?.stop(), token?.stop()]);
  await tmp?.cleanup();
});

function track<T extends CacheStore>(s: T): T {
  stores.push(s);
  return s;
}

interface TestLayer {
  desc: Descriptor;
  diffId: string;
  file: string;
}

let layerSeq = 0;
async function makeLayer(content: string): Promise<TestLayer> {
  const file = join(tmp.path, `layer-${layerSeq++}.tar.gz`);
  const body = Buffer.from(content);
  const r = await writeLayer([{ header: { name: 'data.txt', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: body.length }, body }], file, { compression: 'gzip', parallel: false });
  return { desc: { mediaType: r.mediaType, digest: r.digest, size: r.size }, diffId: r.diffId, file };
}

function entryOf(l: TestLayer, createdBy: string, extra: Partial<CacheEntry> = {}): CacheEntry {
  return { layer: l.desc, diffId: l.diffId, history: { created_by: createdBy, comment: 'buildkit.dockerfile.v0' }, ...extra };
}

function keyFor(name: string): string {
  return cacheKey({ parent: 'scratch', platform: 'linux/amd64', instruction: { kind: 'run', args: [name], shell: true } });
}

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test('registry cache: put, then get costs one manifest GET and no blob GET; the layer streams only on open()', async () => {
  const store = track(registryCacheStore(`${proxy.host}/app/cache`, { registry: FAST }));
  const layer = await makeLayer('hello from a cached RUN');
  const key = keyFor('echo hello');
  const put = await store.put(key, entryOf(layer, 'RUN echo hello', { configExtras: { env: ['A=1'] } }), async () => createReadStream(layer.file));
  assert.deepEqual(put, { key, ok: true });
  assert.deepEqual(await store.flush(), [put]);

  const start = proxy.hits.length;
  const hit = await store.get(key);
  const lookup = proxy.hits.slice(start).map((h) => `${h.method} ${h.path}`);
  assert.deepEqual(lookup, [`GET /v2/app/cache/manifests/${key.slice(7)}`]);
  assert.ok(hit);
  assert.deepEqual(hit.layer, layer.desc);
  assert.equal(hit.diffId, layer.diffId);
  assert.equal(hit.history.created_by, 'RUN echo hello');
  assert.deepEqual(hit.configExtras, { env: ['A=1'] });
  assert.ok(Date.now() - hit.createdAt.getTime() < 60_000);
  assert.deepEqual(hit.source, { registry: proxy.host, repository: 'app/cache' });

  const before = proxy.hits.length;
  const bytes = await readAll(await hit.open());
  assert.deepEqual(bytes, await readAll(createReadStream(layer.file)));
  const blobGets = proxy.hits.slice(before).filter((h) => h.method === 'GET' && h.path.includes('/blobs/'));
  assert.equal(blobGets.length, 1);
});

test('registry cache: an unknown key is a miss', async () => {
  const store = track(registryCacheStore(`${registry.host}/app/cache`, { registry: FAST }));
  assert.equal(await store.get(keyFor('never stored')), undefined);
});

test('registry cache: an entry older than the TTL is a miss, a younger one a hit', async () => {
  const writer = track(registryCacheStore(`${registry.host}/ttl/cache`, { registry: FAST }));
  const layer = await makeLayer('ttl');
  const key = keyFor('ttl');
  const created = new Date(Date.now() - 3 * HOUR);
  assert.equal((await writer.put(key, entryOf(layer, 'RUN ttl', { createdAt: created }), async () => createReadStream(layer.file))).ok, true);
  const short = track(registryCacheStore(`${registry.host}/ttl/cache`, { registry: FAST, ttlMs: 2 * HOUR }));
  const long = track(registryCacheStore(`${registry.host}/ttl/cache`, { registry: FAST, ttlMs: 4 * HOUR }));
  assert.equal(await short.get(key), undefined);
  const hit = await long.get(key);
  assert.equal(hit?.createdAt.toISOString(), created.toISOString());
});

test('registry cache: a registry that is down gives warnings, never exceptions, and is tried only once', async () => {
  // Accepts and drops every connection: a registry host that is up but not answering.
  let connections = 0;
  const server = createServer((sock) => {
    connections++;
    sock.destroy();
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  try {
    const port = (server.address() as AddressInfo).port;
    const warnings: string[] = [];
    const logger = { log: (level: string, msg: string) => void (level === 'warn' && warnings.push(msg)) };
    const store = track(registryCacheStore(`127.0.0.1:${port}/app/cache`, { registry: { ...FAST, retries: 0 }, logger }));
    const layer = await makeLayer('nobody home');
    const key = keyFor('down');
    const result = await store.put(key, entryOf(layer, 'RUN down'), async () => createReadStream(layer.file));
    assert.equal(result.ok, false);
    assert.ok(!result.ok && result.warning.includes(`127.0.0.1:${port}/app/cache`), !result.ok ? result.warning : '');
    assert.deepEqual(await store.flush(), [result]);
    assert.ok(connections > 0);
    assert.ok(warnings.some((w) => w.includes('not used for the rest of this build')), warnings.join('\n'));

    const tried = connections;
    assert.equal(await store.get(key), undefined);
    const again = await store.put(keyFor('down 2'), entryOf(layer, 'RUN down 2'), async () => createReadStream(layer.file));
    assert.equal(again.ok, false);
    assert.equal(connections, tried, 'no further connection attempts after the first failure');
  } finally {
    await new Promise<void>((res) => server.close(() => res()));
  }
});

test('registry cache: a lookup on a port nobody listens on is a miss', async () => {
  const port = await freePort();
  const store = track(registryCacheStore(`127.0.0.1:${port}/app/cache`, { registry: { ...FAST, retries: 0 } }));
  assert.equal(await store.get(keyFor('nobody')), undefined);
});

test('registry cache: a failing manifest PUT is a warning too', async () => {
  const store = track(registryCacheStore(`${proxy.host}/faulty/cache`, { registry: { ...FAST, retries: 0 } }));
  proxy.rules.push({ match: { method: 'PUT', path: /\/faulty\/cache\/manifests\// }, times: Infinity, action: { kind: 'status', status: 500 } });
  try {
    const layer = await makeLayer('manifest put fails');
    const r = await store.put(keyFor('faulty'), entryOf(layer, 'RUN faulty'), async () => createReadStream(layer.file));
    assert.equal(r.ok, false);
  } finally {
    proxy.rules.length = 0;
  }
});

test('registry cache: concurrent puts run with limited concurrency and flush waits for all of them', async () => {
  const store = track(registryCacheStore(`${registry.host}/many/cache`, { registry: FAST, concurrency: 2 }));
  const layers = await Promise.all(Array.from({ length: 6 }, (_, i) => makeLayer(`layer number ${i}\n`.repeat(1000 * (i + 1)))));
  let active = 0;
  let maxActive = 0;
  const results = layers.map((l, i) =>
    store.put(keyFor(`many ${i}`), entryOf(l, `RUN many ${i}`), async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      const s = createReadStream(l.file);
      s.once('close', () => active--);
      return s;
    }),
  );
  const flushed = await store.flush();
  assert.equal(flushed.length, 6);
  assert.ok(flushed.every((r) => r.ok));
  assert.deepEqual(flushed, await Promise.all(results));
  assert.ok(maxActive <= 2, `at most 2 uploads at once, saw ${maxActive}`);
  for (let i = 0; i < 6; i++) assert.equal((await store.get(keyFor(`many ${i}`)))?.layer.digest, layers[i]!.desc.digest);
});

test('registry cache: a layer already in another repository of the registry is mounted, not uploaded', async () => {
  const src = track(registryCacheStore(`${proxy.host}/mount/src`, { registry: FAST }));
  const layer = await makeLayer('mount me '.repeat(5000));
  assert.equal((await src.put(keyFor('mount src'), entryOf(layer, 'RUN src'), async () => createReadStream(layer.file))).ok, true);
  const store = track(registryCacheStore(`${proxy.host}/mount/cache`, { registry: FAST }));
  let opened = 0;
  const start = proxy.hits.length;
  const r = await store.put(keyFor('mount'), entryOf(layer, 'RUN mount', { mountFrom: { registry: proxy.host, repository: 'mount/src' } }), async () => {
    opened++;
    return createReadStream(layer.file);
  });
  assert.equal(r.ok, true);
  const hits = proxy.hits.slice(start).map((h) => `${h.method} ${h.path}`);
  assert.ok(hits.some((h) => h.startsWith('POST /v2/mount/cache/blobs/uploads/?mount=')), hits.join('\n'));
  assert.equal(opened, 0, 'the layer bytes were never read');
  assert.equal((await store.get(keyFor('mount')))?.layer.digest, layer.desc.digest);
});

test('registry cache: a token-auth registry works with credentials from docker config', async () => {
  const configDir = join(tmp.path, 'docker-config');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(configDir, { recursive: true });
  const auth = Buffer.from(`${token.username}:${token.password}`).toString('base64');
  await writeFile(join(configDir, 'config.json'), JSON.stringify({ auths: { [token.host]: { auth } } }));
  const store = track(registryCacheStore(`${token.host}/team/app/cache`, { registry: { ...FAST, dockerConfigDir: configDir } }));
  const layer = await makeLayer('token protected');
  const key = keyFor('token');
  assert.equal((await store.put(key, entryOf(layer, 'RUN token'), async () => createReadStream(layer.file))).ok, true);
  const hit = await store.get(key);
  assert.equal(hit?.diffId, layer.diffId);
  assert.deepEqual(await readAll(await hit!.open()), await readAll(createReadStream(layer.file)));

  const anonymous = track(registryCacheStore(`${token.host}/team/app/cache`, { registry: FAST }));
  assert.equal(await anonymous.get(key), undefined, 'without credentials the lookup is a miss, not an error');
});

test('OCI layout cache repo: concurrent puts land as tags in one layout; hits, misses and TTL', async () => {
  const dir = join(tmp.path, 'oci-cache');
  const now = new Date();
  const store = track(ociLayoutCacheStore(dir, { ttlMs: HOUR, now: () => now }));
  assert.equal(await store.get(keyFor('oci 0')), undefined, 'a layout that does not exist yet is a miss');
  const layers = await Promise.all([0, 1, 2].map((i) => makeLayer(`oci layer ${i}`)));
  const puts = layers.map((l, i) => store.put(keyFor(`oci ${i}`), entryOf(l, `RUN oci ${i}`, { createdAt: i === 2 ? new Date(now.getTime() - 2 * HOUR) : now }), async () => createReadStream(l.file)));
  assert.ok((await Promise.all(puts)).every((r) => r.ok));
  await store.flush();

  const reader = await OciLayoutReader.open(dir);
  const tags = reader.rootIndex.manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']).sort();
  assert.deepEqual(tags, [0, 1, 2].map((i) => keyFor(`oci ${i}`).slice(7)).sort());

  for (const i of [0, 1]) {
    const hit = await store.get(keyFor(`oci ${i}`));
    assert.equal(hit?.diffId, layers[i]!.diffId);
    assert.deepEqual(await readAll(await hit!.open()), await readAll(createReadStream(layers[i]!.file)));
  }
  assert.equal(await store.get(keyFor('oci 2')), undefined, 'expired');
  assert.equal(await store.get(keyFor('oci missing')), undefined);
});

test('default cache repo is the first destination repository plus /cache (Kaniko)', () => {
  assert.equal(defaultCacheRepo(['ghcr.io/owner/image:v1', 'ghcr.io/owner/other:v2']), 'ghcr.io/owner/image/cache');
  assert.equal(defaultCacheRepo(['127.0.0.1:5000/app@sha256:' + 'a'.repeat(64)]), '127.0.0.1:5000/app/cache');
  assert.equal(defaultCacheRepo(['oci:/tmp/out']), undefined);
  assert.equal(defaultCacheRepo([]), undefined);
});

const specs: Array<[string, 'to' | 'from', ReturnType<typeof parseCacheSpec> | 'error']> = [
  ['type=local,dest=/tmp/c', 'to', { type: 'local', dir: '/tmp/c' }],
  ['type=local,src=/tmp/c', 'from', { type: 'local', dir: '/tmp/c' }],
  ['type=registry,ref=ghcr.io/o/app/cache', 'from', { type: 'registry', repository: 'ghcr.io/o/app/cache' }],
  ['ghcr.io/o/app/cache', 'to', { type: 'registry', repository: 'ghcr.io/o/app/cache' }],
  ['oci:/var/cache/layout', 'to', { type: 'oci', dir: '/var/cache/layout' }],
  ['type=local', 'to', 'error'],
  ['type=gha', 'to', 'error'],
  ['type=local,dest', 'to', 'error'],
];
for (const [spec, dir, want] of specs) {
  test(`cache spec "${spec}" (${dir}) ${want === 'error' ? 'is rejected' : `is ${want.type}`}`, () => {
    if (want === 'error') assert.throws(() => parseCacheSpec(spec, dir));
    else assert.deepEqual(parseCacheSpec(spec, dir), want);
  });
}
