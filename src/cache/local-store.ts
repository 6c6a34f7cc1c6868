/**
 * A cache in a plain directory (`--cache-to type=local,dest=DIR`, `--cache-from type=local,src=DIR`):
 * blobs under `blobs/sha256/<hex>` and one small record per key under `keys/<hex>.json`. Every
 * file appears by atomic rename, so concurrent writers (several builds sharing a CI cache volume)
 * never corrupt it and never need a lock: the last writer of a key wins with an equivalent entry.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { GantryError } from '../util/errors.js';
import { blobPath } from '../oci/descriptor.js';
import { fileSize, openVerifiedFile, writeFileAtomic, writeVerifiedFile } from '../oci/blobfile.js';
import type { Descriptor, History } from '../oci/types.js';
import { keyTag } from './keys.js';
import { QueuedCacheStore, type CacheEntry, type CachedLayer, type StoreCommonOptions } from './store.js';

const RECORD_VERSION = 1;

interface KeyRecord {
  version: number;
  key: string;
  layer: Descriptor;
  diffId: string;
  history: History;
  created: string;
  configExtras?: Record<string, unknown>;
}

export class LocalCacheStore extends QueuedCacheStore {
  readonly name: string;
  readonly dir: string;

  constructor(dir: string, opts: StoreCommonOptions = {}) {
    super(opts);
    this.dir = resolve(dir);
    this.name = `local:${this.dir}`;
  }

  private recordPath(key: string): string {
    const tag = keyTag(key);
    if (!/^[a-f0-9]{64}$/.test(tag)) throw new GantryError('INVALID_ARGUMENT', `not a cache key: ${key}`);
    return join(this.dir, 'keys', `${tag}.json`);
  }

  private blobFile(digest: string): string {
    return join(this.dir, blobPath(digest));
  }

  async get(key: string): Promise<CachedLayer | undefined> {
    let rec: KeyRecord;
    if (this.disabled) return undefined;
    try {
      let text: string;
      try {
        text = await readFile(this.recordPath(key), 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
      rec = JSON.parse(text) as KeyRecord;
      if (rec.version !== RECORD_VERSION || rec.key !== key || !rec.layer?.digest) return undefined;
      // A record whose blob was deleted (pruned by hand) is a miss, not a failure later.
      if ((await fileSize(this.blobFile(rec.layer.digest))) !== rec.layer.size) return undefined;
    } catch (err) {
      return this.readFailed(key, err);
    }
    const createdAt = new Date(rec.created);
    if (this.expired(createdAt)) return undefined;
    const file = this.blobFile(rec.layer.digest);
    const layer = rec.layer;
    const hit: CachedLayer = {
      key,
      layer,
      diffId: rec.diffId,
      history: rec.history,
      createdAt,
      open: () => openVerifiedFile(file, layer, `cached layer ${layer.digest} in ${this.name}`),
    };
    if (rec.configExtras) hit.configExtras = rec.configExtras;
    return hit;
  }

  protected async write(key: string, entry: CacheEntry, blobSource: () => Promise<Readable>): Promise<void> {
    const file = this.blobFile(entry.layer.digest);
    if ((await fileSize(file)) !== entry.layer.size) {
      await writeVerifiedFile(file, await blobSource(), entry.layer, `layer ${entry.layer.digest}`);
    }
    const rec: KeyRecord = {
      version: RECORD_VERSION,
      key,
      layer: { mediaType: entry.layer.mediaType, digest: entry.layer.digest, size: entry.layer.size },
      diffId: entry.diffId,
      history: entry.history,
      created: (entry.createdAt ?? this.now()).toISOString(),
    };
    if (entry.configExtras) rec.configExtras = entry.configExtras;
    await writeFileAtomic(this.recordPath(key), Buffer.from(JSON.stringify(rec)));
  }
}
