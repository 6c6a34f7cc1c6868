import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { startRegistry, type TestRegistry } from '../testing/registry.js';
import { startFaultProxy, type FaultProxy } from '../testing/fault-proxy.js';
import { makeRandomImage, type TestImage } from '../testing/images.js';
import { freePort } from '../testing/ports.js';
import { copyImage } from '../oci/copy.js';
import { isGantryError } from '../util/errors.js';
import { sha256 } from '../util/digest.js';
import { RegistryClient } from './client.js';
import { RegistryImageReader, RegistryImageWriter } from './image.js';
import type { RegistryOptions } from './options.js';

const FAST = { backoff: { baseDelayMs: 5, maxDelayMs: 20 }, retries: 1 };

let mirror: TestRegistry;
let origin: TestRegistry;
let basic: TestRegistry;
let basicProxy: FaultProxy;
let image: TestImage;
let storage: Server;
const storageRequests: IncomingHttpHeaders[] = [];
const clients: RegistryClient[] = [];

before(async () => {
  [mirror, origin, basic, image] = await Promise.all([
    startRegistry({ kind: 'plain' }),
    startRegistry({ kind: 'plain' }),
    startRegistry({ kind: 'tls-htpasswd' }),
    makeRandomImage({ layers: 1, layerBytes: 64 * 1024, seed: 21 }),
  ]);
  const push = client();
  // The mirror holds the image under a path prefix, as pull-through caches often do.
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${mirror.host}/hub/library/app`, client: push }), { tags: ['v1'] });
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${mirror.host}/cache/team/app`, client: push }), { tags: ['v1'] });
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${origin.host}/team/app`, client: push }), { tags: ['v1', 'only-origin'] });
  basicProxy = await startFaultProxy(basic);
  // A stand-in for blob storage behind a registry redirect: records what it was sent.
  storage = createServer((req, res) => {
    storageRequests.push(req.headers);
    res.writeHead(200, { 'content-length': String(image.layers[0]!.size) });
    createReadStream(image.blobPath(image.layers[0]!.digest)).pipe(res);
  });
  await new Promise<void>((resolve) => storage.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  for (const c of clients) await c.close();
  await new Promise((resolve) => storage?.close(resolve));
  await basicProxy?.stop();
  await Promise.all([mirror?.stop(), origin?.stop(), basic?.stop(), image?.cleanup()]);
});

function client(extra: RegistryOptions = {}): RegistryClient {
  const c = new RegistryClient({ ...FAST, env: { HOME: '/nonexistent' }, ...extra });
  clients.push(c);
  return c;
}

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('a Docker Hub pull is served by a mirror with a path prefix (no fallback to docker.io needed)', async () => {
  const c = client({ mirrors: [`${mirror.host}/hub`], skipDefaultRegistryFallback: true });
  const reader = new RegistryImageReader({ reference: 'app:v1', client: c });
  assert.equal((await reader.getManifest()).digest, image.manifest.digest);
  assert.deepEqual(reader.servedFrom, { registry: mirror.host, repository: 'hub/library/app', via: 'mirror' });
  assert.equal(sha256(await readAll(await reader.openBlob(image.layers[0]!))), image.layers[0]!.digest);
});

test('registry maps: the mapped registry serves; a miss or an unreachable map falls back to the origin', async () => {
  const dead = `127.0.0.1:${await freePort()}`;
  const cases: Array<{ name: string; ref: string; maps: string[]; via: string; registry: string }> = [
    { name: 'mapped registry has it', ref: `${origin.host}/team/app:v1`, maps: [`${mirror.host}/cache`], via: 'map', registry: mirror.host },
    { name: 'mapped registry lacks the tag', ref: `${origin.host}/team/app:only-origin`, maps: [`${mirror.host}/cache`], via: 'origin', registry: origin.host },
    { name: 'first map unreachable, second has it', ref: `${origin.host}/team/app:v1`, maps: [dead, `${mirror.host}/cache`], via: 'map', registry: mirror.host },
  ];
  for (const c of cases) {
    const reader = new RegistryImageReader({ reference: c.ref, client: client({ registryMaps: { [origin.host]: c.maps } }) });
    assert.equal((await reader.getManifest()).digest, image.manifest.digest, c.name);
    assert.equal(reader.servedFrom?.via, c.via, c.name);
    assert.equal(reader.servedFrom?.registry, c.registry, c.name);
  }
});

test('skipDefaultRegistryFallback: when no mapped registry has the image the error says so', async () => {
  const c = client({ registryMaps: { [origin.host]: [`${mirror.host}/cache`] }, skipDefaultRegistryFallback: true });
  await assert.rejects(
    new RegistryImageReader({ reference: `${origin.host}/team/app:only-origin`, client: c }).getManifest(),
    (e: unknown) => isGantryError(e, 'NOT_FOUND') && e.message.includes(`${mirror.host}/cache/team/app`),
  );
});

test('pushes never go to mirrors or maps', async () => {
  const c = client({ registryMaps: { [origin.host]: [mirror.host] }, mirrors: [mirror.host] });
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${origin.host}/pushed/app`, client: c }), { tags: ['p'] });
  await assert.rejects(new RegistryImageReader({ reference: `${mirror.host}/pushed/app:p`, client: client() }).getManifest(), (e: unknown) => isGantryError(e, 'NOT_FOUND'));
});

test('redirects are followed and Authorization is not forwarded to another host', async () => {
  const layer = image.layers[0]!;
  const port = (storage.address() as AddressInfo).port;
  basicProxy.rules.push({
    match: { method: 'GET', path: new RegExp(`/blobs/${layer.digest}`) },
    action: { kind: 'status', status: 307, headers: { location: `http://127.0.0.1:${port}/storage/blob?sig=secret` } },
  });
  const writerClient = client({
    caFiles: { [basic.host]: [basic.caFile!] },
    env: { DOCKER_AUTH_CONFIG: JSON.stringify({ auths: { [basicProxy.host]: { auth: Buffer.from(`${basic.username}:${basic.password}`).toString('base64') } } }), HOME: '/nonexistent' },
  });
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${basicProxy.host}/redir/app`, client: writerClient }), { tags: ['v1'] });
  const bytes = await readAll(await new RegistryImageReader({ reference: `${basicProxy.host}/redir/app:v1`, client: writerClient }).openBlob(layer));
  assert.equal(sha256(bytes), layer.digest);
  assert.equal(storageRequests.length, 1);
  assert.equal(storageRequests[0]!.authorization, undefined);
  assert.ok(basicProxy.hits.some((h) => h.rule === 0), 'the registry side answered with the redirect');
});

test('a 401 challenge on a blob PUT is answered and the whole body is sent again', async () => {
  const c = client({ env: { DOCKER_AUTH_CONFIG: JSON.stringify({ auths: { [basicProxy.host]: { auth: Buffer.from(`${basic.username}:${basic.password}`).toString('base64') } } }), HOME: '/nonexistent' } });
  basicProxy.rules.splice(0, basicProxy.rules.length, {
    match: { method: 'PUT', path: /\/blobs\/uploads\/.*digest=/ },
    times: 1,
    action: { kind: 'status', status: 401, headers: { 'www-authenticate': 'Basic realm="gantry-test"' }, body: '{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}' },
  });
  const before = basicProxy.hits.length;
  await copyImage(image, undefined, new RegistryImageWriter({ reference: `${basicProxy.host}/replay/app`, client: c }), { tags: ['v1'] });
  const puts = basicProxy.hits.slice(before).filter((h) => h.method === 'PUT' && /\/blobs\/uploads\//.test(h.path));
  assert.equal(puts.length, image.layers.length + 2, 'one PUT per blob plus the replayed one');
  const posts = basicProxy.hits.slice(before).filter((h) => h.method === 'POST');
  assert.equal(posts.length, image.layers.length + 1, 'replayed in the same upload session');
  const reader = new RegistryImageReader({ reference: `${basicProxy.host}/replay/app:v1`, client: c });
  for (const l of image.layers) assert.equal(sha256(await readAll(await reader.openBlob(l))), l.digest);
});
