import { after, before } from 'node:test';
import { copyImage } from '../oci/copy.js';
import { RegistryClient } from '../registry/client.js';
import { RegistryImageWriter } from '../registry/image.js';
import type { RegistryOptions } from '../registry/options.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { makeRandomImage, type TestImage } from './images.js';
import { startRegistry, type TestRegistry } from './registry.js';

/** Fast retries and no docker config: what registry client tests want. */
export const FAST_CLIENT: RegistryOptions = { backoff: { baseDelayMs: 5, maxDelayMs: 20 }, env: { HOME: '/nonexistent' } };

export interface RegistryFixture {
  registry: TestRegistry;
  /** A fault proxy (no rules yet) in front of the registry; it records every request. */
  proxy: FaultProxy;
  /** A random image, pushed to `<registry>/src/app:v1` before the tests run. */
  image: TestImage;
}

/**
 * Registers before/after hooks of the current test file: a plain registry behind a fault proxy,
 * holding a random image. `ready` receives them once started; the returned function makes
 * clients (FAST_CLIENT plus `extra`) that are closed after the tests.
 */
export function registryWithImage(image: { layers: number; layerBytes: number; seed: number }, ready: (f: RegistryFixture) => void): (extra?: RegistryOptions) => RegistryClient {
  const clients: RegistryClient[] = [];
  let f: RegistryFixture | undefined;
  const client = (extra: RegistryOptions = {}) => {
    const c = new RegistryClient({ ...FAST_CLIENT, ...extra });
    clients.push(c);
    return c;
  };
  before(async () => {
    const registry = await startRegistry({ kind: 'plain' });
    const proxy = await startFaultProxy(registry);
    f = { registry, proxy, image: await makeRandomImage(image) };
    await copyImage(f.image, undefined, new RegistryImageWriter({ reference: `${registry.host}/src/app`, client: client() }), { tags: ['v1'] });
    ready(f);
  });
  after(async () => {
    for (const c of clients) await c.close();
    await f?.proxy.stop();
    await f?.registry.stop();
    await f?.image.cleanup();
  });
  return client;
}
