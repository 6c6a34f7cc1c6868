import type { Readable } from 'node:stream';
import { decompressAuto, readTar } from '../../archive/index.js';
import { wrapError } from '../../util/errors.js';
import type { UnpackStats } from './entry.js';
import { unpackLayer, type UnpackOptions } from './unpack-layer.js';

/**
 * Unpacks a layer blob as it arrives (gzip, zstd or plain tar, recognised by its first bytes), so
 * a layer is never held in memory or staged on disk.
 */
export async function unpackLayerStream(root: string, blob: Readable, opts: UnpackOptions): Promise<UnpackStats> {
  let output: Readable;
  try {
    ({ output } = await decompressAuto(blob));
  } catch (err) {
    throw wrapError(err, opts.layerName ? `reading layer ${opts.layerName}` : 'reading layer');
  }
  // Failures of the source or the codec surface through readTar (it listens on its input).
  return unpackLayer(root, readTar(output), opts);
}
