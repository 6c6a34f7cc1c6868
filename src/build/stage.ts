/**
 * One stage's image while it is being built: config, layers (base ones by reference, new ones
 * as blob files) and, only when a step needs files, a root filesystem built by unpacking the
 * layers in order. The root is a cache of the layers: a step that writes files either writes
 * into it directly (and its layer is then "applied"), or writes elsewhere (--link) and the root
 * catches up the next time it is needed.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { decompressStream, readTar, type TarEntry } from '../archive/index.js';
import { recordIndex, type IndexEntry, type LayerIndexStore } from '../fs/index.js';
import { unpackLayer, unpackLayerStream } from '../fs/unpack/index.js';
import type { UnpackedLayerStore } from '../cache/layer-store.js';
import { layerCompression } from '../oci/mediatype.js';
import type { ImageConfig } from '../oci/types.js';
import type { InplaceSandbox } from '../run/index.js';
import { DigestingStream, parseDigest } from '../util/digest.js';
import { isGantryError, wrapError } from '../util/errors.js';
import type { ResolvedImage } from './base.js';
import { linkStoredLayer, parseNotes, unpackIntoStore } from './layer-farm.js';
import type { ImageLayer } from './layers.js';
import type { Owner } from './users.js';

const ownership: 'preserve' | 'squash' = typeof process.getuid === 'function' && process.getuid() === 0 ? 'preserve' : 'squash';

/** Per process, per (store, root): whether a file of the store can be hard-linked into the root. */
const linkProbes = new Map<string, Promise<boolean>>();

/**
 * Links a fresh file from `from` into `to` and removes both: the only reliable answer (two bind
 * mounts of one filesystem share st_dev, yet link() between them fails with EXDEV). The root's
 * times are put back: the probe must not show in the image.
 */
export function canHardLink(from: string, to: string): Promise<boolean> {
  const key = `${from}\0${to}`;
  let probe = linkProbes.get(key);
  if (!probe) {
    probe = (async () => {
      // A `.tmp-` name: the store removes it if we die before cleaning up.
      const name = `.tmp-link-probe-${process.pid}-${randomBytes(4).toString('hex')}`;
      const before = await stat(to);
      try {
        await writeFile(join(from, name), '', { flag: 'wx', mode: 0o600 });
        await link(join(from, name), join(to, name));
        return true;
      } catch {
        return false;
      } finally {
        await rm(join(to, name), { force: true }).catch(() => undefined);
        await rm(join(from, name), { force: true }).catch(() => undefined);
        await utimes(to, before.atime, before.mtime).catch(() => undefined);
      }
    })().catch(() => false);
    linkProbes.set(key, probe);
  }
  return probe;
}

export class RootFs {
  protected applied = 0;
  private created = false;
  /**
   * Owners as the layers say, for paths unpacked without being able to chown (not root): new
   * layers must record the image's owners for the parent directories they include, not ours.
   */
  readonly owners = new Map<string, Owner>();

  /** Whether files of the layer store can be hard-linked into the root; asked once. */
  private linkable?: Promise<boolean>;

  constructor(
    readonly dir: string,
    /** Where the index of every layer unpacked here is recorded (see path-root.ts). */
    protected readonly index?: LayerIndexStore,
    /**
     * Unpacked layers kept across builds: layers this build did not write are unpacked there once
     * and hard-linked into the root (layer-farm.ts). Only when owners are preserved.
     */
    protected readonly unpacked?: UnpackedLayerStore,
  ) {}

  /** Whether the root already holds the first `count` layers (no unpacking needed). */
  isCurrent(count: number): boolean {
    // An empty stage (FROM scratch) costs nothing to bring up to date.
    return count === 0 || (this.created && this.applied >= count);
  }

  /**
   * Entries of a layer's uncompressed tar, recording its index when it is not known yet. `done()`
   * (after the entries were consumed) files the index only when the tar's digest is the layer's
   * diffID: the image config says which diffID a layer has, and a hostile image claiming another
   * image's diffID must not put its files into the index later builds trust.
   */
  protected recorded(layer: ImageLayer, plain: Readable): { entries: AsyncIterable<TarEntry>; done(): Promise<void> } {
    const index = this.index;
    let algorithm: string | undefined;
    try {
      algorithm = parseDigest(layer.diffId).algorithm;
    } catch {
      algorithm = undefined;
    }
    if (!index || !algorithm || index.get(layer.diffId)) return { entries: readTar(plain), done: async () => {} };
    const digester = new DigestingStream(algorithm);
    const ended = new Promise<boolean>((res) => {
      digester.once('end', () => res(true));
      digester.once('error', () => res(false));
      digester.once('close', () => res(digester.readableEnded));
    });
    plain.on('error', (e: Error) => digester.destroy(e));
    plain.pipe(digester);
    const out: IndexEntry[] = [];
    return {
      entries: recordIndex(readTar(digester), out),
      done: async () => {
        if (!digester.readableEnded) digester.resume();
        if ((await ended) && digester.digest === layer.diffId) index.put(layer.diffId, { entries: out });
      },
    };
  }

  /** Entries of a tar the caller verifies itself, recording the index; `put()` only once it was verified. */
  private recordedUnverified(layer: ImageLayer, entries: AsyncIterable<TarEntry>): { entries: AsyncIterable<TarEntry>; put(): void } {
    const index = this.index;
    if (!index || index.get(layer.diffId)) return { entries, put: () => {} };
    const out: IndexEntry[] = [];
    return { entries: recordIndex(entries, out), put: () => index.put(layer.diffId, { entries: out }) };
  }

  /** The owner a path has in the image, when the disk cannot tell (see `owners`). */
  ownerOf(rel: string): Owner | undefined {
    return ownership === 'squash' ? this.owners.get(rel) : undefined;
  }

  /**
   * Applies a layer from the store of unpacked layers, unpacking it there first when no build did;
   * false when the store cannot serve it (the caller then unpacks the blob as before).
   */
  private async fromStore(layer: ImageLayer, signal?: AbortSignal): Promise<boolean> {
    const store = this.unpacked;
    if (!store || ownership !== 'preserve' || layer.file !== undefined) return false;
    this.linkable ??= store.prepare().then(
      async () => {
        const ok = await canHardLink(store.dir, this.dir);
        if (!ok) store.logger.log('debug', `layer store: not used for ${this.dir}: files of ${store.dir} cannot be hard-linked there (another filesystem or mount)`);
        return ok;
      },
      () => false,
    );
    if (!(await this.linkable)) return false;
    const started = performance.now();
    let path: string;
    let notes: ReturnType<typeof parseNotes>;
    for (let attempt = 0; ; attempt++) {
      let recorded: (() => void) | undefined;
      try {
        const stored = await store.lookup(layer.diffId);
        // A stored layer whose index is lost is unpacked from its blob once more, which records it.
        if (this.index && !this.index.get(layer.diffId) && stored) return false;
        // The first time this machine meets a layer it is unpacked as before (see seenBefore).
        if (!stored && store.storeOnSecondSight && !(await store.seenBefore(layer.diffId))) return false;
        path = await store.ensure(layer.diffId, () => layer.open(signal), signal, async (dir, tar, sig) => {
          const rec = this.recordedUnverified(layer, readTar(tar));
          const unpackedNotes = await unpackIntoStore(dir, rec.entries, { layerName: layer.descriptor.digest, ...(sig ? { signal: sig } : {}) });
          recorded = rec.put;
          return unpackedNotes;
        });
      } catch (err) {
        if (isGantryError(err, 'ABORTED') || signal?.aborted) throw err;
        store.logger.log('debug', `layer store: ${(err as Error).message}; unpacking ${layer.diffId} from its blob instead`);
        return false;
      }
      // ensure() resolves only once the content matched the diffID: the index may be filed.
      recorded?.();
      notes = parseNotes(await store.notes(path));
      if (notes) break;
      // Unreadable notes (damaged, or another version's): unpack the layer into the store again, once.
      if (attempt > 0) return false;
      store.logger.log('debug', `layer store: the notes of ${layer.diffId} are unreadable; unpacking it again`);
      await store.discard(layer.diffId).catch(() => undefined);
    }
    if (notes.unsupported) {
      store.logger.log('debug', `layer store: ${notes.unsupported} in ${layer.diffId}: unpacking it from its blob`);
      return false;
    }
    try {
      const s = await linkStoredLayer(path, this.dir, notes, signal);
      store.logger.log('debug', `layer store: ${layer.diffId} linked into ${this.dir} (${s.linked} links, ${s.dirs} dirs, ${s.symlinks} symlinks) in ${(performance.now() - started).toFixed(0)}ms`);
      return true;
    } catch (err) {
      if (isGantryError(err, 'ABORTED') || signal?.aborted) throw err;
      // Unpacking the blob over the partly linked root still gives the right root: every entry replaces what is there.
      store.logger.log('warn', `layer store: linking ${layer.diffId} failed (${(err as Error).message}); unpacking it from its blob instead`);
      return false;
    }
  }

  private async unpack(layer: ImageLayer, signal?: AbortSignal): Promise<void> {
    if (await this.fromStore(layer, signal)) return;
    const blob = await layer.open(signal);
    const opts = { ownership, layerName: layer.descriptor.digest, ...(signal ? { signal } : {}) };
    if (ownership === 'preserve' && (!this.index || this.index.get(layer.diffId))) {
      await unpackLayerStream(this.dir, blob, opts);
      return;
    }
    const plain = await decompressStream(layerCompression(layer.descriptor.mediaType) ?? 'gzip');
    pipeline(blob, plain, () => {});
    const rec = this.recorded(layer, plain);
    if (ownership === 'preserve') {
      await unpackLayer(this.dir, rec.entries, opts);
      await rec.done();
      return;
    }
    const owners = this.owners;
    const withOwners = async function* (input: AsyncIterable<TarEntry>) {
      for await (const e of input) {
        const name = posix.normalize('/' + e.header.name).slice(1).replace(/\/+$/, '');
        if (name !== '' && !posix.basename(name).startsWith('.wh.')) owners.set(name, { uid: e.header.uid, gid: e.header.gid });
        yield e;
      }
    };
    await unpackLayer(this.dir, withOwners(rec.entries), opts);
    await rec.done();
  }

  /** Unpacks the layers not yet in the root, in order. */
  async catchUp(layers: readonly ImageLayer[], signal?: AbortSignal): Promise<string> {
    if (!this.created) {
      await mkdir(this.dir, { recursive: true });
      this.created = true;
    }
    for (; this.applied < layers.length; this.applied++) {
      const layer = layers[this.applied]!;
      try {
        await this.unpack(layer, signal);
      } catch (err) {
        throw wrapError(err, `unpacking layer ${this.applied + 1}/${layers.length} (${layer.descriptor.digest})`);
      }
    }
    return this.dir;
  }

  /** The caller wrote the effect of every layer so far into the root itself. */
  markApplied(count: number, _opts: { snapshotted?: boolean } = {}): void {
    this.applied = count;
  }
}

/**
 * A stage's root when RUN goes through the inplace sandbox: the sandbox's root (`/` in the
 * executor image), shared by every stage in turn. The first catch-up wipes what the previous
 * stage left, then layers are unpacked by the sandbox (which skips its ignore list) and the
 * snapshot baseline is retaken; a step that writes into the root itself (COPY, WORKDIR) retakes
 * it too (markApplied), a RUN's snapshot already is the new baseline. Other stages' files are
 * never read from here: a finished stage is unpacked into its own directory when needed.
 */
export class InplaceRootFs extends RootFs {
  private wiped = false;

  constructor(
    private readonly sandbox: InplaceSandbox,
    index?: LayerIndexStore,
  ) {
    super(sandbox.root, index);
  }

  override isCurrent(count: number): boolean {
    return this.wiped && this.applied >= count;
  }

  override ownerOf(): Owner | undefined {
    return undefined;
  }

  override async catchUp(layers: readonly ImageLayer[], signal?: AbortSignal): Promise<string> {
    let changed = false;
    if (!this.wiped) {
      await this.sandbox.wipeRoot();
      this.wiped = true;
      changed = true;
    }
    for (; this.applied < layers.length; this.applied++) {
      const layer = layers[this.applied]!;
      changed = true;
      try {
        const blob = await layer.open(signal);
        const plain = await decompressStream(layerCompression(layer.descriptor.mediaType) ?? 'gzip');
        pipeline(blob, plain, () => {});
        const rec = this.recorded(layer, plain);
        await this.sandbox.unpack(rec.entries, { layerName: layer.descriptor.digest, ...(signal ? { signal } : {}) });
        await rec.done();
      } catch (err) {
        throw wrapError(err, `unpacking layer ${this.applied + 1}/${layers.length} (${layer.descriptor.digest}) onto ${this.dir}`);
      }
    }
    if (changed) this.sandbox.rebaseline();
    return this.dir;
  }

  override markApplied(count: number, opts: { snapshotted?: boolean } = {}): void {
    super.markApplied(count);
    if (!opts.snapshotted) this.sandbox.rebaseline();
  }
}

export interface StageImage {
  config: ImageConfig;
  layers: ImageLayer[];
  /** Where the oldest layers came from (for pulls and cross-repository mounts). */
  base?: ResolvedImage;
}

/** Layers of a resolved base image, read from its source on demand. */
export function baseLayers(base: ResolvedImage): ImageLayer[] {
  return base.manifest.layers.map((descriptor, i) => ({
    descriptor,
    diffId: base.config.rootfs.diff_ids[i]!,
    open: (signal?: AbortSignal) => base.reader.openBlob(descriptor, signal),
  }));
}
