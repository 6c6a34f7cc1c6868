import { mkdir, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { isDigest } from '../util/digest.js';
import { GantryError, withContext } from '../util/errors.js';
import { Problems } from './check.js';
import { blobPath, embeddedData } from './descriptor.js';
import { checkLayoutHeader, parseManifest } from './manifest.js';
import { fileSize, openVerifiedFile, readJsonFile, readVerifiedFile, writeFileAtomic, writeVerifiedFile } from './blobfile.js';
import { canonicalIndex } from './canonical.js';
import { LAYOUT_HEADER, parseLayoutIndex, REF_NAME, resolveIndexEntry } from './layoutindex.js';
import { MediaType } from './types.js';
import type { Descriptor, ImageIndex, Platform, RawManifest } from './types.js';
import type { ImageReader, ImageWriter, WriteBlobOptions } from './store.js';

/**
 * OCI image layout directories (`oci:DIR[:TAG]`), as skopeo, umoci, buildah and `docker buildx
 * --output type=oci` read and write them: `oci-layout`, `index.json` naming images through the
 * `org.opencontainers.image.ref.name` annotation, and `blobs/<alg>/<hex>`.
 */

async function checkLayoutDir(dir: string, name: string): Promise<void> {
  const header = await readJsonFile(join(dir, 'oci-layout'), `${name}/oci-layout`);
  if (header === undefined) {
    const isDir = await stat(dir).then((s) => s.isDirectory(), () => false);
    throw new GantryError('LAYOUT_INVALID', `${name} is not an OCI image layout: ${isDir ? 'oci-layout file missing' : 'no such directory'}`, {
      hint: 'point at a directory written by gantry, skopeo (oci:DIR), buildah or `docker buildx build --output type=oci,tar=false`',
    });
  }
  const p = new Problems();
  checkLayoutHeader(p, header);
  if (!p.ok) throw new GantryError('LAYOUT_INVALID', `${name}/oci-layout: ${p.summary()}`);
}

async function readBlobManifest(dir: string, desc: Descriptor, where: string): Promise<RawManifest> {
  const what = `manifest ${desc.digest} in ${where}`;
  const data = embeddedData(desc);
  const bytes = data ?? (await readVerifiedFile(join(dir, blobPath(desc.digest)), desc, what));
  return { mediaType: desc.mediaType, bytes, digest: desc.digest };
}

export class OciLayoutReader implements ImageReader {
  readonly name: string;

  private constructor(
    readonly dir: string,
    private readonly defaultRef: string | undefined,
    private readonly index: ImageIndex,
  ) {
    this.name = `oci:${dir}`;
  }

  /** Opens a layout directory; `ref` is the default tag or digest for getManifest(). */
  static async open(dir: string, ref?: string): Promise<OciLayoutReader> {
    const abs = resolve(dir);
    const name = `oci:${abs}`;
    return withContext(`opening ${name}`, async () => {
      await checkLayoutDir(abs, name);
      const doc = await readJsonFile(join(abs, 'index.json'), `${name}/index.json`);
      if (doc === undefined) throw new GantryError('LAYOUT_INVALID', `${name}: index.json missing`);
      return new OciLayoutReader(abs, ref || undefined, parseLayoutIndex(doc, `${name}/index.json`));
    });
  }

  /** The layout's index.json as read. */
  get rootIndex(): ImageIndex {
    return this.index;
  }

  async getManifest(ref?: string): Promise<RawManifest> {
    const want = ref ?? this.defaultRef;
    let desc: Descriptor;
    try {
      desc = resolveIndexEntry(this.index, want, this.name);
    } catch (err) {
      // A digest that is not in index.json may still be a blob (a child of an index).
      if (want === undefined || !isDigest(want) || (await fileSize(join(this.dir, blobPath(want)))) === undefined) throw err;
      return this.manifestFromBlob(want);
    }
    return readBlobManifest(this.dir, desc, this.name);
  }

  private async manifestFromBlob(digest: string): Promise<RawManifest> {
    const path = join(this.dir, blobPath(digest));
    const size = (await fileSize(path))!;
    const bytes = await readVerifiedFile(path, { digest, size }, `manifest ${digest} in ${this.name}`);
    let mediaType: string = MediaType.OciManifest;
    try {
      const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown; manifests?: unknown };
      mediaType = typeof doc.mediaType === 'string' ? doc.mediaType : Array.isArray(doc.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
    } catch {
      // parseManifest reports it properly
    }
    return { mediaType, bytes, digest };
  }

  getManifestByDescriptor(desc: Descriptor): Promise<RawManifest> {
    return readBlobManifest(this.dir, desc, this.name);
  }

  async openBlob(desc: Descriptor): Promise<Readable> {
    const what = `blob ${desc.digest} in ${this.name}`;
    const data = embeddedData(desc);
    if (data) return Readable.from([data]);
    return openVerifiedFile(join(this.dir, blobPath(desc.digest)), desc, what);
  }
}

export interface OciLayoutWriterOptions {
  /**
   * Annotations of the index.json entry for a tag. Default: just `ref.name = tag`. The
   * docker-archive writer adds the full image name the way `docker save` does.
   */
  annotationsForTag?: (tag: string) => Record<string, string>;
}

interface PendingEntry {
  key: string;
  descriptor: Descriptor;
}

/**
 * Writes into a layout directory, creating it if needed and keeping the images already in it.
 * Blobs land under their final name only once verified; index.json changes only at commit(), in
 * one atomic rename, replacing entries with the same tag and keeping all others.
 */
export class OciLayoutWriter implements ImageWriter {
  readonly name: string;
  readonly supportsIndex = true;
  private readonly tagged = new Map<string, PendingEntry>();
  private readonly untagged = new Map<string, Descriptor>();
  private readonly children = new Set<string>();
  private done = false;

  private constructor(
    readonly dir: string,
    private readonly opts: OciLayoutWriterOptions,
  ) {
    this.name = `oci:${dir}`;
  }

  static async create(dir: string, opts: OciLayoutWriterOptions = {}): Promise<OciLayoutWriter> {
    const abs = resolve(dir);
    const name = `oci:${abs}`;
    return withContext(`opening ${name} for writing`, async () => {
      await mkdir(abs, { recursive: true });
      const entries = await readdir(abs);
      if (entries.includes('oci-layout')) await checkLayoutDir(abs, name);
      else if (entries.some((e) => !e.startsWith('.'))) {
        throw new GantryError('LAYOUT_INVALID', `${name} exists and is not an OCI image layout (no oci-layout file)`, {
          hint: 'write to an empty or new directory, or to an existing layout',
        });
      } else await writeFileAtomic(join(abs, 'oci-layout'), Buffer.from(LAYOUT_HEADER));
      await mkdir(join(abs, 'blobs', 'sha256'), { recursive: true });
      return new OciLayoutWriter(abs, opts);
    });
  }

  private pathOf(digest: string): string {
    return join(this.dir, blobPath(digest));
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    return (await fileSize(this.pathOf(desc.digest))) === desc.size;
  }

  async writeBlob(desc: Descriptor, open: () => Promise<Readable>, opts: WriteBlobOptions = {}): Promise<void> {
    const what = `blob ${desc.digest} to ${this.name}`;
    if (await this.hasBlob(desc)) return;
    await withContext(`writing ${what}`, async () => writeVerifiedFile(this.pathOf(desc.digest), await open(), desc, `blob ${desc.digest}`, opts.signal));
  }

  async putManifest(raw: RawManifest, tags: string[], _signal?: AbortSignal, extra: { platform?: Platform } = {}): Promise<void> {
    const what = `manifest ${raw.digest} to ${this.name}`;
    await withContext(`writing ${what}`, async () => {
      const parsed = parseManifest(raw);
      if (parsed.kind === 'index') for (const child of parsed.index.manifests) this.children.add(child.digest);
      const desc: Descriptor = { mediaType: parsed.mediaType, digest: raw.digest, size: raw.bytes.length };
      if (extra.platform) desc.platform = extra.platform;
      await writeVerifiedFile(this.pathOf(raw.digest), Readable.from([raw.bytes]), desc, `manifest ${raw.digest}`);
      for (const tag of tags) {
        if (!tag) throw new GantryError('INVALID_ARGUMENT', 'empty tag');
        const annotations = this.opts.annotationsForTag?.(tag) ?? { [REF_NAME]: tag };
        this.tagged.set(tag, { key: annotations[REF_NAME] ?? tag, descriptor: { ...desc, annotations } });
      }
      if (tags.length === 0) this.untagged.set(raw.digest, desc);
    });
  }

  /** Writes index.json: new tags replace same-named entries, untagged roots are added once. */
  async commit(): Promise<void> {
    if (this.done) throw new GantryError('INTERNAL', `${this.name}: commit after commit/abort`);
    this.done = true;
    await withContext(`writing ${this.name}/index.json`, async () => {
      const path = join(this.dir, 'index.json');
      const existing = await readJsonFile(path, `${this.name}/index.json`);
      const index: ImageIndex = existing === undefined ? { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] } : parseLayoutIndex(existing, `${this.name}/index.json`);
      const replaced = new Set([...this.tagged.values()].map((e) => e.key));
      const manifests = index.manifests.filter((d) => !replaced.has(d.annotations?.[REF_NAME] ?? '\0'));
      manifests.push(...[...this.tagged.values()].map((e) => e.descriptor));
      // Untagged roots stay reachable through an unnamed entry; children of an index we wrote do not need one.
      for (const [digest, desc] of this.untagged) {
        if (this.children.has(digest) || manifests.some((d) => d.digest === digest)) continue;
        manifests.push(desc);
      }
      await writeFileAtomic(path, canonicalIndex({ ...index, manifests }));
    });
  }

  async abort(): Promise<void> {
    // Verified blobs may stay: they are content-addressed and harmless; index.json is untouched.
    this.done = true;
  }
}
