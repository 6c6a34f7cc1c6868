/**
 * Cache entries stored as images, Kaniko's layout: one single-layer image per key in a cache
 * repository, tagged with the key's hex. Its config records created, the diff_id and the history
 * entry, as Kaniko's does. The same facts are copied into manifest annotations so a lookup costs
 * one manifest GET: no config or layer download until the caller opens the layer.
 */
import { Readable } from 'node:stream';
import { GantryError, isGantryError } from '../util/errors.js';
import { configBlob } from '../oci/config.js';
import { toRawManifest } from '../oci/canonical.js';
import type { ImageReader, ImageWriter } from '../oci/store.js';
import { MediaType, type Descriptor, type History, type ImageConfig, type ImageManifest, type RawManifest } from '../oci/types.js';
import { keyTag } from './keys.js';
import { QueuedCacheStore, type CacheEntry, type CachedLayer, type StoreCommonOptions } from './store.js';

export const ANNOTATION = {
  created: 'org.opencontainers.image.created',
  version: 'dev.gantry.cache.version',
  key: 'dev.gantry.cache.key',
  diffId: 'dev.gantry.cache.diff-id',
  history: 'dev.gantry.cache.history',
  extras: 'dev.gantry.cache.extras',
} as const;

/** Version of the cache image format (not of the key scheme, which is part of the key itself). */
export const CACHE_IMAGE_VERSION = '1';

/** The manifest, config and their bytes of the cache image for one entry. */
export function cacheImage(key: string, entry: CacheEntry, created: Date): { manifest: RawManifest; config: { bytes: Buffer; descriptor: Descriptor } } {
  const createdAt = created.toISOString();
  const platform = entry.platform ?? { architecture: 'amd64', os: 'linux' };
  const cfg: ImageConfig = {
    created: createdAt,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {},
    rootfs: { type: 'layers', diff_ids: [entry.diffId] },
    history: [{ ...entry.history, created: entry.history.created ?? createdAt }],
  };
  if (entry.configExtras) cfg['dev.gantry.cache.extras'] = entry.configExtras;
  const config = configBlob(cfg, MediaType.OciConfig);
  const annotations: Record<string, string> = {
    [ANNOTATION.created]: createdAt,
    [ANNOTATION.version]: CACHE_IMAGE_VERSION,
    [ANNOTATION.key]: key,
    [ANNOTATION.diffId]: entry.diffId,
    [ANNOTATION.history]: JSON.stringify(entry.history),
  };
  if (entry.configExtras) annotations[ANNOTATION.extras] = JSON.stringify(entry.configExtras);
  const layer: Descriptor = { mediaType: entry.layer.mediaType, digest: entry.layer.digest, size: entry.layer.size };
  const doc: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: config.descriptor, layers: [layer], annotations };
  return { manifest: toRawManifest(doc), config };
}

interface ParsedEntry {
  layer: Descriptor;
  diffId: string;
  history: History;
  createdAt: Date;
  configExtras?: Record<string, unknown>;
}

function parseJsonObject(text: string, what: string): Record<string, unknown> {
  const v = JSON.parse(text) as unknown;
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new GantryError('MANIFEST_INVALID', `${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * Reads an entry from a cache image: from our annotations when present, otherwise from the config
 * (images written by Kaniko or by hand), which costs one more small blob read.
 */
async function readEntry(reader: ImageReader, raw: RawManifest, what: string, signal?: AbortSignal): Promise<ParsedEntry> {
  const doc = parseJsonObject(raw.bytes.toString('utf8'), `${what}: manifest`) as Partial<ImageManifest>;
  if (!Array.isArray(doc.layers) || doc.layers.length === 0 || !doc.config) {
    throw new GantryError('MANIFEST_INVALID', `${what}: not a cache image (expected an image manifest with a layer)`);
  }
  const layer = doc.layers[doc.layers.length - 1]!;
  const a = doc.annotations ?? {};
  if (a[ANNOTATION.diffId] && a[ANNOTATION.created] && a[ANNOTATION.history]) {
    const out: ParsedEntry = {
      layer,
      diffId: a[ANNOTATION.diffId]!,
      history: JSON.parse(a[ANNOTATION.history]!) as History,
      createdAt: new Date(a[ANNOTATION.created]!),
    };
    if (a[ANNOTATION.extras]) out.configExtras = JSON.parse(a[ANNOTATION.extras]!) as Record<string, unknown>;
    return out;
  }
  const chunks: Buffer[] = [];
  for await (const c of await reader.openBlob(doc.config, signal)) chunks.push(c as Buffer);
  const cfg = parseJsonObject(Buffer.concat(chunks).toString('utf8'), `${what}: config`) as Partial<ImageConfig>;
  const diffIds = cfg.rootfs?.diff_ids ?? [];
  const history = (cfg.history ?? []).filter((h) => !h.empty_layer);
  const diffId = diffIds[diffIds.length - 1];
  if (!diffId) throw new GantryError('CONFIG_INVALID', `${what}: config has no diff_ids`);
  const out: ParsedEntry = { layer, diffId, history: history[history.length - 1] ?? {}, createdAt: new Date(cfg.created ?? NaN) };
  const extras = cfg['dev.gantry.cache.extras'];
  if (extras && typeof extras === 'object') out.configExtras = extras as Record<string, unknown>;
  return out;
}

/** Where an image cache reads and writes: a registry repository or an OCI layout. */
export interface ImageCacheBackend {
  readonly name: string;
  /** A reader for lookups; undefined when the cache does not exist yet (every lookup misses). */
  reader(): Promise<ImageReader | undefined>;
  /** Writes one cache image: blobs, then the manifest under `tag`, then commits. */
  writeImage(write: (writer: ImageWriter) => Promise<void>): Promise<void>;
  /** Where blobs live, for cross-repo mounts by a later push. */
  source?: { registry: string; repository: string };
  close?(): Promise<void>;
}

/**
 * Up to this size a layer is uploaded without asking first whether the cache already has it: the
 * upload costs about what the question does (a round trip), and it is on the build's critical path.
 */
const SMALL_BLOB = 1 << 20;

export class ImageCacheStore extends QueuedCacheStore {
  readonly name: string;

  constructor(
    private readonly backend: ImageCacheBackend,
    opts: StoreCommonOptions = {},
  ) {
    super(opts);
    this.name = backend.name;
  }

  async get(key: string, signal?: AbortSignal): Promise<CachedLayer | undefined> {
    const tag = keyTag(key);
    const what = `cache entry ${this.name}:${tag}`;
    let reader: ImageReader | undefined;
    let entry: ParsedEntry;
    if (this.disabled) return undefined;
    try {
      reader = await this.backend.reader();
      if (!reader) return undefined;
      const raw = await reader.getManifest(tag, signal);
      entry = await readEntry(reader, raw, what, signal);
    } catch (err) {
      if (signal?.aborted) throw err;
      if (isGantryError(err, 'NOT_FOUND')) return undefined;
      return this.readFailed(key, err);
    }
    if (this.expired(entry.createdAt)) {
      this.logger.log('debug', `cache: ${what} expired (created ${entry.createdAt.toISOString()})`);
      return undefined;
    }
    const r = reader;
    const hit: CachedLayer = { key, ...entry, open: (s?: AbortSignal) => r.openBlob(entry.layer, s) };
    if (this.backend.source) hit.source = this.backend.source;
    return hit;
  }

  protected async write(key: string, entry: CacheEntry, blobSource: () => Promise<Readable>): Promise<void> {
    const { manifest, config } = cacheImage(key, entry, entry.createdAt ?? this.now());
    await this.backend.writeImage(async (w) => {
      // Layer and config side by side (each is a few round trips); the manifest strictly after both.
      const blobs = await Promise.allSettled([
        (async () => {
          if (entry.mountFrom || entry.layer.size > SMALL_BLOB) {
            if (await w.hasBlob(entry.layer)) return;
          }
          await w.writeBlob(entry.layer, blobSource, entry.mountFrom ? { mountFrom: entry.mountFrom } : {});
        })(),
        // A cache entry's config is new almost always (its history names the step): no HEAD first.
        w.writeBlob(config.descriptor, async () => Readable.from([config.bytes])),
      ]);
      const failed = blobs.find((b): b is PromiseRejectedResult => b.status === 'rejected');
      if (failed) throw failed.reason;
      await w.putManifest(manifest, [keyTag(key)]);
    });
  }

  override async close(): Promise<void> {
    await super.close();
    await this.backend.close?.();
  }
}
