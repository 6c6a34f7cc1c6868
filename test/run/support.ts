/**
 * Helpers of the RUN tests: read back what a build wrote into an OCI layout (config, and the raw
 * entries of each layer), and build a Dockerfile on the busybox base.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import type { ImageConfig, ImageManifest } from '../../src/oci/types.js';

export interface LayerEntryInfo {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  linkname?: string;
  data?: Buffer;
}

const blob = (layout: string, digest: string) => join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));

export async function layoutImage(layout: string): Promise<{ manifest: ImageManifest; config: ImageConfig; configText: string }> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(await readFile(blob(layout, index.manifests[0]!.digest), 'utf8')) as ImageManifest;
  const configText = await readFile(blob(layout, manifest.config.digest), 'utf8');
  return { manifest, config: JSON.parse(configText) as ImageConfig, configText };
}

/** Every entry of one layer blob (gzip), with file contents up to 1 MiB. */
export async function layerEntries(layout: string, digest: string): Promise<LayerEntryInfo[]> {
  const out: LayerEntryInfo[] = [];
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => {
        chunks.push(c as Buffer);
      });
      stream.on('end', () => {
        const e: LayerEntryInfo = { name: h.name.replace(/\/$/, ''), type: h.type ?? 'file', mode: h.mode ?? 0, uid: h.uid ?? 0, gid: h.gid ?? 0 };
        if (h.linkname) e.linkname = h.linkname;
        if (h.type === 'file') e.data = Buffer.concat(chunks);
        out.push(e);
        next();
      });
      stream.on('error', reject);
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  createReadStream(blob(layout, digest)).pipe(createGunzip()).pipe(extract);
  await done;
  return out;
}

/** The uncompressed bytes of every layer, for searching. */
export async function allLayerBytes(layout: string): Promise<Buffer[]> {
  const { manifest } = await layoutImage(layout);
  const { gunzipSync } = await import('node:zlib');
  return Promise.all(manifest.layers.map(async (l) => gunzipSync(await readFile(blob(layout, l.digest)))));
}

/** Entries of the layers a build added on top of a base with `baseLayers` layers, one list per layer. */
export async function newLayers(layout: string, baseLayers: number): Promise<LayerEntryInfo[][]> {
  const { manifest } = await layoutImage(layout);
  return Promise.all(manifest.layers.slice(baseLayers).map((l) => layerEntries(layout, l.digest)));
}
