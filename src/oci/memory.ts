import { Readable } from 'node:stream';
import { GantryError } from '../util/errors.js';
import { isDigest, sha256, VerifyingStream } from '../util/digest.js';
import { parseManifest } from './manifest.js';
import type { Descriptor, RawManifest } from './types.js';
import type { ImageReader, ImageWriter, WriteBlobOptions } from './store.js';

/**
 * An in-memory image store, both source and sink. For tests and small synthetic images only:
 * it holds every blob in memory.
 */
export class MemoryStore implements ImageReader, ImageWriter {
  readonly blobs = new Map<string, Buffer>();
  readonly manifests = new Map<string, RawManifest>();
  readonly tags = new Map<string, string>();
  supportsIndex = true;

  constructor(readonly name = 'memory:') {}

  /** Adds a blob directly and returns its descriptor. */
  addBlob(bytes: Buffer, mediaType: string): Descriptor {
    const digest = sha256(bytes);
    this.blobs.set(digest, bytes);
    return { mediaType, digest, size: bytes.length };
  }

  async getManifest(ref?: string): Promise<RawManifest> {
    let digest: string | undefined;
    if (ref === undefined) {
      if (this.tags.size !== 1) throw new GantryError('INVALID_ARGUMENT', `${this.name}: ${this.tags.size} tags, say which one`);
      digest = [...this.tags.values()][0];
    } else digest = isDigest(ref) ? ref : this.tags.get(ref);
    const raw = digest && this.manifests.get(digest);
    if (!raw) throw new GantryError('NOT_FOUND', `${this.name}: no manifest ${ref ?? ''}`);
    return raw;
  }

  async getManifestByDescriptor(desc: Descriptor): Promise<RawManifest> {
    const raw = this.manifests.get(desc.digest);
    if (!raw) throw new GantryError('NOT_FOUND', `${this.name}: no manifest ${desc.digest}`);
    return raw;
  }

  async openBlob(desc: Descriptor): Promise<Readable> {
    const bytes = this.blobs.get(desc.digest);
    if (!bytes) throw new GantryError('NOT_FOUND', `${this.name}: no blob ${desc.digest}`);
    return Readable.from([bytes]).pipe(new VerifyingStream(desc, `blob ${desc.digest} in ${this.name}`));
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    return this.blobs.get(desc.digest)?.length === desc.size;
  }

  async writeBlob(desc: Descriptor, open: () => Promise<Readable>, _opts?: WriteBlobOptions): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of (await open()).pipe(new VerifyingStream(desc))) chunks.push(chunk as Buffer);
    this.blobs.set(desc.digest, Buffer.concat(chunks));
  }

  async putManifest(raw: RawManifest, tags: string[]): Promise<void> {
    parseManifest(raw);
    this.manifests.set(raw.digest, raw);
    for (const t of tags) this.tags.set(t, raw.digest);
  }
}
