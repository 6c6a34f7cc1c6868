import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TarWriter, type TarHeader } from '../archive/index.js';
import { GantryError, withContext } from '../util/errors.js';
import { readVerifiedFile, tempNameFor } from './blobfile.js';
import { canonicalJson } from './canonical.js';
import { parseConfig } from './config.js';
import { blobPath } from './descriptor.js';
import { familiarName, familiarString, fullString, parseTaggedName, type TaggedName } from './dockerref.js';
import { IMAGE_NAME, REF_NAME } from './layoutindex.js';
import { OciLayoutWriter } from './layout.js';
import { parseManifest } from './manifest.js';
import { isConfig } from './mediatype.js';
import { platformOfConfig } from './platform.js';
import type { Descriptor, Platform, RawManifest } from './types.js';
import type { ImageWriter, WriteBlobOptions } from './store.js';
import type { ManifestJsonEntry } from './dockerarchive.js';

/**
 * Writes a `docker save`-compatible archive (`docker-archive:FILE[:REF]`) in Docker 25's shape:
 * `manifest.json` + `repositories` for `docker load` and older tools, and an OCI layout
 * (`oci-layout`, `index.json`, `blobs/sha256/...`) so the exact manifest and its digest survive.
 * Layers are stored as the blobs they are (compressed as given); `docker load` decompresses.
 *
 * Blobs are staged in a temporary OCI layout next to the target and the tar is streamed from it
 * at commit, so no layer is ever held in memory and the target appears only when complete.
 * An archive holds one platform per image, so indexes are refused (copyImage picks a platform).
 */
export class DockerArchiveWriter implements ImageWriter {
  readonly name: string;
  readonly supportsIndex = false;
  private readonly images: Array<{ raw: RawManifest; config: Descriptor; layers: Descriptor[]; tags: TaggedName[] }> = [];
  private finished = false;

  private constructor(
    readonly file: string,
    private readonly staging: OciLayoutWriter,
    private readonly stagingDir: string,
  ) {
    this.name = `docker-archive:${file}`;
  }

  /** `tempDir` is where blobs are staged (default: the target's directory, so large images need no space in /tmp). */
  static async create(file: string, opts: { tempDir?: string } = {}): Promise<DockerArchiveWriter> {
    const abs = resolve(file);
    return withContext(`opening docker-archive:${abs} for writing`, async () => {
      await mkdir(dirname(abs), { recursive: true });
      const stagingDir = await mkdtemp(join(opts.tempDir ?? dirname(abs), '.gantry-archive-'));
      const staging = await OciLayoutWriter.create(stagingDir, {
        annotationsForTag: (tag) => {
          const t = parseTaggedName(tag);
          return { [IMAGE_NAME]: fullString(t), [REF_NAME]: t.tag };
        },
      });
      return new DockerArchiveWriter(abs, staging, stagingDir);
    });
  }

  hasBlob(desc: Descriptor): Promise<boolean> {
    return this.staging.hasBlob(desc);
  }

  writeBlob(desc: Descriptor, open: () => Promise<Readable>, opts?: WriteBlobOptions): Promise<void> {
    return this.staging.writeBlob(desc, open, opts);
  }

  async putManifest(raw: RawManifest, tags: string[]): Promise<void> {
    await withContext(`adding manifest ${raw.digest} to ${this.name}`, async () => {
      const parsed = parseManifest(raw);
      if (parsed.kind === 'index') {
        throw new GantryError('UNSUPPORTED', 'a docker archive holds one platform per image and cannot store an image index', {
          hint: 'choose a platform (--platform) or write an OCI layout (oci:DIR) to keep every platform',
        });
      }
      const tagged = tags.map(parseTaggedName);
      const { config, layers } = parsed.manifest;
      for (const d of [config, ...layers]) {
        if (!(await this.staging.hasBlob(d))) throw new GantryError('INTERNAL', `blob ${d.digest} must be written before the manifest that names it`);
      }
      let platform: Platform | undefined;
      if (isConfig(config.mediaType)) {
        const bytes = await readVerifiedFile(join(this.stagingDir, blobPath(config.digest)), config, `config ${config.digest}`);
        platform = platformOfConfig(parseConfig(bytes));
      }
      await this.staging.putManifest(raw, tags, undefined, platform ? { platform } : {});
      const existing = this.images.find((i) => i.raw.digest === raw.digest);
      if (existing) existing.tags.push(...tagged);
      else this.images.push({ raw, config, layers, tags: tagged });
    });
  }

  async commit(): Promise<void> {
    if (this.finished) throw new GantryError('INTERNAL', `${this.name}: commit after commit/abort`);
    this.finished = true;
    const tmp = tempNameFor(this.file);
    try {
      await withContext(`writing ${this.name}`, async () => {
        if (this.images.length === 0) throw new GantryError('INVALID_ARGUMENT', 'no image was written');
        await this.staging.commit();
        const manifestJson: ManifestJsonEntry[] = this.images.map((img) => ({
          Config: blobPath(img.config.digest),
          RepoTags: img.tags.map(familiarString),
          Layers: img.layers.map((l) => blobPath(l.digest)),
        }));
        const repositories: Record<string, Record<string, string>> = {};
        for (const img of this.images) {
          const top = img.layers.at(-1);
          if (!top) continue;
          for (const t of img.tags) (repositories[familiarName(t.repository)] ??= {})[t.tag] = top.digest.slice(top.digest.indexOf(':') + 1);
        }
        const extra = new Map<string, Buffer>([
          ['manifest.json', Buffer.from(JSON.stringify(manifestJson))],
          ['repositories', canonicalJson(repositories)],
        ]);
        const tar = new TarWriter();
        // A failure while adding ends the tar with that error, which the pipeline then reports.
        const filled = this.fillTar(tar, extra).catch((err: unknown) => void tar.destroy(err as Error));
        try {
          await pipeline(tar, createWriteStream(tmp, { mode: 0o644 }));
        } finally {
          await filled;
        }
        await rename(tmp, this.file);
      });
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    } finally {
      await rm(this.stagingDir, { recursive: true, force: true });
    }
  }

  /** Tar of the staged layout plus `extra` files; member order and metadata are fixed for reproducibility. */
  private async fillTar(tar: TarWriter, extra: Map<string, Buffer>): Promise<void> {
    const files = new Map<string, Buffer | string>();
    for (const alg of (await readdir(join(this.stagingDir, 'blobs'))).sort()) {
      for (const hex of (await readdir(join(this.stagingDir, 'blobs', alg))).sort()) {
        if (!hex.startsWith('.')) files.set(`blobs/${alg}/${hex}`, join(this.stagingDir, 'blobs', alg, hex));
      }
    }
    files.set('index.json', join(this.stagingDir, 'index.json'));
    for (const [k, v] of extra) files.set(k, v);
    files.set('oci-layout', join(this.stagingDir, 'oci-layout'));

    const owner = { uid: 0, gid: 0, mtime: 0 } satisfies Partial<TarHeader>;
    const dirs = new Set<string>();
    for (const name of [...files.keys()].sort()) {
      const parts = name.split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = parts.slice(0, i).join('/') + '/';
        if (!dirs.has(d)) {
          dirs.add(d);
          await tar.add({ name: d, type: 'dir', mode: 0o755, ...owner });
        }
      }
      const src = files.get(name)!;
      const file = { name, type: 'file', mode: 0o644, ...owner } as const;
      if (typeof src !== 'string') await tar.add({ ...file, size: src.length }, src);
      else await tar.add({ ...file, size: (await stat(src)).size }, createReadStream(src));
    }
    await tar.finish();
  }

  async abort(): Promise<void> {
    this.finished = true;
    await rm(this.stagingDir, { recursive: true, force: true });
  }
}
