/**
 * The layer pipeline: entries -> tar -> sha256 (DiffID) -> compress -> sha256 (digest) -> sink,
 * in one streaming pass with backpressure end to end. Any failure (an entry body, the codec,
 * the sink) tears down every stage, destroys the sink's stream and rejects with the first cause.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestingStream, type Digest } from '../util/digest.js';
import { GantryError, isGantryError, wrapError } from '../util/errors.js';
import {
  compressStream,
  decompressStream,
  detectFileCompression,
  type Compression,
  type LayerCompression,
} from './compression.js';
import type { TarHeader } from './tar-header.js';
import { TarWriter, type TarWriterOptions } from './tar-writer.js';

export interface LayerEntry {
  header: TarHeader;
  body?: Readable | Buffer;
}

export interface WriteLayerOptions extends TarWriterOptions {
  compression: LayerCompression;
  level?: number;
  /** gzip only: member format on worker threads (default true) or a single stream; see compression.ts. */
  parallel?: boolean;
}

export interface LayerResult {
  /** sha256 of the uncompressed tar. */
  diffId: Digest;
  /** sha256 of the bytes the sink received. */
  digest: Digest;
  /** Compressed size in bytes. */
  size: number;
  uncompressedSize: number;
  mediaType: string;
}

export type LayerSink = string | ((compressed: Readable) => Promise<void>);

const MEDIA_TYPES: Record<LayerCompression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

/** The OCI layer media type for a compression. */
export function layerMediaType(compression: LayerCompression): string {
  return MEDIA_TYPES[compression];
}

/**
 * Writes a layer. With a path as sink the file is created (truncated) and removed again on
 * failure; with a function the sink consumes the Readable and resolves when the bytes are safe
 * (uploaded, written), and sees the stream destroyed if the pipeline fails.
 */
export async function writeLayer(
  entries: AsyncIterable<LayerEntry> | Iterable<LayerEntry>,
  sink: LayerSink,
  opts: WriteLayerOptions,
): Promise<LayerResult> {
  const tar = new TarWriter(opts);
  const diff = new DigestingStream();
  const compressor = await compressStream(opts.compression, { level: opts.level, parallel: opts.parallel });
  const compressed = new DigestingStream();

  const produce = (async () => {
    for await (const e of entries) await tar.add(e.header, e.body);
    await tar.finish();
  })();

  let consume: Promise<void>;
  let path: string | undefined;
  if (typeof sink === 'string') {
    path = sink;
    consume = pipeline(tar, diff, compressor, compressed, createWriteStream(sink));
  } else {
    const flowing = pipeline(tar, diff, compressor, compressed);
    let sinkDone: Promise<void>;
    try {
      sinkDone = Promise.resolve(sink(compressed));
    } catch (err) {
      sinkDone = Promise.reject(err);
    }
    // A sink that gives up, or returns without reading everything, must stop the producer too,
    // or the tar side waits forever for a reader.
    sinkDone.then(
      () => {
        if (!compressed.readableEnded) compressed.destroy(new GantryError('INTERNAL', 'the layer sink returned before reading the whole layer'));
      },
      (err: unknown) => compressed.destroy(err instanceof Error ? err : new Error(String(err))),
    );
    consume = Promise.all([flowing, sinkDone]).then(() => undefined);
  }
  produce.catch((err: unknown) => {
    if (!tar.destroyed) tar.destroy(err instanceof Error ? err : new Error(String(err)));
  });

  // Wait for every part to settle so nothing is still writing when we report.
  const [p, c] = await Promise.allSettled([produce, consume]);
  const errors = [p, c].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (errors.length > 0) {
    // Teardown makes the other side fail with ABORTED; report the cause, not the echo.
    const failure = errors.find((e) => !isGantryError(e, 'ABORTED')) ?? errors[0];
    for (const s of [tar, diff, compressor, compressed]) if (!s.destroyed) s.destroy();
    if (path) await rm(path, { force: true });
    throw wrapError(failure, 'writing layer');
  }
  return {
    diffId: diff.digest,
    digest: compressed.digest,
    size: compressed.size,
    uncompressedSize: diff.size,
    mediaType: MEDIA_TYPES[opts.compression],
  };
}

export interface LayerFileDigests {
  diffId: Digest;
  digest: Digest;
  size: number;
  uncompressedSize: number;
  compression: Compression;
}

/** Digests an existing (possibly compressed) layer file: both sides, one read of the file. */
export async function digestLayerFile(path: string): Promise<LayerFileDigests> {
  try {
    const compression = await detectFileCompression(path);
    const compressed = new DigestingStream();
    const diff = new DigestingStream();
    const discard = new Writable({ write: (_c, _e, cb) => cb() });
    if (compression === 'none') {
      await pipeline(createReadStream(path), compressed, discard);
      return { diffId: compressed.digest, digest: compressed.digest, size: compressed.size, uncompressedSize: compressed.size, compression };
    }
    await pipeline(createReadStream(path), compressed, await decompressStream(compression), diff, discard);
    return { diffId: diff.digest, digest: compressed.digest, size: compressed.size, uncompressedSize: diff.size, compression };
  } catch (err) {
    throw wrapError(err, `digesting layer file ${path}`);
  }
}
