import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GantryError, wrapError } from '../util/errors.js';
import { VerifyingStream } from '../util/digest.js';
import type { Descriptor } from './types.js';

/**
 * Content-addressed files on disk, shared by the OCI layout and docker-archive code: a blob only
 * appears under its final name after its digest and size were verified, so a crash or a failed
 * download never leaves a file whose name lies about its content.
 */

/** A unique temporary name next to `path`, so the final rename stays on one filesystem (atomic). */
export function tempNameFor(path: string): string {
  return join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
}

/** Streams `source` into `path` through a verifier; the file appears only if the content matches `desc`. */
export async function writeVerifiedFile(path: string, source: Readable, desc: Pick<Descriptor, 'digest' | 'size'>, what: string, signal?: AbortSignal): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempNameFor(path);
  try {
    await pipeline(source, new VerifyingStream(desc, what), createWriteStream(tmp, { mode: 0o644 }), signal ? { signal } : {});
    await rename(tmp, path);
  } catch (err) {
    source.destroy();
    await unlink(tmp).catch(() => undefined);
    if (signal?.aborted) throw new GantryError('ABORTED', `${what}: aborted`, {}, { cause: err });
    throw err;
  }
}

/** Writes small bytes (index.json, manifests) atomically: temp file, then rename over the target. */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempNameFor(path);
  try {
    const fh = await open(tmp, 'w', 0o644);
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** Size of a regular file, or undefined when it does not exist. */
export async function fileSize(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Opens a blob file as a verified stream; a missing file is NOT_FOUND (checked before returning). */
export async function openVerifiedFile(path: string, desc: Pick<Descriptor, 'digest' | 'size'>, what: string, range?: { start: number; size: number }): Promise<Readable> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new GantryError('NOT_FOUND', `${what}: not found`, { path });
    throw wrapError(err, `opening ${what}`);
  }
  const verifier = new VerifyingStream(desc, what);
  const source =
    range && range.size === 0
      ? (await fh.close(), Readable.from([]))
      : fh.createReadStream(range ? { start: range.start, end: range.start + range.size - 1 } : {});
  source.on('error', (err: Error) => verifier.destroy(wrapError(err, `reading ${what}`)));
  // A consumer that stops early must not leak the file descriptor.
  verifier.on('close', () => source.destroy());
  return source.pipe(verifier);
}

/** Reads a small verified blob fully (manifests, configs); refuses anything over `limit` bytes. */
export async function readVerifiedFile(path: string, desc: Pick<Descriptor, 'digest' | 'size'>, what: string, limit = 16 << 20): Promise<Buffer> {
  if (desc.size > limit) throw new GantryError('MANIFEST_INVALID', `${what}: ${desc.size} bytes is too large for a manifest or config (limit ${limit})`);
  const stream = await openVerifiedFile(path, desc, what);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Reads a small unverified JSON file (index.json, oci-layout, manifest.json). */
export async function readJsonFile(path: string, what: string): Promise<unknown | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw wrapError(err, `reading ${what}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new GantryError('LAYOUT_INVALID', `${what} is not valid JSON: ${(err as Error).message}`, { path });
  }
}

