import { pipeline, Readable } from 'node:stream';
import { detectCompression, MAGIC_BYTES, decompressStream, readTar } from '../../archive/index.js';
import { wrapError } from '../../util/errors.js';
import type { UnpackStats } from './entry.js';
import { unpackLayer, type UnpackOptions } from './unpack-layer.js';

/**
 * Unpacks a layer blob as it arrives (gzip, zstd or plain tar, recognised by its first bytes), so
 * a layer is never held in memory or staged on disk.
 */
export async function unpackLayerStream(root: string, blob: Readable, opts: UnpackOptions): Promise<UnpackStats> {
  const source = blob[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let head = Buffer.alloc(0);
  let ended = false;
  try {
    while (head.length < MAGIC_BYTES) {
      const next = await source.next();
      if (next.done) {
        ended = true;
        break;
      }
      head = Buffer.concat([head, next.value]);
    }
  } catch (err) {
    throw wrapError(err, opts.layerName ? `reading layer ${opts.layerName}` : 'reading layer');
  }
  const decompressor = await decompressStream(detectCompression(head));
  const replay = Readable.from(
    (async function* () {
      try {
        if (head.length > 0) yield head;
        if (ended) return;
        for (let next = await source.next(); !next.done; next = await source.next()) yield next.value;
      } finally {
        await source.return?.();
      }
    })(),
    { objectMode: false },
  );
  // Failures on either side surface through readTar (it listens for errors on its input).
  pipeline(replay, decompressor, () => {});
  return unpackLayer(root, readTar(decompressor), opts);
}
