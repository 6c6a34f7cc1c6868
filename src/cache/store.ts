/**
 * The layer cache as the build sees it: look a step's key up, reuse the layer by descriptor, and
 * store new layers in the background. A cache can only make a build faster, never fail it: reads
 * that go wrong are misses (with a warning), writes that go wrong are warnings.
 */
import type { Readable } from 'node:stream';
import type { Descriptor, History, Platform } from '../oci/types.js';
import type { Logger } from '../util/logger.js';
import { silentLogger } from '../util/logger.js';
import { limiter } from '../util/limit.js';
import { isGantryError, type ErrorCode } from '../util/errors.js';

/**
 * Failures that will repeat for every later request of this build: after one of them the store
 * stops trying (one warning, not one network timeout per step).
 */
const PERSISTENT: readonly ErrorCode[] = ['REGISTRY_UNREACHABLE', 'UNAUTHORIZED', 'DENIED', 'CREDENTIALS'];

/** A cache hit: enough to append the layer to an image without downloading it. */
export interface CachedLayer {
  key: string;
  /** The (compressed) layer blob as stored in the cache. */
  layer: Descriptor;
  diffId: string;
  /** The history entry of the step that made the layer. */
  history: History;
  createdAt: Date;
  /** Whatever the builder stored with the layer (e.g. config changes of the step). */
  configExtras?: Record<string, unknown>;
  /** Streams the layer blob (digest-verified); only called when the files are needed. */
  open(signal?: AbortSignal): Promise<Readable>;
  /** Where the blob lives, so a push to the same registry can mount it instead of uploading. */
  source?: { registry: string; repository: string };
}

/** What `put` stores next to the blob. */
export interface CacheEntry {
  layer: Descriptor;
  diffId: string;
  history: History;
  /** Default: now. */
  createdAt?: Date;
  configExtras?: Record<string, unknown>;
  /** Recorded in the cache image's config; default linux/amd64 is only a label there. */
  platform?: Platform;
  /** Where the layer already lives on the same registry (e.g. the destination repo): mounted instead of uploaded. */
  mountFrom?: { registry: string; repository: string };
}

export type PutResult = { key: string; ok: true } | { key: string; ok: false; warning: string };

export interface CacheStore {
  /** Human name for messages: `127.0.0.1:5000/app/cache`, `oci:/cache`, `local:/dir`. */
  readonly name: string;
  /** The entry for `key`, undefined on a miss, an expired entry, or a read failure (warned). */
  get(key: string, signal?: AbortSignal): Promise<CachedLayer | undefined>;
  /**
   * Queues a write and resolves when it has finished; never rejects. `blobSource` may be called
   * more than once (retries) and must yield the whole blob each time.
   */
  put(key: string, entry: CacheEntry, blobSource: () => Promise<Readable>): Promise<PutResult>;
  /** Waits for every queued write; the results of all writes since the last flush. */
  flush(): Promise<PutResult[]>;
  close?(): Promise<void>;
}

export interface StoreCommonOptions {
  /** Entries older than this (by their recorded creation time) are misses; default 336h as Kaniko's --cache-ttl. */
  ttlMs?: number;
  /** Parallel background writes. */
  concurrency?: number;
  logger?: Logger;
  /** Clock, for tests. */
  now?: () => Date;
}

export const DEFAULT_CACHE_TTL_MS = 336 * 3_600_000;

/**
 * The queue and failure policy every store shares: writes run in the background with limited
 * concurrency, each turns failure into a warning, and flush() collects the outcomes.
 */
export abstract class QueuedCacheStore implements CacheStore {
  abstract readonly name: string;
  protected readonly ttlMs: number;
  protected readonly logger: Logger;
  protected readonly now: () => Date;
  private readonly limit: <T>(fn: () => Promise<T>) => Promise<T>;
  private pending: Array<Promise<PutResult>> = [];
  /** Set after a persistent failure: reads and writes are skipped for the rest of this store's life. */
  protected disabled: string | undefined;

  constructor(opts: StoreCommonOptions) {
    this.ttlMs = opts.ttlMs ?? DEFAULT_CACHE_TTL_MS;
    this.logger = opts.logger ?? silentLogger;
    this.now = opts.now ?? (() => new Date());
    this.limit = limiter(opts.concurrency ?? 3);
  }

  abstract get(key: string, signal?: AbortSignal): Promise<CachedLayer | undefined>;

  /** Does the write; may throw (put() turns that into a warning). */
  protected abstract write(key: string, entry: CacheEntry, blobSource: () => Promise<Readable>): Promise<void>;

  put(key: string, entry: CacheEntry, blobSource: () => Promise<Readable>): Promise<PutResult> {
    const job = this.limit(async (): Promise<PutResult> => {
      if (this.disabled) return { key, ok: false, warning: `not storing layer ${entry.layer.digest} in the cache ${this.name}: ${this.disabled}` };
      try {
        await this.write(key, entry, blobSource);
        this.logger.log('debug', `cache: stored ${key} in ${this.name}`);
        return { key, ok: true };
      } catch (err) {
        const warning = `could not store layer ${entry.layer.digest} in the cache ${this.name} (key ${key}): ${(err as Error).message}`;
        this.logger.log('warn', warning);
        this.disableOn(err);
        return { key, ok: false, warning };
      }
    });
    this.pending.push(job);
    return job;
  }

  async flush(): Promise<PutResult[]> {
    const out: PutResult[] = [];
    // Writes queued while we wait are waited for too.
    while (this.pending.length) {
      const batch = this.pending;
      this.pending = [];
      out.push(...(await Promise.all(batch)));
    }
    return out;
  }

  /** Waits for queued writes; stores holding connections close them too. */
  async close(): Promise<void> {
    await this.flush();
  }

  /** True when an entry created at `created` is past the TTL. */
  protected expired(created: Date): boolean {
    if (Number.isNaN(created.getTime())) return true;
    return created.getTime() + this.ttlMs < this.now().getTime();
  }

  /** Read failures are misses: the step runs instead, and the user learns why the cache did not help. */
  protected readFailed(key: string, err: unknown): undefined {
    this.logger.log('warn', `cache: lookup of ${key} in ${this.name} failed, treating it as a miss: ${(err as Error).message}`);
    this.disableOn(err);
    return undefined;
  }

  private disableOn(err: unknown): void {
    if (this.disabled || !PERSISTENT.some((code) => isGantryError(err, code))) return;
    this.disabled = `the cache is off for this build after: ${(err as Error).message}`;
    this.logger.log('warn', `cache: ${this.name} is not used for the rest of this build`);
  }
}
