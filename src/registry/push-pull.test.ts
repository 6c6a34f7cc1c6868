import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { startRegistry, type TestRegistry } from '../testing/registry.js';
import { startFaultProxy, type FaultProxy } from '../testing/fault-proxy.js';
import { makeRandomImage, type TestImage } from '../testing/images.js';
import { copyImage } from '../oci/copy.js';
import { isGantryError } from '../util/errors.js';
import { sha256 } from '../util/digest.js';
import { RegistryClient } from './client.js';
import { RegistryImageReader, RegistryImageWriter, checkPushPermission } from './image.js';
import { headManifest, getManifest } from './manifests.js';
import { listTags } from './tags.js';
import type { RegistryOptions } from './options.js';

let registry: TestRegistry;
let proxy: FaultProxy;
let image: TestImage;
let dockerImage: TestImage;
const FAST: RegistryOptions = { backoff: { baseDelayMs: 5, maxDelayMs: 20 }, env: { HOME: '/nonexistent' } };
const clients: RegistryClient[] = [];

function client(extra: RegistryOptions = {}): RegistryClient {
  const c = new RegistryClient({ ...FAST, ...extra });
  clients.push(c);
  return c;
}

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

before(async () => {
  registry = await startRegistry({ kind: 'plain' });
  proxy = await startFaultProxy(registry);
  image = await makeRandomImage({ layers: 3, layerBytes: 300 * 1024, seed: 7 });
  dockerImage = await makeRandomImage({ layers: 1, layerBytes: 20 * 1024, seed: 8, mediaTypes: 'docker' });
});

after(async () => {
  for (const c of clients) await c.close();
  await proxy?.stop();
  await registry?.stop();
  await image?.cleanup();
  await dockerImage?.cleanup();
});

test('push then pull a multi-layer image round-trips manifest and blobs byte for byte', async () => {
  const c = client();
  const writer = new RegistryImageWriter({ reference: `${registry.host}/roundtrip/app`, client: c });
  const result = await copyImage(image, undefined, writer, { tags: ['v1', 'latest'] });
  assert.equal(result.digest, image.manifest.digest);

  const reader = new RegistryImageReader({ reference: `${registry.host}/roundtrip/app:v1`, client: c });
  const raw = await reader.getManifest();
  assert.deepEqual(raw, image.manifest);
  assert.deepEqual(await reader.getManifest(image.manifest.digest), image.manifest);
  for (const layer of [image.configDescriptor, ...image.layers]) {
    const bytes = await readAll(await reader.openBlob(layer));
    assert.equal(sha256(bytes), layer.digest);
    assert.deepEqual(bytes, await readFile(image.blobPath(layer.digest)));
  }
  const head = await headManifest(c, { registry: registry.host, repository: 'roundtrip/app' }, 'latest');
  assert.deepEqual(head, { mediaType: image.manifest.mediaType, digest: image.manifest.digest, size: image.manifest.bytes.length });
  assert.deepEqual((await listTags(c, { registry: registry.host, repository: 'roundtrip/app' })).sort(), ['latest', 'v1']);
});

test('Docker media types survive a push and pull unchanged', async () => {
  const c = client();
  await copyImage(dockerImage, undefined, new RegistryImageWriter({ reference: `${registry.host}/docker/app`, client: c }), { tags: ['d'] });
  const raw = await new RegistryImageReader({ reference: `${registry.host}/docker/app:d`, client: c }).getManifest();
  assert.equal(raw.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  assert.deepEqual(raw.bytes, dockerImage.manifest.bytes);
});

test('chunked upload sends PATCHes of at most chunkSize and the blob arrives intact', async () => {
  const c = client({ chunkSize: 64 * 1024 });
  const before = proxy.hits.length;
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${proxy.host}/chunked/app`, client: c }), { tags: ['c'] });
  const hits = proxy.hits.slice(before);
  const patches = hits.filter((h) => h.method === 'PATCH');
  const expected = image.layers.reduce((n, l) => n + Math.ceil(l.size / (64 * 1024)), 0) + Math.ceil(image.configDescriptor.size / (64 * 1024));
  assert.equal(patches.length, expected);
  const reader = new RegistryImageReader({ reference: `${registry.host}/chunked/app:c`, client: client() });
  for (const layer of image.layers) assert.equal(sha256(await readAll(await reader.openBlob(layer))), layer.digest);
});

test('cross-repository mount: blobs are mounted (201), not uploaded again', async () => {
  const c = client();
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${proxy.host}/mount/source`, client: c }), { tags: ['s'] });
  const before = proxy.hits.length;
  const writer = new RegistryImageWriter({ reference: `${proxy.host}/mount/target`, client: c });
  await copyImage(image, undefined, writer, { tags: ['t'], mountFrom: { registry: proxy.host, repository: 'mount/source' } });
  const hits = proxy.hits.slice(before);
  const mounts = hits.filter((h) => h.method === 'POST' && /mount=sha256/.test(h.path));
  assert.equal(mounts.length, image.layers.length + 1);
  assert.equal(hits.filter((h) => h.method === 'PUT' && /\/blobs\/uploads\//.test(h.path)).length, 0, 'no blob uploads');
  assert.deepEqual((await new RegistryImageReader({ reference: `${registry.host}/mount/target:t`, client: c }).getManifest()).digest, image.manifest.digest);
});

test('listTags follows Link pagination (relative and absolute next links)', async () => {
  // distribution 2.8 ignores `n` on tags/list, so the proxy serves the first two pages the way
  // GHCR and Hub page; the last page comes from the registry itself.
  const c = client();
  const writer = new RegistryImageWriter({ reference: `${registry.host}/paged/app`, client: c });
  await copyImage(dockerImage, undefined, writer, { tags: ['z1', 'z2'] });
  const page = (tags: string[], link: string) => ({
    status: 200,
    headers: { 'content-type': 'application/json', link },
    body: JSON.stringify({ name: 'paged/app', tags }),
  });
  proxy.rules.push(
    { match: { method: 'GET', path: /\/paged\/app\/tags\/list\?n=2$/ }, action: { kind: 'status', ...page(['a', 'b'], '</v2/paged/app/tags/list?n=2&last=b>; rel="next"') } },
    { match: { method: 'GET', path: /last=b/ }, action: { kind: 'status', ...page(['c'], `<http://${proxy.host}/v2/paged/app/tags/list?n=2&last=c&final=1>; rel="next"`) } },
  );
  const before = proxy.hits.length;
  const tags = await listTags(c, { registry: proxy.host, repository: 'paged/app' }, { pageSize: 2 });
  assert.deepEqual(tags.sort(), ['a', 'b', 'c', 'z1', 'z2']);
  assert.equal(proxy.hits.slice(before).filter((h) => /tags\/list/.test(h.path)).length, 3);
});

test('a missing tag is NOT_FOUND with a "tag not found" hint naming the image', async () => {
  const c = client();
  await assert.rejects(
    new RegistryImageReader({ reference: `${registry.host}/roundtrip/app:nope`, client: c }).getManifest(),
    (e: unknown) => isGantryError(e, 'NOT_FOUND') && e.message.includes(`${registry.host}/roundtrip/app:nope`) && /tag not found/.test(e.hint ?? ''),
  );
});

async function blobDataPath(digest: string): Promise<string> {
  const hex = digest.slice('sha256:'.length);
  return join(registry.dataDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
}

test('content corrupted in the registry is rejected: manifests by digest and blobs', async () => {
  const c = client();
  const img = await makeRandomImage({ layers: 1, layerBytes: 10 * 1024, seed: 99 });
  try {
    await copyImage(img, undefined, new RegistryImageWriter({ reference: `${registry.host}/corrupt/app`, client: c }), { tags: ['x'] });
    const layerPath = await blobDataPath(img.layers[0]!.digest);
    const bytes = await readFile(layerPath);
    bytes[bytes.length - 1] ^= 0xff;
    await writeFile(layerPath, bytes);
    const reader = new RegistryImageReader({ reference: `${registry.host}/corrupt/app:x`, client: c });
    await assert.rejects(readAll(await reader.openBlob(img.layers[0]!)), (e: unknown) => isGantryError(e, 'DIGEST_MISMATCH'));

    const manifestPath = await blobDataPath(img.manifest.digest);
    const m = JSON.parse((await readFile(manifestPath)).toString()) as Record<string, unknown>;
    m.annotations = { tampered: 'yes' };
    await writeFile(manifestPath, JSON.stringify(m));
    await assert.rejects(
      getManifest(c, { registry: registry.host, repository: 'corrupt/app' }, img.manifest.digest),
      (e: unknown) => isGantryError(e, 'DIGEST_MISMATCH'),
    );
  } finally {
    await img.cleanup();
  }
});

test('checkPushPermission opens and cancels an upload session', async () => {
  const before = proxy.hits.length;
  await checkPushPermission(`${proxy.host}/perm/app:1`, FAST);
  const hits = proxy.hits.slice(before).filter((h) => h.path.includes('/perm/app/'));
  assert.deepEqual(hits.map((h) => h.method), ['POST', 'DELETE']);
  // distribution keeps only `hashstates` of a cancelled session; an open one also has `startedat` and `data`.
  const uploads = join(registry.dataDir, 'docker/registry/v2/repositories/perm/app/_uploads');
  const sessions = await readdir(uploads);
  assert.equal(sessions.length, 1);
  assert.deepEqual(await readdir(join(uploads, sessions[0]!)), ['hashstates']);
});

test('a client asks about a blob once: after an upload or a HEAD that found it, it knows', async () => {
  const c = client();
  const writer = new RegistryImageWriter({ reference: `${proxy.host}/known/app`, client: c });
  const blob = image.layers[0]!;
  const heads = () => proxy.hits.filter((h) => h.method === 'HEAD' && h.path === `/v2/known/app/blobs/${blob.digest}`).length;
  assert.equal(await writer.hasBlob(blob), false);
  assert.equal(heads(), 1, 'a missing blob is asked about');
  assert.equal(await writer.hasBlob(blob), false);
  assert.equal(heads(), 2, 'and asked again: a miss is not remembered');
  await copyImage(image, undefined, writer, { tags: ['v1'] });
  const afterPush = heads();
  assert.equal(await writer.hasBlob(blob), true);
  assert.equal(heads(), afterPush, 'an uploaded blob is known');

  const other = new RegistryImageWriter({ reference: `${proxy.host}/known/app`, client: client() });
  assert.equal(await other.hasBlob(blob), true);
  assert.equal(await other.hasBlob(blob), true);
  assert.equal(heads(), afterPush + 1, 'another client asks, once');
});

test('a client that forgets the blobs of a repository asks about them again, and only about them', async () => {
  const c = client();
  const a = new RegistryImageWriter({ reference: `${proxy.host}/forget/a`, client: c });
  const b = new RegistryImageWriter({ reference: `${proxy.host}/forget/b`, client: c });
  await copyImage(image, undefined, a, { tags: ['v1'] });
  await copyImage(image, undefined, b, { tags: ['v1'] });
  const blob = image.layers[0]!;
  const heads = (repo: string) => proxy.hits.filter((h) => h.method === 'HEAD' && h.path === `/v2/${repo}/blobs/${blob.digest}`).length;
  const before = [heads('forget/a'), heads('forget/b')];
  c.forgetBlobs(proxy.host, 'forget/a');
  assert.equal(await a.hasBlob(blob), true);
  assert.equal(await b.hasBlob(blob), true);
  assert.deepEqual([heads('forget/a'), heads('forget/b')], [before[0]! + 1, before[1]!]);
  assert.equal(await a.hasBlob(blob), true);
  assert.equal(heads('forget/a'), before[0]! + 1, 'and remembers the answer again');
});
