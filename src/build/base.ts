/**
 * Base images for FROM and `COPY --from=<image>`: a registry reference, an OCI layout
 * (`oci:/path[:tag]`) or a docker-archive (`docker-archive:/file[:ref]`), resolved to one
 * platform's manifest and config. Only the manifest and config are read here; layers are
 * streamed later, and only if a step needs the files or an output needs the blobs.
 */
import { existsSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { parseConfig } from '../oci/config.js';
import { DockerArchiveReader } from '../oci/dockerarchive.js';
import { OciLayoutReader } from '../oci/layout.js';
import { parseManifest } from '../oci/manifest.js';
import { selectManifest } from '../oci/platform.js';
import type { ImageReader } from '../oci/store.js';
import type { Descriptor, ImageConfig, ImageManifest, Platform, RawManifest } from '../oci/types.js';
import { BaseImageCache, parseGoDuration } from '../cache/index.js';
import { RegistryImageReader, formatReference, parseReference, type Reference, type RegistryClient, type Repository } from '../registry/index.js';
import { GantryError, wrapError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { BuildOptions } from './options.js';

export interface ResolvedImage {
  /** As written after expansion, e.g. `busybox:1.36` or `oci:/tmp/layout:base`. */
  name: string;
  reader: ImageReader;
  manifest: ImageManifest;
  manifestRaw: RawManifest;
  config: ImageConfig;
  /** Registry repository the blobs come from, for cross-repository mounts when pushing. */
  repository?: Repository;
}

/**
 * Splits `oci:/dir:tag` / `docker-archive:/file:registry/name:tag` into path and reference: the
 * path is the longest prefix ending before a `:` that exists on disk (paths may contain colons,
 * and docker-archive references contain `/` and `:`).
 */
export function splitTransport(rest: string): { path: string; ref?: string } {
  if (existsSync(rest)) return { path: rest };
  for (let i = rest.lastIndexOf(':'); i > 0; i = rest.lastIndexOf(':', i - 1)) {
    if (existsSync(rest.slice(0, i))) return { path: rest.slice(0, i), ref: rest.slice(i + 1) || undefined };
  }
  return { path: rest };
}

/** The base-image cache a build reads (Kaniko's --cache-dir), if it asked for one. */
export function openBaseImageCache(options: BuildOptions, logger: Logger): BaseImageCache | undefined {
  const spec = options.baseImageCache;
  if (!spec) return undefined;
  return new BaseImageCache({ dir: spec.dir, logger, ...(spec.ttl !== undefined ? { ttlMs: parseGoDuration(spec.ttl) } : {}) });
}

async function openReader(name: string, client: RegistryClient): Promise<{ reader: ImageReader; ref?: string; repository?: Repository; reference?: Reference }> {
  if (name.startsWith('oci:')) {
    const { path, ref } = splitTransport(name.slice(4));
    return { reader: await OciLayoutReader.open(path, ref), ref };
  }
  if (name.startsWith('docker-archive:')) {
    const { path, ref } = splitTransport(name.slice('docker-archive:'.length));
    return { reader: await DockerArchiveReader.open(path, ref), ref: undefined };
  }
  const reference = parseReference(name);
  const reader = new RegistryImageReader({ reference, client });
  return { reader, reference, repository: { registry: reference.registry, repository: reference.repository } };
}

/**
 * Reads a base image's manifest (choosing `platform` from an index) and config. With a base-image
 * cache, a registry image found there is read from disk (layers included) instead.
 */
export async function resolveImage(name: string, platform: Platform, client: RegistryClient, signal?: AbortSignal, cache?: BaseImageCache): Promise<ResolvedImage> {
  try {
    const opened = await openReader(name, client);
    const { ref, repository, reference } = opened;
    let reader = opened.reader;
    let root: RawManifest | undefined;
    if (cache && reference) {
      const found = await cache.find(reference, platform, reader, signal);
      if (found.hit) {
        client.options.logger.log('info', `base image ${name}: using ${found.hit.digest} from the base image cache ${cache.dir}`, { digest: found.hit.digest });
        reader = found.hit.reader;
        root = found.hit.manifestRaw;
      } else {
        client.options.logger.log('debug', `base image ${formatReference(reference)}: not in the base image cache ${cache.dir}`);
        root = found.root;
      }
    }
    let raw = root ?? (await reader.getManifest(ref, signal));
    let parsed = parseManifest(raw, { what: `manifest of ${name}` });
    if (parsed.kind === 'index') {
      const child = selectManifest(parsed.index, platform, { what: `image index of ${name}` });
      raw = await reader.getManifestByDescriptor(child, signal);
      parsed = parseManifest(raw, { what: `manifest ${child.digest} of ${name}` });
      if (parsed.kind === 'index') throw new GantryError('UNSUPPORTED', `${name}: the platform entry ${child.digest} is itself an index`);
    }
    const manifest = parsed.manifest;
    const config = parseConfig(await readSmallBlob(reader, manifest.config, signal), `config of ${name}`);
    const out: ResolvedImage = { name, reader, manifest, manifestRaw: raw, config };
    if (repository) out.repository = repository;
    return out;
  } catch (err) {
    const e = wrapError(err, `resolving base image ${name}`);
    if (!e.hint && e.code === 'NOT_FOUND') e.details.hint = 'check the image name and tag, and that the registry is reachable with your credentials';
    throw e;
  }
}

async function readSmallBlob(reader: ImageReader, desc: Descriptor, signal?: AbortSignal): Promise<Buffer> {
  const stream: Readable = await reader.openBlob(desc, signal);
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
