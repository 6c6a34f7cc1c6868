import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { TestRegistry } from '../testing/registry.js';
import type { FaultProxy, FaultRule } from '../testing/fault-proxy.js';
import { registryWithImage } from '../testing/registry-fixture.js';
import type { TestImage } from '../testing/images.js';
import { copyImage } from '../oci/copy.js';
import { isGantryError } from '../util/errors.js';
import { RegistryClient } from './client.js';
import { openBlob } from './blob-download.js';
import { uploadBlob } from './blob-upload.js';
import { RegistryImageReader, RegistryImageWriter } from './image.js';
import { putManifest } from './manifests.js';
import type { RegistryOptions } from './options.js';

// What a registry-to-registry copy costs in requests and hashing: each blob crosses once, is
// hashed once (while streaming), round trips overlap where they can, and the manifest goes last.

let registry: TestRegistry;
let proxy: FaultProxy;
let image: TestImage;
// Every test pulls from <registry>/src/app:v1.
const client = registryWithImage({ layers: 3, layerBytes: 300 * 1024, seed: 23 }, (f) => ({ registry, proxy, image } = f));

async function withRules<T>(rules: FaultRule[], fn: () => Promise<T>): Promise<{ result: T; hits: FaultProxy['hits'] }> {
  proxy.rules.splice(0, proxy.rules.length, ...rules);
  const start = proxy.hits.length;
  try {
    return { result: await fn(), hits: proxy.hits.slice(start) };
  } finally {
    proxy.rules.splice(0, proxy.rules.length);
  }
}

/** Counts, per resulting digest, how many hashes were computed over which number of bytes. */
async function countingHashes<T>(fn: () => Promise<T>): Promise<{ result: T; hashed: Map<string, { times: number; bytes: number }> }> {
  const hashed = new Map<string, { times: number; bytes: number }>();
  const original = crypto.createHash;
  crypto.createHash = ((algorithm: string, options?: crypto.HashOptions) => {
    const h = original(algorithm, options);
    let bytes = 0;
    const update = h.update.bind(h);
    const digest = h.digest.bind(h);
    h.update = ((data: crypto.BinaryLike, enc?: crypto.Encoding) => {
      bytes += typeof data === 'string' ? Buffer.byteLength(data, enc) : data.byteLength;
      return enc ? update(data as string, enc) : update(data);
    }) as typeof h.update;
    h.digest = ((enc?: crypto.BinaryToTextEncoding) => {
      const out = enc ? digest(enc) : digest();
      const key = `${algorithm}:${Buffer.isBuffer(out) ? out.toString('hex') : out}`;
      const seen = hashed.get(key) ?? { times: 0, bytes: 0 };
      hashed.set(key, { times: seen.times + 1, bytes: seen.bytes + bytes });
      return out;
    }) as typeof h.digest;
    return h;
  }) as typeof crypto.createHash;
  syncBuiltinESMExports();
  try {
    return { result: await fn(), hashed };
  } finally {
    crypto.createHash = original;
    syncBuiltinESMExports();
  }
}

test('a registry-to-registry copy hashes each blob once, sends it once and puts the manifest last, by tag only', async () => {
  const blobs = [image.configDescriptor, ...image.layers];
  const { result, hashed } = await countingHashes(() =>
    withRules([], async () => {
      const src = new RegistryImageReader({ reference: `${proxy.host}/src/app:v1`, client: client() });
      const dst = new RegistryImageWriter({ reference: `${proxy.host}/once/app`, client: client() });
      await copyImage(src, undefined, dst, { tags: ['v1'] });
    }),
  );
  for (const b of blobs) assert.deepEqual(hashed.get(b.digest), { times: 1, bytes: b.size }, `blob ${b.digest} is hashed exactly once`);

  const hits = result.hits;
  const count = (method: string, re: RegExp) => hits.filter((h) => h.method === method && re.test(h.path)).length;
  assert.equal(count('GET', /^\/v2\/$/), 2, 'one ping per client');
  for (const b of blobs) {
    assert.equal(count('GET', new RegExp(`^/v2/src/app/blobs/${b.digest}$`)), 1, 'each blob is downloaded once');
    assert.equal(count('HEAD', new RegExp(`^/v2/once/app/blobs/${b.digest}$`)), 1, 'each blob is checked once');
    assert.equal(count('PUT', new RegExp(`/v2/once/app/blobs/uploads/.*digest=${encodeURIComponent(b.digest)}`)), 1, 'each blob is uploaded once');
  }
  assert.equal(count('POST', /\/v2\/once\/app\/blobs\/uploads\//), blobs.length);
  const manifestPuts = hits.flatMap((h, i) => (h.method === 'PUT' && /\/manifests\//.test(h.path) ? [[i, h.path] as const] : []));
  assert.deepEqual(manifestPuts.map(([, p]) => p), ['/v2/once/app/manifests/v1']);
  const lastBlobPut = Math.max(...hits.flatMap((h, i) => (h.method === 'PUT' && /\/blobs\//.test(h.path) ? [i] : [])));
  assert.ok(manifestPuts[0]![0] > lastBlobPut, 'the manifest is put after every blob');
});

test('putManifest puts by tag (each tag once), or by digest when there is no tag', async () => {
  const raw = await new RegistryImageReader({ reference: `${registry.host}/src/app:v1`, client: client() }).getManifest();
  const cases: Array<{ tags: string[]; want: string[] }> = [
    { tags: [], want: [`/v2/src/app/manifests/${raw.digest}`] },
    { tags: ['t1'], want: ['/v2/src/app/manifests/t1'] },
    { tags: ['t2', 't3', 't2'], want: ['/v2/src/app/manifests/t2', '/v2/src/app/manifests/t3'] },
  ];
  for (const { tags, want } of cases) {
    const { hits } = await withRules([], () => putManifest(client(), { registry: proxy.host, repository: 'src/app' }, raw, tags));
    assert.deepEqual(hits.filter((h) => h.method === 'PUT').map((h) => h.path), want, `tags ${JSON.stringify(tags)}`);
  }
  for (const tag of ['t1', 't2', 't3']) {
    assert.equal((await new RegistryImageReader({ reference: `${registry.host}/src/app:${tag}`, client: client() }).getManifest()).digest, raw.digest);
  }
});

test('warmUp pings once for the requests that follow, and leaves failures to them', async () => {
  const c = client();
  const writer = new RegistryImageWriter({ reference: `${proxy.host}/warm/app`, client: c });
  const { hits } = await withRules([], async () => {
    await writer.warmUp();
    assert.equal(await writer.hasBlob(image.configDescriptor), false);
  });
  assert.deepEqual(hits.map((h) => `${h.method} ${h.path}`), ['GET /v2/', `HEAD /v2/warm/app/blobs/${image.configDescriptor.digest}`]);

  const dead = new RegistryImageWriter({ reference: '127.0.0.1:9/warm/app', client: client({ retries: 0 }) });
  await dead.warmUp();
  await assert.rejects(dead.hasBlob(image.configDescriptor), (e: unknown) => isGantryError(e, 'REGISTRY_UNREACHABLE'));
});

test('uploadBlob opens the source while the session starts, and releases it when no session can be had', async () => {
  const layer = image.layers[0]!;
  const src = new RegistryImageReader({ reference: `${registry.host}/src/app:v1`, client: client() });
  const opened: Array<Promise<Readable>> = [];
  const open = () => {
    const s = src.openBlob(layer);
    opened.push(s);
    return s;
  };
  const repo = { registry: proxy.host, repository: 'early/app' };

  const refused = await withRules([{ match: { method: 'POST' }, times: 1, action: { kind: 'status', status: 403 } }], () =>
    uploadBlob(client(), repo, layer, open).then(
      () => assert.fail('the upload should fail'),
      (e: unknown) => e,
    ),
  );
  assert.ok(isGantryError(refused.result, 'DENIED') || isGantryError(refused.result, 'UNAUTHORIZED'), String(refused.result));
  assert.equal(opened.length, 1, 'the source was opened before the session answered');
  const early = await opened[0]!;
  await new Promise((r) => setImmediate(r));
  assert.equal(early.destroyed, true, 'and released after the refusal');

  // A reset PUT is retried from a new session with a freshly opened source.
  opened.length = 0;
  const { hits } = await withRules([{ match: { method: 'PUT', path: /\/blobs\/uploads\// }, times: 1, action: { kind: 'reset-request' } }], () => uploadBlob(client(), repo, layer, open));
  assert.equal(opened.length, 2);
  assert.equal(hits.filter((h) => h.method === 'POST').length, 2);
  assert.equal(await new RegistryImageWriter({ reference: `${registry.host}/early/app`, client: client() }).hasBlob(layer), true);
});

test('a blob longer than its descriptor fails with SIZE_MISMATCH before it is all read', async () => {
  const layer = image.layers[1]!;
  const short = { ...layer, size: 1000 };
  const stream = await openBlob(client(), { registry: registry.host, repository: 'src/app' }, short);
  let got = 0;
  await assert.rejects(
    (async () => {
      for await (const c of stream) got += (c as Buffer).length;
    })(),
    (e: unknown) => isGantryError(e, 'SIZE_MISMATCH'),
  );
  assert.ok(got <= 1000, `passed on ${got} bytes`);
});

/**
 * A plain-HTTP server whose TLS handshakes never get an answer: an HTTPS probe of it hangs, so a
 * ping that waits for the HTTPS outcome hangs too.
 */
async function silentToTls(registryHeader: boolean): Promise<{ host: string; close(): Promise<void> }> {
  const http = createHttpServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', ...(registryHeader ? { 'docker-distribution-api-version': 'registry/2.0' } : {}) });
    res.end('{}');
  });
  const sockets = new Set<Socket>();
  const tcp = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('data', (first) => {
      if (first[0] === 0x16) return; // a TLS ClientHello: keep silent
      socket.pause();
      socket.unshift(first);
      http.emit('connection', socket);
      process.nextTick(() => socket.resume());
    });
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${(tcp.address() as AddressInfo).port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => tcp.close(r));
      http.close();
    },
  };
}

test('a plain-HTTP registry is used without waiting for the HTTPS probe to fail', async () => {
  const server = await silentToTls(true);
  try {
    const ep = await client().endpoint(server.host, AbortSignal.timeout(10_000));
    assert.equal(ep.plainHttp, true);
    assert.equal(ep.origin, `http://${server.host}`);
  } finally {
    await server.close();
  }
});

test('a plain-HTTP answer that may not come from a registry waits for the HTTPS outcome', async () => {
  const server = await silentToTls(false);
  try {
    await assert.rejects(client().endpoint(server.host, AbortSignal.timeout(300)), (e: unknown) => isGantryError(e, 'ABORTED'));
  } finally {
    await server.close();
  }
});

test('direct registry connections do not load undici (its start-up costs more than a small copy)', async () => {
  // This test file never imports undici; every request above went through the registry client.
  const cache = createRequire(import.meta.url).cache;
  assert.deepEqual(Object.keys(cache).filter((k) => /node_modules\/undici\//.test(k)), []);
});
