import type { Readable } from 'node:stream';
import { GantryError } from '../util/errors.js';

/** Collects a small stream (configs, manifests) with a hard cap, so a hostile source cannot exhaust memory. */
export async function streamToBuffer(stream: Readable, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > max) {
      stream.destroy();
      throw new GantryError('SIZE_MISMATCH', `${what} is larger than ${max} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
