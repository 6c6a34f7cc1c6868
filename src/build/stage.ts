/**
 * One stage's image while it is being built: config, layers (base ones by reference, new ones
 * as blob files) and, only when a step needs files, a root filesystem built by unpacking the
 * layers in order. The root is a cache of the layers: a step that writes files either writes
 * into it directly (and its layer is then "applied"), or writes elsewhere (--link) and the root
 * catches up the next time it is needed.
 */
import { mkdir } from 'node:fs/promises';
import { posix } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { decompressStream, readTar } from '../archive/index.js';
import { unpackLayer, unpackLayerStream } from '../fs/unpack/index.js';
import { layerCompression } from '../oci/mediatype.js';
import type { ImageConfig } from '../oci/types.js';
import type { InplaceSandbox } from '../run/index.js';
import { wrapError } from '../util/errors.js';
import type { ResolvedImage } from './base.js';
import type { ImageLayer } from './layers.js';
import type { Owner } from './users.js';

const ownership: 'preserve' | 'squash' = typeof process.getuid === 'function' && process.getuid() === 0 ? 'preserve' : 'squash';

export class RootFs {
  protected applied = 0;
  private created = false;
  /**
   * Owners as the layers say, for paths unpacked without being able to chown (not root): new
   * layers must record the image's owners for the parent directories they include, not ours.
   */
  readonly owners = new Map<string, Owner>();

  constructor(readonly dir: string) {}

  /** The owner a path has in the image, when the disk cannot tell (see `owners`). */
  ownerOf(rel: string): Owner | undefined {
    return ownership === 'squash' ? this.owners.get(rel) : undefined;
  }

  private async unpack(layer: ImageLayer, signal?: AbortSignal): Promise<void> {
    const blob = await layer.open(signal);
    const opts = { ownership, layerName: layer.descriptor.digest, ...(signal ? { signal } : {}) };
    if (ownership === 'preserve') {
      await unpackLayerStream(this.dir, blob, opts);
      return;
    }
    const plain = await decompressStream(layerCompression(layer.descriptor.mediaType) ?? 'gzip');
    pipeline(blob, plain, () => {});
    const owners = this.owners;
    const recorded = async function* (input: Readable) {
      for await (const e of readTar(input)) {
        const name = posix.normalize('/' + e.header.name).slice(1).replace(/\/+$/, '');
        if (name !== '' && !posix.basename(name).startsWith('.wh.')) owners.set(name, { uid: e.header.uid, gid: e.header.gid });
        yield e;
      }
    };
    await unpackLayer(this.dir, recorded(plain), opts);
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

  constructor(private readonly sandbox: InplaceSandbox) {
    super(sandbox.root);
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
        await this.sandbox.unpack(readTar(plain), { layerName: layer.descriptor.digest, ...(signal ? { signal } : {}) });
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
