import { createReadStream } from 'node:fs';
import { resolve } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { indexTar, type TarIndex, type TarMember } from '../archive/index.js';
import { DigestingStream, isDigest, sha256 } from '../util/digest.js';
import { GantryError, withContext } from '../util/errors.js';
import { openVerifiedFile } from './blobfile.js';
import { canonicalManifest } from './canonical.js';
import { isObject } from './check.js';
import { blobPath, digestProblem, embeddedData } from './descriptor.js';
import { sameTaggedName } from './dockerref.js';
import { parseLayoutIndex, resolveIndexEntry } from './layoutindex.js';
import { parseManifest } from './manifest.js';
import { isIndex, isManifest, layerMediaType, sniffCompression } from './mediatype.js';
import { MediaType } from './types.js';
import type { Descriptor, ImageIndex, ImageManifest, RawManifest } from './types.js';
import type { ImageReader } from './store.js';

/**
 * Reads `docker save` archives (`docker-archive:FILE[:REF]`) without extracting them: the tar is
 * indexed once and members are streamed by byte range.
 *
 * Two shapes exist. Docker >= 25 writes an OCI layout next to `manifest.json`; then the exact
 * manifest bytes are in the archive and digests survive. Older archives only have `manifest.json`,
 * `<hex>.json` configs and `<id>/layer.tar` files; then a Docker v2 manifest is synthesized whose
 * layer descriptors are computed from the files as stored (compression sniffed from magic bytes),
 * each layer read once.
 */

export interface ManifestJsonEntry {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
  LayerSources?: Record<string, Descriptor>;
}

const MAX_SMALL = 16 << 20;

function parseManifestJson(doc: unknown, where: string): ManifestJsonEntry[] {
  const bad = (why: string) => new GantryError('ARCHIVE_INVALID', `${where}/manifest.json: ${why}`);
  if (!Array.isArray(doc)) throw bad('must be a JSON array');
  return doc.map((e, i) => {
    if (!isObject(e)) throw bad(`entry ${i} must be an object`);
    if (typeof e.Config !== 'string') throw bad(`entry ${i}: Config must be a string`);
    if (!Array.isArray(e.Layers) || e.Layers.some((l) => typeof l !== 'string')) throw bad(`entry ${i}: Layers must be an array of strings`);
    if (e.RepoTags !== undefined && e.RepoTags !== null && (!Array.isArray(e.RepoTags) || e.RepoTags.some((t) => typeof t !== 'string'))) {
      throw bad(`entry ${i}: RepoTags must be an array of strings`);
    }
    return e as unknown as ManifestJsonEntry;
  });
}

export class DockerArchiveReader implements ImageReader {
  readonly name: string;
  /** Blob digest -> member, for archives whose blobs are not under blobs/<alg>/<hex>. */
  private readonly blobMembers = new Map<string, TarMember>();
  private readonly synthesized = new Map<number, Promise<RawManifest>>();
  /** Layer descriptors by member offset: a layer linked from several entries is hashed once. */
  private readonly described = new Map<number, Promise<Descriptor>>();

  private constructor(
    readonly file: string,
    private readonly tar: TarIndex,
    private readonly defaultRef: string | undefined,
    readonly entries: ManifestJsonEntry[] | undefined,
    private readonly layout: ImageIndex | undefined,
  ) {
    this.name = `docker-archive:${file}`;
  }

  static async open(file: string, ref?: string): Promise<DockerArchiveReader> {
    const abs = resolve(file);
    const name = `docker-archive:${abs}`;
    return withContext(`opening ${name}`, async () => {
      let tar: TarIndex;
      try {
        tar = await indexTar(abs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new GantryError('NOT_FOUND', `${abs}: no such file`);
        throw err;
      }
      const readJson = async (member: string): Promise<unknown> => {
        const m = tar.resolve(member);
        if (!m) return undefined;
        const bytes = await readMember(tar, m, MAX_SMALL, `${name}/${member}`);
        try {
          return JSON.parse(bytes.toString('utf8'));
        } catch (err) {
          throw new GantryError('ARCHIVE_INVALID', `${name}/${member} is not valid JSON: ${(err as Error).message}`);
        }
      };
      const mj = await readJson('manifest.json');
      const ij = await readJson('index.json');
      if (mj === undefined && ij === undefined) {
        throw new GantryError('ARCHIVE_INVALID', `${name} is not a docker archive: it has neither manifest.json nor index.json`, {
          hint: 'create it with `docker save`, `skopeo copy ... docker-archive:FILE` or gantry',
        });
      }
      const entries = mj === undefined ? undefined : parseManifestJson(mj, name);
      const layout = ij === undefined ? undefined : parseLayoutIndex(ij, `${name}/index.json`);
      return new DockerArchiveReader(abs, tar, ref || undefined, entries, layout);
    });
  }

  async getManifest(ref?: string): Promise<RawManifest> {
    const want = ref ?? this.defaultRef;
    if (!this.entries) return this.fromLayout(resolveIndexEntry(this.layout!, want, this.name));
    if (want !== undefined && isDigest(want) && this.layout) {
      return this.fromLayout(resolveIndexEntry(this.layout, want, this.name));
    }
    const i = this.pickEntry(want);
    let raw = this.synthesized.get(i);
    if (!raw) {
      raw = withContext(`reading image ${i} of ${this.name}`, () => this.manifestFor(this.entries![i]!));
      this.synthesized.set(i, raw);
      raw.catch(() => this.synthesized.delete(i));
    }
    return raw;
  }

  /** Index of the manifest.json entry for a RepoTag, `@N`, or the only entry. */
  private pickEntry(want: string | undefined): number {
    const entries = this.entries!;
    const tags = entries.flatMap((e) => e.RepoTags ?? []);
    if (want === undefined) {
      if (entries.length === 1) return 0;
      throw new GantryError('INVALID_ARGUMENT', `${this.name} holds ${entries.length} images; say which one (tags: ${tags.join(', ') || 'none'})`, {
        tags,
        hint: `append :NAME:TAG or :@N to the reference, e.g. ${this.name}:${tags[0] ?? '@0'}`,
      });
    }
    const at = /^@(\d+)$/.exec(want);
    if (at) {
      const n = Number(at[1]);
      if (n < entries.length) return n;
      throw new GantryError('NOT_FOUND', `${this.name} has ${entries.length} image(s); there is no @${n}`);
    }
    const i = entries.findIndex((e) => (e.RepoTags ?? []).some((t) => sameTaggedName(t, want)));
    if (i >= 0) return i;
    throw new GantryError('NOT_FOUND', `${this.name} has no image tagged "${want}" (tags: ${tags.join(', ') || 'none'})`, { tags });
  }

  private member(path: string): TarMember {
    const m = this.tar.resolve(path);
    if (!m) throw new GantryError('ARCHIVE_INVALID', `${this.name}: member ${path} named by manifest.json is missing`);
    return m;
  }

  private async manifestFor(entry: ManifestJsonEntry): Promise<RawManifest> {
    const configMember = this.member(entry.Config);
    const configBytes = await readMember(this.tar, configMember, MAX_SMALL, `${this.name}/${entry.Config}`);
    const config: Descriptor = { mediaType: MediaType.DockerConfig, digest: sha256(configBytes), size: configBytes.length };
    this.blobMembers.set(config.digest, configMember);

    const exact = this.layout && (await this.findInLayout(this.layout.manifests, config.digest, entry.Layers.length, 0));
    if (exact) return exact;

    const layers: Descriptor[] = [];
    for (const path of entry.Layers) {
      const m = this.member(path);
      let described = this.described.get(m.offset);
      if (!described) this.described.set(m.offset, (described = describeMember(this.tar, m)));
      const desc = await described;
      this.blobMembers.set(desc.digest, m);
      layers.push(desc);
    }
    const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.DockerManifest, config, layers };
    const bytes = canonicalManifest(manifest);
    return { mediaType: MediaType.DockerManifest, bytes, digest: sha256(bytes) };
  }

  /**
   * Docker >= 25 keeps the exact manifest in the OCI layout beside manifest.json (with the
   * containerd image store, under an index). It is the one with our config and layer count whose
   * blobs are all in the archive; docker save omits other platforms' blobs.
   */
  private async findInLayout(descs: Descriptor[], configDigest: string, layerCount: number, depth: number): Promise<RawManifest | undefined> {
    for (const desc of descs) {
      if (!this.hasMember(desc)) continue;
      if (isIndex(desc.mediaType) && depth < 2) {
        const raw = await this.fromLayout(desc);
        const parsed = parseManifest(raw);
        if (parsed.kind !== 'index') continue;
        const found = await this.findInLayout(parsed.index.manifests, configDigest, layerCount, depth + 1);
        if (found) return found;
      }
      if (!isManifest(desc.mediaType)) continue;
      const raw = await this.fromLayout(desc);
      const parsed = parseManifest(raw);
      if (parsed.kind !== 'manifest') continue;
      const { config, layers } = parsed.manifest;
      if (config.digest === configDigest && layers.length === layerCount && layers.every((l) => this.hasMember(l))) return raw;
    }
    return undefined;
  }

  private hasMember(desc: Descriptor): boolean {
    return desc.data !== undefined || (isDigest(desc.digest) && this.tar.resolve(blobPath(desc.digest)) !== undefined);
  }

  private async fromLayout(desc: Descriptor): Promise<RawManifest> {
    const bytes = embeddedData(desc) ?? (await readAll(await this.openBlob(desc)));
    return { mediaType: desc.mediaType, bytes, digest: desc.digest };
  }

  async getManifestByDescriptor(desc: Descriptor): Promise<RawManifest> {
    if (desc.size > MAX_SMALL) throw new GantryError('MANIFEST_INVALID', `manifest ${desc.digest} in ${this.name} is too large (${desc.size} bytes)`);
    return this.fromLayout(desc);
  }

  async openBlob(desc: Descriptor): Promise<Readable> {
    const what = `blob ${desc.digest} in ${this.name}`;
    const data = embeddedData(desc);
    if (data) return Readable.from([data]);
    const m = this.blobMembers.get(desc.digest) ?? (digestProblem(desc.digest) === undefined ? this.tar.resolve(blobPath(desc.digest)) : undefined);
    if (!m) throw new GantryError('NOT_FOUND', `${what}: not found`);
    return openVerifiedFile(this.file, desc, what, { start: m.offset, size: m.size });
  }
}

async function readMember(tar: TarIndex, m: TarMember, limit: number, what: string): Promise<Buffer> {
  if (m.size > limit) throw new GantryError('ARCHIVE_INVALID', `${what} is too large (${m.size} bytes)`);
  if (m.size === 0) return Buffer.alloc(0);
  return readAll(createReadStream(tar.path, { start: m.offset, end: m.offset + m.size - 1 }));
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Digest, size and media type of a layer file as stored, from one streaming pass. */
async function describeMember(tar: TarIndex, m: TarMember): Promise<Descriptor> {
  const digester = new DigestingStream();
  let head = Buffer.alloc(0);
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (head.length < 4) head = Buffer.concat([head, chunk.subarray(0, 4 - head.length)]);
      cb();
    },
  });
  const source = m.size === 0 ? Readable.from([]) : createReadStream(tar.path, { start: m.offset, end: m.offset + m.size - 1 });
  await pipeline(source, digester, sink);
  if (digester.size !== m.size) throw new GantryError('ARCHIVE_INVALID', `${tar.path}: member ${m.name} is truncated`);
  return { mediaType: layerMediaType(sniffCompression(head), 'docker'), digest: digester.digest, size: digester.size };
}
