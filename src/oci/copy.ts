import { Readable } from 'node:stream';
import { GantryError, wrapError } from '../util/errors.js';
import { allSettledOrThrow, limiter } from '../util/limit.js';
import { checkImage, parseConfig } from './config.js';
import { isConfig, isDistributable } from './mediatype.js';
import { parseManifest, type ParsedManifest } from './manifest.js';
import { formatPlatform, hostPlatform, selectManifest } from './platform.js';
import type { Descriptor, ImageManifest, Platform, RawManifest } from './types.js';
import type { ImageReader, ImageWriter, WriteBlobOptions } from './store.js';

export type CopyProgressEvent =
  | { type: 'blob-skipped'; descriptor: Descriptor; reason: 'exists' | 'foreign' }
  | { type: 'blob-started'; descriptor: Descriptor }
  | { type: 'blob-done'; descriptor: Descriptor }
  | { type: 'manifest-written'; descriptor: Descriptor; tags: string[] };

export interface CopyOptions {
  /** Tags for the root manifest at the destination (empty: by digest only). */
  tags: string[];
  /**
   * For an index: a platform copies just that image; 'all' (or nothing, when the destination
   * can hold an index) copies every child. A destination without index support and no platform
   * gets the host's platform.
   */
  platform?: Platform | 'all';
  /** Parallel blob transfers (default 4). */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?(event: CopyProgressEvent): void;
  mountFrom?: WriteBlobOptions['mountFrom'];
}

export interface CopyResult {
  digest: string;
  mediaType: string;
  size: number;
}

interface ImagePlan {
  manifest: ImageManifest;
}

/**
 * Copies an image or index from one store to another: blobs in parallel (skipping what the
 * destination has), then child manifests, then the root manifest last and only when every blob
 * arrived, so a tag never points at something incomplete. Manifest bytes are copied as they are,
 * so digests are preserved.
 */
export async function copyImage(src: ImageReader, srcRef: string | undefined, dst: ImageWriter, opts: CopyOptions): Promise<CopyResult> {
  const where = `${src.name}${srcRef ? ` (${srcRef})` : ''}`;
  const doing = `copying ${where} to ${dst.name}`;
  try {
    // Connect to the destination while the source manifest downloads (both are round trips).
    void dst.warmUp?.(opts.signal).catch(() => undefined);
    const rootRaw = await src.getManifest(srcRef, opts.signal);
    const root = parseManifest(rootRaw, { what: `manifest ${rootRaw.digest} of ${where}` });
    const supportsIndex = dst.supportsIndex !== false;

    // Decide what to write: the root as is, or one platform's manifest in its place.
    let top: ParsedManifest = root;
    if (root.kind === 'index') {
      const platform = opts.platform ?? (supportsIndex ? 'all' : hostPlatform());
      if (platform === 'all' && !supportsIndex) {
        throw new GantryError('UNSUPPORTED', `${dst.name} holds a single platform per image, but all platforms of an index were asked for`, {
          hint: 'choose one platform with --platform',
        });
      }
      if (platform !== 'all') {
        const child = selectManifest(root.index, platform, { what: `image index ${root.raw.digest} of ${where}` });
        top = await fetchChild(src, child, opts.signal, `manifest ${child.digest} (${formatPlatform(child.platform!)}) of ${where}`);
        if (top.kind === 'index') throw new GantryError('UNSUPPORTED', `${where}: platform entry ${child.digest} is itself an index`);
      }
    }

    const images: ImagePlan[] = [];
    const childManifests: RawManifest[] = [];
    await collect(src, top, images, childManifests, opts.signal, where);

    await copyBlobs(src, dst, images, opts);
    for (const child of childManifests) {
      await dst.putManifest(child, [], opts.signal);
      opts.onProgress?.({ type: 'manifest-written', descriptor: descriptorOf(child), tags: [] });
    }
    await dst.putManifest(top.raw, opts.tags, opts.signal);
    opts.onProgress?.({ type: 'manifest-written', descriptor: descriptorOf(top.raw), tags: opts.tags });
    return { digest: top.raw.digest, mediaType: top.mediaType, size: top.raw.bytes.length };
  } catch (err) {
    throw wrapError(err, doing);
  }
}

function descriptorOf(raw: RawManifest): Descriptor {
  return { mediaType: raw.mediaType, digest: raw.digest, size: raw.bytes.length };
}

/** Walks an index tree depth-first: children are listed before their parents, the root is not listed. */
async function collect(src: ImageReader, node: ParsedManifest, images: ImagePlan[], children: RawManifest[], signal: AbortSignal | undefined, where: string, depth = 0): Promise<void> {
  if (node.kind === 'manifest') {
    images.push({ manifest: node.manifest });
    return;
  }
  if (depth > 4) throw new GantryError('MANIFEST_INVALID', `${where}: image indexes nested too deeply`);
  for (const desc of node.index.manifests) {
    // The same child may be listed twice (e.g. with different annotations): copy it once.
    if (children.some((c) => c.digest === desc.digest)) continue;
    const parsed = await fetchChild(src, desc, signal, `manifest ${desc.digest} of ${where}`);
    await collect(src, parsed, images, children, signal, where, depth + 1);
    children.push(parsed.raw);
  }
}

/** A child manifest of an index, checked to be the one the descriptor names. */
async function fetchChild(src: ImageReader, desc: Descriptor, signal: AbortSignal | undefined, what: string): Promise<ParsedManifest> {
  const raw = await src.getManifestByDescriptor(desc, signal);
  if (raw.digest !== desc.digest || raw.bytes.length !== desc.size) {
    throw new GantryError('DIGEST_MISMATCH', `${what}: the source returned ${raw.digest} (${raw.bytes.length} bytes) instead`);
  }
  return parseManifest(raw, { what });
}

async function copyBlobs(src: ImageReader, dst: ImageWriter, images: ImagePlan[], opts: CopyOptions): Promise<void> {
  const unique = new Map<string, { desc: Descriptor; role: string; manifest: ImageManifest }>();
  for (const { manifest } of images) {
    unique.set(manifest.config.digest, { desc: manifest.config, role: 'config', manifest });
    manifest.layers.forEach((l, i) => {
      if (!unique.has(l.digest)) unique.set(l.digest, { desc: l, role: `layer ${i + 1}/${manifest.layers.length}`, manifest });
    });
  }
  const limit = limiter(opts.concurrency ?? 4);
  // Existence checks are small requests: all of them go out at once, so a blob that waits for a
  // transfer slot does not then wait another round trip for its check.
  const check = limiter(CHECK_CONCURRENCY);
  // One failure stops the rest early; we still wait for all of them so nothing is writing when we return.
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  let first: unknown;
  const checks: Array<Promise<boolean>> = [];
  const tasks = [...unique.values()].map(({ desc, role, manifest }) => {
    const foreign = !isDistributable(desc.mediaType) && !!desc.urls?.length;
    const exists = foreign ? Promise.resolve(false) : check(() => (signal.aborted ? Promise.reject(new GantryError('ABORTED', 'aborted')) : dst.hasBlob(desc, signal)));
    exists.catch(() => undefined);
    checks.push(exists);
    // A config is a few KB: it does not take a transfer slot from a layer.
    const run = role === 'config' ? <T>(fn: () => Promise<T>) => fn() : limit;
    return run(async () => {
      if (signal.aborted) throw new GantryError('ABORTED', 'aborted');
      try {
        await copyBlob(src, dst, desc, role, manifest, exists, opts, signal);
      } catch (err) {
        const wrapped = wrapError(err, `copying ${role} ${desc.digest}`);
        first ??= wrapped;
        stop.abort();
        throw wrapped;
      }
    });
  });
  try {
    await allSettledOrThrow(tasks);
  } catch (err) {
    throw first ?? err;
  } finally {
    await Promise.allSettled(checks);
  }
}

/** Existence checks (HEAD requests for registries) in flight at once. */
const CHECK_CONCURRENCY = 16;

async function copyBlob(src: ImageReader, dst: ImageWriter, desc: Descriptor, role: string, manifest: ImageManifest, exists: Promise<boolean>, opts: CopyOptions, signal: AbortSignal): Promise<void> {
  if (!isDistributable(desc.mediaType) && desc.urls?.length) {
    // Foreign layers live at their URLs; registries and runtimes fetch them from there.
    opts.onProgress?.({ type: 'blob-skipped', descriptor: desc, reason: 'foreign' });
    return;
  }
  if (role === 'config' && isConfig(desc.mediaType)) {
    // Read the config once: validate it against the manifest, then write those same bytes (the
    // destination is being asked meanwhile whether it has them).
    const bytes = await readAll(await src.openBlob(desc, signal));
    checkImage(manifest, parseConfig(bytes, `config ${desc.digest}`), `image config ${desc.digest}`);
    if (await exists) {
      opts.onProgress?.({ type: 'blob-skipped', descriptor: desc, reason: 'exists' });
      return;
    }
    opts.onProgress?.({ type: 'blob-started', descriptor: desc });
    await dst.writeBlob(desc, async () => Readable.from([bytes]), { signal, mountFrom: opts.mountFrom });
    opts.onProgress?.({ type: 'blob-done', descriptor: desc });
    return;
  }
  if (await exists) {
    opts.onProgress?.({ type: 'blob-skipped', descriptor: desc, reason: 'exists' });
    return;
  }
  opts.onProgress?.({ type: 'blob-started', descriptor: desc });
  await dst.writeBlob(desc, () => src.openBlob(desc, signal), { signal, mountFrom: opts.mountFrom });
  opts.onProgress?.({ type: 'blob-done', descriptor: desc });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
