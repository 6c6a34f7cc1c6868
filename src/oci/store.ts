import type { Readable } from 'node:stream';
import type { Descriptor, RawManifest } from './types.js';

/**
 * Where images are read from. Implemented by a registry repository, an OCI layout directory and a
 * docker-archive tarball. Every blob stream is digest- and size-verified by the implementation, so
 * a consumer that reaches 'end' holds exactly the bytes the descriptor names.
 */
export interface ImageReader {
  /** Human name for messages, e.g. `127.0.0.1:5000/app` or `oci:/tmp/layout`. */
  readonly name: string;
  /** Manifest or index by tag or digest; undefined means the reader's default (tag from its reference). */
  getManifest(ref?: string, signal?: AbortSignal): Promise<RawManifest>;
  /** Child manifest of an index, by descriptor. */
  getManifestByDescriptor(desc: Descriptor, signal?: AbortSignal): Promise<RawManifest>;
  openBlob(desc: Descriptor, signal?: AbortSignal): Promise<Readable>;
  close?(): Promise<void>;
}

export interface WriteBlobOptions {
  signal?: AbortSignal;
  /** Where the same blob already lives, so a registry can mount it instead of uploading. */
  mountFrom?: { registry: string; repository: string };
}

/**
 * Where images are written. `putManifest` is only called after every blob it references was
 * written successfully (see copyImage), so a tag never names a manifest with missing blobs.
 */
export interface ImageWriter {
  readonly name: string;
  /**
   * False for sinks that hold a single platform per image (docker-archive): copyImage then picks
   * one platform from an index instead of writing the index. Undefined means true.
   */
  readonly supportsIndex?: boolean;
  /**
   * Gets ready to write (connect, authenticate) without writing anything; copyImage calls it
   * while the source manifest is read. Failures are not reported here: the first real write
   * reports them. Writers with nothing to prepare leave it out.
   */
  warmUp?(signal?: AbortSignal): Promise<void>;
  hasBlob(desc: Descriptor, signal?: AbortSignal): Promise<boolean>;
  /** `open` may be called more than once (retries, auth challenges): each call must yield the full blob. */
  writeBlob(desc: Descriptor, open: () => Promise<Readable>, opts?: WriteBlobOptions): Promise<void>;
  /** Stores a manifest by digest, and under each of `tags` (empty: by digest only). */
  putManifest(raw: RawManifest, tags: string[], signal?: AbortSignal): Promise<void>;
  /** Finishes the output (writes index.json, closes a tar). Nothing is visible before this for file sinks. */
  commit?(): Promise<void>;
  /** Discards a partial output after a failure. */
  abort?(): Promise<void>;
}
