import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import type { TestRegistry } from '../testing/registry.js';
import type { FaultProxy, FaultRule } from '../testing/fault-proxy.js';
import { registryWithImage } from '../testing/registry-fixture.js';
import type { TestImage } from '../testing/images.js';
import { copyImage } from '../oci/copy.js';
import { isGantryError } from '../util/errors.js';
import { sha256 } from '../util/digest.js';
import { RegistryClient } from './client.js';
import { RegistryImageReader, RegistryImageWriter } from './image.js';
import type { RegistryOptions } from './options.js';

let registry: TestRegistry;
let proxy: FaultProxy;
let image: TestImage;
// Every test pulls from <registry>/src/app:v1.
const client = registryWithImage({ layers: 2, layerBytes: 512 * 1024, seed: 11 }, (f) => ({ registry, proxy, image } = f));

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Runs `fn` with `rules` installed, returning the proxy hits it caused. */
async function withRules<T>(rules: FaultRule[], fn: () => Promise<T>): Promise<{ result: T; hits: FaultProxy['hits'] }> {
  proxy.rules.splice(0, proxy.rules.length, ...rules);
  const before = proxy.hits.length;
  try {
    const result = await fn();
    return { result, hits: proxy.hits.slice(before) };
  } finally {
    proxy.rules.splice(0, proxy.rules.length);
  }
}

const layerPath = (i: number) => new RegExp(`/blobs/${image.layers[i]!.digest}`);

test('503 with Retry-After, then success: the manifest GET is retried after the advertised delay', async () => {
  const started = Date.now();
  const { result, hits } = await withRules(
    [{ match: { method: 'GET', path: /\/manifests\/v1$/ }, times: 1, action: { kind: 'status', status: 503, headers: { 'retry-after': '1' } } }],
    () => new RegistryImageReader({ reference: `${proxy.host}/src/app:v1`, client: client() }).getManifest(),
  );
  assert.equal(result.digest, image.manifest.digest);
  assert.equal(hits.filter((h) => /\/manifests\/v1$/.test(h.path)).length, 2);
  assert.ok(Date.now() - started >= 950, 'waited for Retry-After');
});

test('429 on a blob HEAD during push is retried', async () => {
  const { hits } = await withRules([{ match: { method: 'HEAD', path: /\/blobs\/sha256:/ }, times: 2, action: { kind: 'status', status: 429, body: '{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}' } }], () =>
    copyImage(image, undefined, new RegistryImageWriter({ reference: `${proxy.host}/rate/app`, client: client() }), { tags: ['v1'] }),
  );
  assert.equal(hits.filter((h) => h.rule === 0).length, 2);
  assert.equal((await new RegistryImageReader({ reference: `${registry.host}/rate/app:v1`, client: client() }).getManifest()).digest, image.manifest.digest);
});

test('429 that never ends surfaces as TOO_MANY_REQUESTS after the retries', async () => {
  await withRules([{ match: { method: 'GET', path: /\/manifests\// }, times: Infinity, action: { kind: 'status', status: 429 } }], async () => {
    await assert.rejects(
      new RegistryImageReader({ reference: `${proxy.host}/src/app:v1`, client: client({ retries: 2 }) }).getManifest(),
      (e: unknown) => isGantryError(e, 'TOO_MANY_REQUESTS') && /rate limiting/.test(e.hint ?? ''),
    );
  });
});

test('a connection reset mid-blob resumes with Range and the digest still verifies', async () => {
  const layer = image.layers[0]!;
  const { result, hits } = await withRules([{ match: { method: 'GET', path: layerPath(0) }, times: 2, action: { kind: 'reset-response-after', bytes: 100 * 1024 } }], async () =>
    readAll(await new RegistryImageReader({ reference: `${proxy.host}/src/app:v1`, client: client() }).openBlob(layer)),
  );
  assert.equal(result.length, layer.size);
  assert.equal(sha256(result), layer.digest);
  assert.equal(hits.filter((h) => layerPath(0).test(h.path)).length, 3, 'first GET and two resumes');
});

test('a reset during a monolithic upload is retried from a new session', async () => {
  const { hits } = await withRules([{ match: { method: 'PUT', path: /\/blobs\/uploads\/.*digest=/ }, times: 1, action: { kind: 'reset-request' } }], () =>
    copyImage(image, undefined, new RegistryImageWriter({ reference: `${proxy.host}/reset/app`, client: client() }), { tags: ['v1'] }),
  );
  assert.equal(hits.filter((h) => h.rule === 0).length, 1);
  const reader = new RegistryImageReader({ reference: `${registry.host}/reset/app:v1`, client: client() });
  for (const l of image.layers) assert.equal(sha256(await readAll(await reader.openBlob(l))), l.digest);
});

test('a reset during a chunked upload resumes from the offset the registry reports', async () => {
  // Three blobs have three PATCHes at offset 0 between them, so the fourth PATCH is mid-blob.
  const { hits } = await withRules([
    { match: { method: 'PATCH' }, times: 3, action: { kind: 'delay', ms: 0 } },
    { match: { method: 'PATCH' }, times: 1, action: { kind: 'reset-request' } },
  ], () =>
    copyImage(image, undefined, new RegistryImageWriter({ reference: `${proxy.host}/chunkreset/app`, client: client({ chunkSize: 128 * 1024 }) }), { tags: ['v1'] }),
  );
  assert.equal(hits.filter((h) => h.rule === 1).length, 1);
  assert.ok(hits.some((h) => h.method === 'GET' && /\/blobs\/uploads\//.test(h.path)), 'queried the upload status');
  assert.equal(hits.filter((h) => h.method === 'POST').length, image.layers.length + 1, 'no upload had to start over');
  const reader = new RegistryImageReader({ reference: `${registry.host}/chunkreset/app:v1`, client: client() });
  for (const l of image.layers) assert.equal(sha256(await readAll(await reader.openBlob(l))), l.digest);
});

test('a blob that keeps failing fails the push and no manifest is written', async () => {
  const failing = image.layers[1]!.digest;
  await withRules([{ match: { method: 'PUT', path: new RegExp(`digest=${failing.replace(':', '(:|%3A)')}`) }, times: Infinity, action: { kind: 'status', status: 500 } }], async () => {
    await assert.rejects(
      copyImage(image, undefined, new RegistryImageWriter({ reference: `${proxy.host}/broken/app`, client: client({ retries: 2 }) }), { tags: ['v1'] }),
      (e: unknown) => isGantryError(e, 'REGISTRY_ERROR') && e.message.includes(failing),
    );
  });
  await assert.rejects(
    new RegistryImageReader({ reference: `${registry.host}/broken/app:v1`, client: client() }).getManifest(),
    (e: unknown) => isGantryError(e, 'NOT_FOUND'),
  );
  assert.ok(!proxy.hits.some((h) => h.method === 'PUT' && /\/broken\/app\/manifests\//.test(h.path)), 'no manifest PUT was attempted');
});

test('manifests that are too large or disagree with Docker-Content-Digest are refused', async () => {
  const small = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: {}, layers: [] });
  const cases: Array<{ name: string; headers: Record<string, string>; body: string; code: string }> = [
    {
      name: 'over 4 MiB',
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      body: JSON.stringify({ schemaVersion: 2, pad: 'x'.repeat(4 * 1024 * 1024) }),
      code: 'MANIFEST_INVALID',
    },
    {
      name: 'wrong Docker-Content-Digest',
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': image.manifest.digest },
      body: small,
      code: 'DIGEST_MISMATCH',
    },
  ];
  for (const c of cases) {
    await withRules([{ match: { method: 'GET', path: /\/manifests\/v1$/ }, times: 1, action: { kind: 'status', status: 200, headers: c.headers, body: c.body } }], async () => {
      await assert.rejects(
        new RegistryImageReader({ reference: `${proxy.host}/src/app:v1`, client: client() }).getManifest(),
        (e: unknown) => isGantryError(e) && e.code === c.code,
        c.name,
      );
    });
  }
});

test('a Docker schema 1 manifest is refused with a hint to re-push', async () => {
  await withRules(
    [{ match: { method: 'GET', path: /\/manifests\/v1$/ }, action: { kind: 'status', status: 200, headers: { 'content-type': 'application/vnd.docker.distribution.manifest.v1+prettyjws' }, body: JSON.stringify({ schemaVersion: 1, name: 'src/app', tag: 'v1', fsLayers: [] }) } }],
    async () => {
      await assert.rejects(
        new RegistryImageReader({ reference: `${proxy.host}/src/app:v1`, client: client() }).getManifest(),
        (e: unknown) => isGantryError(e, 'MANIFEST_INVALID') && /schema 1/.test(e.message) && /push the image again/.test(e.hint ?? ''),
      );
    },
  );
});

test('MANIFEST_BLOB_UNKNOWN right after the blobs were pushed (GHCR quirk) is retried', async () => {
  const { hits } = await withRules(
    [{ match: { method: 'PUT', path: /\/manifests\// }, times: 1, action: { kind: 'status', status: 400, headers: { 'content-type': 'application/json' }, body: '{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}' } }],
    () => copyImage(image, undefined, new RegistryImageWriter({ reference: `${proxy.host}/eventual/app`, client: client() }), { tags: ['v1'] }),
  );
  const puts = hits.filter((h) => h.method === 'PUT' && /\/manifests\//.test(h.path)).map((h) => h.path);
  assert.deepEqual(puts, ['/v2/eventual/app/manifests/v1', '/v2/eventual/app/manifests/v1'], 'the tag twice: refused, then retried');
  assert.equal((await new RegistryImageReader({ reference: `${registry.host}/eventual/app:v1`, client: client() }).getManifest()).digest, image.manifest.digest);
});

test('an abort while waiting out Retry-After ends the pull promptly as ABORTED', async () => {
  await withRules([{ match: { method: 'GET', path: /\/manifests\/v1$/ }, times: Infinity, action: { kind: 'status', status: 503, headers: { 'retry-after': '30' } } }], async () => {
    const started = Date.now();
    await assert.rejects(
      new RegistryImageReader({ reference: `${proxy.host}/src/app:v1`, client: client() }).getManifest(undefined, AbortSignal.timeout(300)),
      (e: unknown) => isGantryError(e, 'ABORTED'),
    );
    assert.ok(Date.now() - started < 5000);
  });
});
