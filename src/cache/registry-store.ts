/**
 * Registry and OCI-layout backends of the image cache, `--cache-repo` as Kaniko reads it:
 * `registry/repo` or `oci:/path`, defaulting to `<first destination repo>/cache`.
 */
import { mkdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { GantryError, isGantryError } from '../util/errors.js';
import { OciLayoutReader, OciLayoutWriter } from '../oci/layout.js';
import type { ImageReader, ImageWriter } from '../oci/store.js';
import { RegistryClient } from '../registry/client.js';
import { RegistryImageWriter } from '../registry/image.js';
import { getManifest } from '../registry/manifests.js';
import { openBlob } from '../registry/blob-download.js';
import type { RegistryOptions, ResolvedRegistryOptions } from '../registry/options.js';
import { formatRepository, normalizeRegistry, parseReference, parseRepository, type Repository } from '../registry/reference.js';
import { ImageCacheStore, type ImageCacheBackend } from './image-store.js';
import type { StoreCommonOptions } from './store.js';

export interface RegistryCacheOptions extends StoreCommonOptions {
  /** Shared client (connections, tokens); otherwise the store owns one. */
  client?: RegistryClient;
  registry?: RegistryOptions | ResolvedRegistryOptions;
}

class RegistryBackend implements ImageCacheBackend {
  readonly name: string;
  readonly source: Repository;
  private readonly client: RegistryClient;
  private readonly ownsClient: boolean;
  private readonly imageReader: ImageReader;

  constructor(repo: Repository, opts: RegistryCacheOptions) {
    this.source = repo;
    this.name = formatRepository(repo);
    this.ownsClient = !opts.client;
    this.client = opts.client ?? new RegistryClient({ ...(opts.registry ?? {}), ...(opts.logger ? { logger: opts.logger } : {}) });
    // Not RegistryImageReader: mirrors and registry maps are for pulling public images, and
    // cache entries only ever live in the cache repo (a mirror lookup per step would double the cost).
    const client = this.client;
    this.imageReader = {
      name: this.name,
      getManifest: (ref, signal) => getManifest(client, repo, ref ?? 'latest', signal ? { signal } : {}),
      getManifestByDescriptor: (desc, signal) => getManifest(client, repo, desc.digest, signal ? { signal } : {}),
      openBlob: (desc, signal) => openBlob(client, repo, desc, signal ? { signal } : {}),
    };
  }

  async reader(): Promise<ImageReader> {
    return this.imageReader;
  }

  async writeImage(write: (w: ImageWriter) => Promise<void>): Promise<void> {
    await write(new RegistryImageWriter({ reference: { ...this.source }, client: this.client }));
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}

/**
 * OCI layout index.json is rewritten on every commit, so writes to one directory are serialised in
 * this process. Two processes sharing one layout may lose each other's newest tag: that is a
 * cache miss later, never a wrong hit (use a registry or `type=local` for shared caches).
 */
const layoutLocks = new Map<string, Promise<unknown>>();
function withLayoutLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const prev = layoutLocks.get(dir) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.catch(() => undefined);
  layoutLocks.set(dir, tail);
  void tail.then(() => {
    if (layoutLocks.get(dir) === tail) layoutLocks.delete(dir);
  });
  return run;
}

class LayoutBackend implements ImageCacheBackend {
  readonly name: string;
  constructor(private readonly dir: string) {
    this.name = `oci:${dir}`;
  }

  async reader(): Promise<OciLayoutReader | undefined> {
    const exists = await stat(`${this.dir}/oci-layout`).then(() => true, () => false);
    if (!exists) return undefined;
    // Opened per lookup: other writers (this build's queue) add tags to index.json as we go.
    return OciLayoutReader.open(this.dir);
  }

  writeImage(write: (w: ImageWriter) => Promise<void>): Promise<void> {
    return withLayoutLock(this.dir, async () => {
      await mkdir(this.dir, { recursive: true });
      const w = await OciLayoutWriter.create(this.dir);
      try {
        await write(w);
        await w.commit();
      } catch (err) {
        await w.abort?.().catch(() => undefined);
        throw err;
      }
    });
  }
}

export function registryCacheStore(repository: string | Repository, opts: RegistryCacheOptions = {}): ImageCacheStore {
  const repo = typeof repository === 'string' ? parseRepository(repository) : { registry: normalizeRegistry(repository.registry), repository: repository.repository };
  return new ImageCacheStore(new RegistryBackend(repo, opts), opts);
}

export function ociLayoutCacheStore(dir: string, opts: StoreCommonOptions = {}): ImageCacheStore {
  return new ImageCacheStore(new LayoutBackend(resolve(dir)), opts);
}

/** Kaniko's default `--cache-repo`: the first destination's repository plus `/cache`; undefined for non-registry destinations. */
export function defaultCacheRepo(destinations: readonly string[]): string | undefined {
  const first = destinations[0];
  if (!first || /^(oci|oci-archive|docker-archive|dir|tar):/.test(first)) return undefined;
  try {
    const ref = parseReference(first);
    return `${ref.registry}/${ref.repository}/cache`;
  } catch (err) {
    if (isGantryError(err)) return undefined;
    throw err;
  }
}

/** Opens a Kaniko `--cache-repo` value: `oci:/path` is an OCI layout, anything else a registry repository. */
export function openCacheRepo(spec: string, opts: RegistryCacheOptions = {}): ImageCacheStore {
  if (spec.startsWith('oci:')) {
    const dir = spec.slice('oci:'.length);
    if (!dir) throw new GantryError('INVALID_ARGUMENT', `--cache-repo ${spec}: missing directory after oci:`, { hint: 'use oci:/path/to/cache-layout' });
    return ociLayoutCacheStore(dir, opts);
  }
  return registryCacheStore(spec, opts);
}
