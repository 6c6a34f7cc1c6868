/**
 * Export of the built image: an ImageReader over the new manifest/config and the layers (new
 * ones from blob files, base ones streamed from where the base came from, never recompressed),
 * copied with src/oci's copyImage to every output. Manifests use OCI media types, as BuildKit's
 * image exporter does by default; base layers keep their bytes and digests, only their media type
 * is written in OCI form.
 *
 * Pushes overlap the build: LayerUploads starts uploading each new layer of the image to every
 * destination as soon as its blob is written, while later steps run; pushImage then only waits
 * for those, mounts or skips the rest, and writes the config and the manifest last.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { toRawManifest } from '../oci/canonical.js';
import { configBlob } from '../oci/config.js';
import { copyImage, type CopyOptions } from '../oci/copy.js';
import { DockerArchiveWriter } from '../oci/dockerarchive-writer.js';
import { OciLayoutWriter } from '../oci/layout.js';
import { toOciMediaType } from '../oci/mediatype.js';
import type { ImageReader, ImageWriter } from '../oci/store.js';
import { MediaType, type Descriptor, type ImageConfig, type ImageManifest, type RawManifest } from '../oci/types.js';
import { parseReference, RegistryImageWriter, type Reference, type RegistryClient, type Repository } from '../registry/index.js';
import type { BuildPlan } from '../dockerfile/index.js';
import { GantryError, wrapError } from '../util/errors.js';
import { limiter } from '../util/limit.js';
import type { Logger } from '../util/logger.js';
import type { ImageLayer } from './layers.js';

/** The finished image, readable by copyImage. */
export class BuiltImage implements ImageReader {
  readonly name = 'built image';
  readonly manifest: RawManifest;
  readonly config: { bytes: Buffer; descriptor: Descriptor };
  private readonly layers = new Map<string, ImageLayer>();

  constructor(config: ImageConfig, layers: readonly ImageLayer[]) {
    this.config = configBlob(config, MediaType.OciConfig);
    const doc: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: this.config.descriptor,
      layers: layers.map((l) => {
        const d: Descriptor = { mediaType: toOciMediaType(l.descriptor.mediaType), digest: l.descriptor.digest, size: l.descriptor.size };
        if (l.descriptor.urls) d.urls = l.descriptor.urls;
        return d;
      }),
    };
    for (const l of layers) this.layers.set(l.descriptor.digest, l);
    this.manifest = toRawManifest(doc);
  }

  /** Digests of the image's layers, in no particular order. */
  layerDigests(): string[] {
    return [...this.layers.keys()];
  }

  /** Layers that came from the layer cache, with the repository their blob lives in. */
  cachedLayers(): Array<{ layer: ImageLayer; source: Repository }> {
    return [...this.layers.values()].flatMap((l) => {
      const source = (l as ImageLayer & { source?: Repository }).source;
      return source ? [{ layer: l, source }] : [];
    });
  }

  async getManifest(): Promise<RawManifest> {
    return this.manifest;
  }

  async getManifestByDescriptor(desc: Descriptor): Promise<RawManifest> {
    if (desc.digest !== this.manifest.digest) throw new GantryError('NOT_FOUND', `built image has no manifest ${desc.digest}`);
    return this.manifest;
  }

  async openBlob(desc: Descriptor, signal?: AbortSignal): Promise<Readable> {
    if (desc.digest === this.config.descriptor.digest) return Readable.from([this.config.bytes]);
    const layer = this.layers.get(desc.digest);
    if (!layer) throw new GantryError('NOT_FOUND', `built image has no blob ${desc.digest}`);
    return layer.open(signal);
  }
}

/** Tag to use for a reference: its tag, or none when it is pinned by digest only. */
function tagsOf(ref: Reference): string[] {
  return ref.tag ? [ref.tag] : ref.digest ? [] : ['latest'];
}

async function writeTo(image: BuiltImage, writer: ImageWriter, tags: string[], opts: Partial<CopyOptions>): Promise<void> {
  try {
    await copyImage(image, undefined, writer, { tags, ...opts });
    await writer.commit?.();
  } catch (err) {
    await writer.abort?.().catch(() => undefined);
    throw err;
  }
}

export async function exportOciLayout(image: BuiltImage, dir: string, tags: string[], signal?: AbortSignal): Promise<void> {
  const writer = await OciLayoutWriter.create(dir);
  await writeTo(image, writer, tags, signal ? { signal } : {});
}

export async function exportDockerArchive(image: BuiltImage, file: string, tags: string[], signal?: AbortSignal): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const writer = await DockerArchiveWriter.create(file);
  await writeTo(image, writer, tags, signal ? { signal } : {});
}

/** Stages whose layers end up in the image: the target and the stages it is built FROM, in turn. */
export function imageStages(plan: Pick<BuildPlan, 'stages' | 'target'>): Set<number> {
  const out = new Set<number>();
  for (let i: number | undefined = plan.target; i !== undefined && !out.has(i); ) {
    out.add(i);
    const base: BuildPlan['stages'][number]['base'] | undefined = plan.stages[i]?.base;
    i = base?.kind === 'stage' ? base.index : undefined;
  }
  return out;
}

export interface LayerUploadsOptions {
  client: RegistryClient;
  destinations: readonly string[];
  /** Only layers of these stages are uploaded (others never reach the image); all when unset. */
  stages?: ReadonlySet<number>;
  /** Uploads in flight at once, over all destinations (default 4). */
  concurrency?: number;
  signal?: AbortSignal;
}

interface Upload {
  done: Promise<void>;
  error?: unknown;
}

/**
 * New layers uploaded to the push destinations while the build goes on. Each layer goes once to
 * each repository (two tags of one repository share the upload), a few at a time. A failure is
 * kept, not thrown: the push that needs the layer reports it (and retries, as any failed push).
 */
export class LayerUploads {
  private readonly writers = new Map<string, RegistryImageWriter>();
  private readonly uploads = new Map<string, Upload>();
  private readonly stop = new AbortController();
  private readonly signal: AbortSignal;
  private readonly limit: <T>(fn: () => Promise<T>) => Promise<T>;

  constructor(private readonly opts: LayerUploadsOptions) {
    this.signal = opts.signal ? AbortSignal.any([opts.signal, this.stop.signal]) : this.stop.signal;
    this.limit = limiter(opts.concurrency ?? 4);
    for (const d of opts.destinations) {
      const w = new RegistryImageWriter({ reference: parseReference(d), client: opts.client });
      if (!this.writers.has(w.name)) this.writers.set(w.name, w);
    }
  }

  /** Starts uploading `layer` (written by `stage`) to every destination repository. */
  start(layer: ImageLayer, stage?: number): void {
    if (this.stop.signal.aborted) return;
    if (stage !== undefined && this.opts.stages && !this.opts.stages.has(stage)) return;
    for (const w of this.writers.values()) {
      const key = `${w.name}@${layer.descriptor.digest}`;
      if (this.uploads.has(key)) continue;
      const up: Upload = { done: Promise.resolve() };
      up.done = this.limit(async () => {
        if (this.signal.aborted) throw new GantryError('ABORTED', 'upload cancelled');
        if (await w.hasBlob(layer.descriptor, this.signal)) return;
        await w.writeBlob(layer.descriptor, () => layer.open(this.signal), { signal: this.signal });
      }).catch((err: unknown) => {
        up.error = wrapError(err, `uploading layer ${layer.descriptor.digest} to ${w.name}`);
      });
      this.uploads.set(key, up);
    }
  }

  /** Waits for the uploads of `digests` to `destination`; throws the first that failed. */
  async wait(destination: string, digests: Iterable<string>): Promise<void> {
    const w = this.writerOf(destination);
    if (!w) return;
    const ups = [...digests].flatMap((d) => {
      const up = this.uploads.get(`${w.name}@${d}`);
      return up ? [up] : [];
    });
    await Promise.all(ups.map((u) => u.done));
    const failed = ups.find((u) => u.error !== undefined);
    if (failed) throw failed.error;
  }

  /** Stops what is still uploading (the build failed, or the layer is not needed) and waits for it. */
  async cancel(): Promise<void> {
    this.stop.abort();
    await Promise.all([...this.uploads.values()].map((u) => u.done));
  }

  private writerOf(destination: string): RegistryImageWriter | undefined {
    const ref = parseReference(destination);
    return [...this.writers.values()].find((w) => w.reference.registry === ref.registry && w.reference.repository === ref.repository);
  }
}

export interface PushOptions {
  client: RegistryClient;
  /** Retries of the whole push after the first attempt, 1 s, 2 s, 4 s... apart. */
  retries: number;
  /** Where base layers came from, for cross-repository mounts on the same registry. */
  mountFrom?: Repository;
  logger: Logger;
  signal?: AbortSignal;
  /** Base of the backoff in ms (tests shorten it). */
  backoffMs?: number;
  /** Layers already being uploaded during the build: the first attempt waits for them. */
  uploads?: LayerUploads;
}

/** Cached layers mounted (or, failing that, streamed) into a push destination at once. */
const MOUNT_CONCURRENCY = 4;

/** Pushes to one destination, retrying the whole push with exponential backoff. */
export async function pushImage(image: BuiltImage, destination: string, opts: PushOptions): Promise<string> {
  const ref = parseReference(destination);
  const writer = new RegistryImageWriter({ reference: ref, client: opts.client });
  const copyOpts: Partial<CopyOptions> = {};
  if (opts.signal) copyOpts.signal = opts.signal;
  if (opts.mountFrom) copyOpts.mountFrom = opts.mountFrom;
  for (let attempt = 0; ; attempt++) {
    try {
      // What the last attempt saw may be why it failed (a mount the registry accepted, then a
      // manifest PUT calling the blob unknown): a retry asks the registry again.
      if (attempt > 0) opts.client.forgetBlobs(ref.registry, ref.repository);
      // Side by side with the mounts below: the early uploads finishing (a failed one fails this
      // attempt; the retry uploads whatever is still missing) and the config, new with every
      // build. copyImage then finds every blob present and only the manifest goes, strictly last.
      const early = Promise.allSettled([
        attempt === 0 && opts.uploads ? opts.uploads.wait(destination, image.layerDigests()) : Promise.resolve(),
        writer.writeBlob(image.config.descriptor, async () => Readable.from([image.config.bytes]), opts.signal ? { signal: opts.signal } : {}),
      ]);
      // Cached layers on the destination's registry are mounted from the cache repository
      // instead of streamed through us; copyImage then finds them present. A few at a time: a
      // layer the registry will not mount streams through us, and fifty such must not open fifty
      // uploads. Once one fails the attempt is lost, so those still queued are not started.
      const limit = limiter(MOUNT_CONCURRENCY);
      let failed = false;
      const mounts = await Promise.allSettled(
        image.cachedLayers().map(({ layer, source }) =>
          limit(async () => {
            if (failed || source.registry !== ref.registry || source.repository === ref.repository) return;
            try {
              if (await writer.hasBlob(layer.descriptor, opts.signal)) return;
              await writer.writeBlob(layer.descriptor, () => layer.open(opts.signal), { ...(opts.signal ? { signal: opts.signal } : {}), mountFrom: source });
            } catch (err) {
              failed = true;
              throw err;
            }
          }),
        ),
      );
      const rejected = [...(await early), ...mounts].find((m): m is PromiseRejectedResult => m.status === 'rejected');
      if (rejected) throw rejected.reason;
      await writeTo(image, writer, tagsOf(ref), copyOpts);
      return image.manifest.digest;
    } catch (err) {
      if (attempt >= opts.retries || opts.signal?.aborted) throw wrapError(err, `pushing ${destination}`);
      const delay = (opts.backoffMs ?? 1000) * 2 ** attempt;
      opts.logger.log('warn', `pushing ${destination} failed (${(err as Error).message}); retrying in ${(delay / 1000).toFixed(1)}s (${attempt + 1}/${opts.retries})`);
      await sleep(delay, undefined, opts.signal ? { signal: opts.signal } : undefined);
    }
  }
}

/** `registry/repository` as Kaniko's digest files name it. */
function repoName(ref: Reference): string {
  return `${ref.registry}/${ref.repository}`;
}

export interface DigestFiles {
  digestFile?: string;
  imageNameWithDigestFile?: string;
  imageNameTagWithDigestFile?: string;
}

/** Kaniko's digest files: the digest; `repo@digest` lines; `repo:tag@digest` lines. */
export async function writeDigestFiles(files: DigestFiles, digest: string, destinations: readonly string[]): Promise<void> {
  const write = async (path: string, text: string) => {
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, text);
    } catch (err) {
      throw wrapError(err, `writing ${path}`);
    }
  };
  const refs = destinations.map((d) => parseReference(d));
  if (files.digestFile) await write(files.digestFile, digest);
  if (files.imageNameWithDigestFile) await write(files.imageNameWithDigestFile, refs.map((r) => `${repoName(r)}@${digest}\n`).join(''));
  if (files.imageNameTagWithDigestFile) {
    await write(files.imageNameTagWithDigestFile, refs.map((r) => `${repoName(r)}:${r.tag ?? 'latest'}@${digest}\n`).join(''));
  }
}

/** `$BUILDER_OUTPUT/images`: one `{"name":…,"digest":…}` line per pushed reference. */
export async function writeBuilderOutput(dir: string, pushed: ReadonlyArray<{ reference: string; digest: string }>): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'images'), pushed.map((p) => JSON.stringify({ name: p.reference, digest: p.digest }) + '\n').join(''));
  } catch (err) {
    throw wrapError(err, `writing ${join(dir, 'images')}`);
  }
}
