import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { startRegistry, type TestRegistry } from '../testing/registry.js';
import { makeRandomImage, type TestImage } from '../testing/images.js';
import { copyImage } from '../oci/copy.js';
import { isGantryError } from '../util/errors.js';
import { RegistryClient } from './client.js';
import { RegistryImageReader, RegistryImageWriter } from './image.js';
import { proxyForUrl } from './proxy.js';

test('proxyForUrl follows Go ProxyFromEnvironment rules', () => {
  const env = { HTTPS_PROXY: 'http://proxy:3128', HTTP_PROXY: 'proxy:8080', NO_PROXY: 'internal.example, .corp.example, 10.1.2.3, reg.example:5000, [fd00::1]:443' };
  const cases: Array<[string, NodeJS.ProcessEnv, string | undefined]> = [
    ['https://ghcr.io/v2/', env, 'http://proxy:3128'],
    ['http://plain.example/v2/', env, 'http://proxy:8080'],
    ['https://internal.example/v2/', env, undefined],
    ['https://a.internal.example/v2/', env, undefined],
    ['https://corp.example/v2/', env, 'http://proxy:3128'],
    ['https://x.corp.example/v2/', env, undefined],
    ['https://10.1.2.3:5000/v2/', env, undefined],
    ['https://reg.example:5000/v2/', env, undefined],
    ['https://reg.example/v2/', env, 'http://proxy:3128'],
    ['https://[fd00::1]/v2/', env, undefined],
    ['https://localhost:5000/v2/', env, undefined],
    ['https://127.0.0.1:5000/v2/', env, undefined],
    ['https://ghcr.io/v2/', { ...env, NO_PROXY: '*' }, undefined],
    ['https://ghcr.io/v2/', { https_proxy: 'http://lower:1' }, 'http://lower:1'],
    ['https://ghcr.io/v2/', { HTTP_PROXY: 'http://only-http:1' }, undefined],
    ['https://ghcr.io/v2/', {}, undefined],
  ];
  for (const [url, e, want] of cases) assert.equal(proxyForUrl(new URL(url), e), want, `${url} ${JSON.stringify(e)}`);
});

// A forward proxy that understands CONNECT and absolute-form requests, and sends every target
// `registry.test:<port>` to 127.0.0.1:<port>, so the name only resolves through the proxy.
let registry: TestRegistry;
let image: TestImage;
let proxy: Server;
const seen: string[] = [];

before(async () => {
  [registry, image] = await Promise.all([startRegistry({ kind: 'plain' }), makeRandomImage({ layers: 1, layerBytes: 8 * 1024, seed: 5 })]);
  proxy = createServer((req, res) => {
    const target = new URL(req.url ?? '/');
    seen.push(`${req.method} ${target.host}`);
    const up = httpRequest({ host: '127.0.0.1', port: target.port, method: req.method, path: target.pathname + target.search, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  proxy.on('connect', (req, socket) => {
    seen.push(`CONNECT ${req.url}`);
    const port = Number((req.url ?? '').split(':')[1]);
    const up = connect(port, '127.0.0.1', () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  proxy?.closeAllConnections();
  await new Promise((resolve) => proxy?.close(resolve));
  await registry?.stop();
  await image?.cleanup();
});

test('requests go through HTTP(S)_PROXY: CONNECT for https, absolute form for plain http', async () => {
  const port = registry.host.split(':')[1];
  const name = `registry.test:${port}`;
  const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  const c = new RegistryClient({ insecure: [name], env: { HTTPS_PROXY: proxyUrl, HTTP_PROXY: proxyUrl, HOME: '/nonexistent' }, backoff: { baseDelayMs: 5, maxDelayMs: 20 } });
  try {
    await copyImage(image, undefined, new RegistryImageWriter({ reference: `${name}/proxied/app`, client: c }), { tags: ['v1'] });
    assert.equal((await new RegistryImageReader({ reference: `${name}/proxied/app:v1`, client: c }).getManifest()).digest, image.manifest.digest);
  } finally {
    await c.close();
  }
  assert.ok(seen.includes(`PUT ${name}`), seen.join(' | '));

  // Without --insecure-registry only HTTPS is tried, through a tunnel (the plain registry then
  // fails the TLS handshake inside it).
  seen.length = 0;
  const secure = new RegistryClient({ env: { HTTPS_PROXY: proxyUrl, HTTP_PROXY: proxyUrl, HOME: '/nonexistent' }, retries: 0 });
  try {
    await assert.rejects(new RegistryImageReader({ reference: `${name}/proxied/app:v1`, client: secure }).getManifest(), (e: unknown) => isGantryError(e, 'REGISTRY_UNREACHABLE'));
  } finally {
    await secure.close();
  }
  assert.deepEqual(seen, [`CONNECT ${name}`]);
});
