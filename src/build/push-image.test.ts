/**
 * pushImage against a real registry behind a fault proxy: cached layers are mounted from the
 * cache repository a few at a time, and a retried push asks the registry again about blobs an
 * earlier attempt believed were there.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { startRegistry, type TestRegistry } from '../testing/registry.js';
import { startFaultProxy, type FaultProxy, type FaultRule } from '../testing/fault-proxy.js';
import { parseReference, RegistryClient, RegistryImageWriter, type Repository } from '../registry/index.js';
import { silentLogger as quiet } from '../util/logger.js';
import { BuiltImage, pushImage } from './export.js';
import type { ImageLayer } from './layers.js';

let registry: TestRegistry;
let proxy: FaultProxy;
const clients: RegistryClient[] = [];

before(async () => {
  registry = await startRegistry({ kind: 'plain' });
  proxy = await startFaultProxy(registry);
});

after(async () => {
  for (const c of clients) await c.close();
  await proxy?.stop();
  await registry?.stop();
});

function client(): RegistryClient {
  const c = new RegistryClient({ backoff: { baseDelayMs: 5, maxDelayMs: 20 }, env: { HOME: '/nonexistent' } });
  clients.push(c);
  return c;
}

interface CachedLayer extends ImageLayer {
  source: Repository;
  bytes: Buffer;
}

/** Random layers recorded as coming from the layer cache in `source` (which may lack them). */
function cachedLayers(n: number, source: string, open: (bytes: Buffer) => Readable = (b) => Readable.from([b])): CachedLayer[] {
  const ref = parseReference(`${proxy.host}/${source}`);
  return Array.from({ length: n }, () => {
    const bytes = randomBytes(2048);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    return {
      descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: bytes.length },
      diffId: digest,
      source: { registry: ref.registry, repository: ref.repository },
      bytes,
      open: async () => open(bytes),
    };
  });
}

function imageOf(layers: ImageLayer[]): BuiltImage {
  return new BuiltImage({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } }, layers);
}

async function seed(c: RegistryClient, repo: string, layers: CachedLayer[]): Promise<void> {
  const w = new RegistryImageWriter({ reference: `${proxy.host}/${repo}`, client: c });
  for (const l of layers) await w.writeBlob(l.descriptor, async () => Readable.from([l.bytes]));
}

async function withRules<T>(rules: FaultRule[], fn: () => Promise<T>): Promise<T> {
  proxy.rules.splice(0, proxy.rules.length, ...rules);
  try {
    return await fn();
  } finally {
    proxy.rules.splice(0, proxy.rules.length);
  }
}

test('a retried push uploads again a cached layer whose mount the registry accepted but then called unknown', async () => {
  const c = client();
  const layers = cachedLayers(1, 'retry/cache');
  await seed(c, 'retry/cache', layers);
  const image = imageOf(layers);
  const mounts = () => proxy.hits.filter((h) => h.method === 'POST' && h.path.startsWith('/v2/retry/app/blobs/uploads/?mount='));
  // The first mount is answered 201 without reaching the registry: the manifest PUT then fails
  // with BLOB_UNKNOWN, as after a registry that lost a mounted blob.
  const digest = await withRules([{ match: { method: 'POST', path: /^\/v2\/retry\/app\/blobs\/uploads\/\?mount=/ }, action: { kind: 'status', status: 201 } }], () =>
    pushImage(image, `${proxy.host}/retry/app:v1`, { client: c, retries: 1, logger: quiet, backoffMs: 1 }),
  );
  assert.equal(digest, image.manifest.digest);
  assert.deepEqual(
    mounts().map((h) => h.rule),
    [0, undefined],
    'mounted again, this time by the registry',
  );
  const head = await fetch(`${registry.url}/v2/retry/app/blobs/${layers[0]!.descriptor.digest}`, { method: 'HEAD' });
  assert.equal(head.status, 200);
});

test('cached layers that cannot be mounted stream through at most four at a time', async () => {
  const c = client();
  let open = 0;
  let most = 0;
  // Each stream holds its data until a fifth is open at once (the bound is broken) or a while has
  // passed, so streams that all start together are all seen open together.
  let release!: () => void;
  const crowded = new Promise<void>((resolve) => (release = resolve));
  const layers = cachedLayers(10, 'bound/empty-cache', (bytes) => {
    open++;
    most = Math.max(most, open);
    if (open > 4) release();
    const s = Readable.from(
      (async function* () {
        await Promise.race([crowded, new Promise((r) => setTimeout(r, 150))]);
        yield bytes;
      })(),
    );
    s.once('close', () => open--);
    return s;
  });
  const image = imageOf(layers);
  await pushImage(image, `${proxy.host}/bound/app:v1`, { client: c, retries: 0, logger: quiet, backoffMs: 1 });
  assert.equal(proxy.hits.filter((h) => h.method === 'POST' && h.path.startsWith('/v2/bound/app/blobs/uploads/?mount=')).length, 10, 'every layer tried a mount');
  assert.ok(most >= 1 && most <= 4, `at most four uploads at once (saw ${most})`);
});
