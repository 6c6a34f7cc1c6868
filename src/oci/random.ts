import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { TarWriter } from '../archive/index.js';
import { sha256 } from '../util/digest.js';
import { toRawManifest } from './canonical.js';
import { configBlob, newConfig, withLayer } from './config.js';
import { MemoryStore } from './memory.js';
import { layerMediaType, toDockerMediaType } from './mediatype.js';
import { MediaType } from './types.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform, RawManifest } from './types.js';

/**
 * Random images for tests, like ggcr's `random.Image`: real tar layers with random content, a
 * valid config whose diff_ids match, canonical manifests. Small by design (held in memory).
 */

export interface RandomImageOptions {
  layers?: number;
  /** Bytes of random file content per layer. */
  size?: number;
  compression?: 'gzip' | 'none';
  platform?: Platform;
  family?: 'oci' | 'docker';
}

export interface RandomImage {
  raw: RawManifest;
  manifest: ImageManifest;
  config: ImageConfig;
  configDescriptor: Descriptor;
}

/** Adds a random image to `store` (tagging it when `tag` is given) and returns it. */
export async function randomImage(store: MemoryStore, opts: RandomImageOptions = {}, tag?: string): Promise<RandomImage> {
  const family = opts.family ?? 'oci';
  const compression = opts.compression ?? 'gzip';
  let config = newConfig(opts.platform ?? { os: 'linux', architecture: 'amd64' }, { created: '2024-01-01T00:00:00Z' });
  config = { ...config, config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] } };
  const layers: Descriptor[] = [];
  for (let i = 0; i < (opts.layers ?? 2); i++) {
    const tar = await smallTar([{ name: `layer${i}/` }, { name: `layer${i}/random.bin`, content: randomBytes(opts.size ?? 1024) }]);
    const blob = compression === 'gzip' ? gzipSync(tar) : tar;
    layers.push(store.addBlob(blob, layerMediaType(compression, family)));
    config = withLayer(config, sha256(tar), { created: '2024-01-01T00:00:00Z', created_by: `random layer ${i}` });
  }
  const { bytes, descriptor } = configBlob(config, family === 'docker' ? MediaType.DockerConfig : MediaType.OciConfig);
  store.blobs.set(descriptor.digest, bytes);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: family === 'docker' ? MediaType.DockerManifest : MediaType.OciManifest,
    config: descriptor,
    layers,
  };
  const raw = toRawManifest(manifest);
  await store.putManifest(raw, tag ? [tag] : []);
  return { raw, manifest, config, configDescriptor: descriptor };
}

/** A small tar in memory: a name ending in `/` is a directory, anything else a file with `content`. */
export async function smallTar(members: Array<{ name: string; content?: string | Buffer }>): Promise<Buffer> {
  const tar = new TarWriter();
  const out = tar.toArray();
  out.catch(() => undefined); // a failing add reports the error itself
  for (const { name, content } of members) {
    const fixed = { name, uid: 0, gid: 0, mtime: 0 };
    if (name.endsWith('/')) await tar.add({ ...fixed, type: 'dir', mode: 0o755 });
    else {
      const body = Buffer.from(content ?? '');
      await tar.add({ ...fixed, type: 'file', mode: 0o644, size: body.length }, body);
    }
  }
  await tar.finish();
  return Buffer.concat(await out);
}

/** Adds one random image per platform and an index over them. */
export async function randomIndex(store: MemoryStore, platforms: Platform[], opts: Omit<RandomImageOptions, 'platform'> = {}, tag?: string): Promise<{ raw: RawManifest; index: ImageIndex; images: RandomImage[] }> {
  const images: RandomImage[] = [];
  for (const platform of platforms) images.push(await randomImage(store, { ...opts, platform }));
  const family = opts.family ?? 'oci';
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: family === 'docker' ? MediaType.DockerManifestList : MediaType.OciIndex,
    manifests: images.map((img, i) => ({
      mediaType: family === 'docker' ? toDockerMediaType(MediaType.OciManifest) : MediaType.OciManifest,
      digest: img.raw.digest,
      size: img.raw.bytes.length,
      platform: platforms[i]!,
    })),
  };
  const raw = toRawManifest(index);
  await store.putManifest(raw, tag ? [tag] : []);
  return { raw, index, images };
}
