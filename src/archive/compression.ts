/**
 * Compression codecs for layers and build-context archives.
 *
 * - gzip: node:zlib (Chromium's SIMD zlib; fastest option measured, deps.md §4). The default
 *   is the member format of parallel-gzip.ts (1 MiB gzip members, compressed on worker threads
 *   where there are CPUs to spare). It is chosen for every machine, not only multi-core ones,
 *   because the format decides the layer digest: a build must produce the same digest on a
 *   1-CPU runner and a laptop. Measured on this project's 2-vCPU machine (shared with other
 *   jobs, load 2-9), level 6: compressor alone, 100 MiB mixed corpus, single stream 34 MB/s vs
 *   members on 2 workers 70 MB/s; whole layer pipeline (tar of 114 MB of files -> sha256 ->
 *   gzip -> sha256 -> file), median of 3, single 28 MB/s vs members 33 MB/s (best 30 vs 43),
 *   level 1: 53 vs 68 MB/s. Same CPU time either way (~3.1 s for 114 MB at level 6); members
 *   cost 0.2 % in size. `parallel: false` gives the classic single stream.
 * - zstd: node:zlib when the running Node has it (>= 22.15 / 23.8), else the optional package
 *   zstd-napi, else a clear UNSUPPORTED error naming both.
 * - bzip2, xz: decompression only (ADD auto-extracts them), through the system programs.
 * Every stream returned here reports failures as GantryErrors (truncated or corrupt input is
 * ARCHIVE_INVALID), so callers can wrap them with what they were doing.
 */
import { open } from 'node:fs/promises';
import { PassThrough, Readable, pipeline, type Duplex } from 'node:stream';
import zlib from 'node:zlib';
import { GantryError } from '../util/errors.js';
import { ChildCodec } from './child-codec.js';
import { ParallelGzip } from './parallel-gzip.js';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export type Compression = 'gzip' | 'zstd' | 'bzip2' | 'xz' | 'none';
export type LayerCompression = 'gzip' | 'zstd' | 'none';

export const DEFAULT_GZIP_LEVEL = 6;
export const DEFAULT_ZSTD_LEVEL = 3;

/** Bytes `detectCompression` needs to see (the xz magic is the longest). */
export const MAGIC_BYTES = 6;

/** Identifies the codec from the first bytes of a stream (at least 6 for certainty). */
export function detectCompression(first: Uint8Array): Compression {
  const b = first;
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
  if (b.length >= 4 && b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) return 'zstd';
  if (b.length >= 3 && b[0] === 0x42 && b[1] === 0x5a && b[2] === 0x68) return 'bzip2'; // "BZh"
  if (b.length >= 6 && b[0] === 0xfd && b[1] === 0x37 && b[2] === 0x7a && b[3] === 0x58 && b[4] === 0x5a && b[5] === 0x00) return 'xz';
  return 'none';
}

/** Reads the first bytes of a file and detects its compression. */
export async function detectFileCompression(path: string): Promise<Compression> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(MAGIC_BYTES);
    const { bytesRead } = await fh.read(buf, 0, MAGIC_BYTES, 0);
    return detectCompression(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/**
 * Rewrites a stream's errors into GantryErrors as they are raised, so whatever surfaces from a
 * pipeline already says which codec failed and why.
 */
function mapErrors<T extends Duplex>(stream: T, what: string): T {
  const original = stream._destroy.bind(stream);
  stream._destroy = (err, cb) => original(err && !(err instanceof GantryError) ? codecError(err, what) : err, cb);
  return stream;
}

function codecError(err: Error, what: string): GantryError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'Z_BUF_ERROR' || /unexpected end of file/i.test(err.message)) {
    return new GantryError('ARCHIVE_INVALID', `${what}: the compressed data is truncated (unexpected end of file)`, {}, { cause: err });
  }
  if (typeof code === 'string' && /^(Z|ZSTD)_/.test(code)) {
    return new GantryError('ARCHIVE_INVALID', `${what}: the compressed data is corrupt (${err.message})`, {}, { cause: err });
  }
  return new GantryError('ARCHIVE_INVALID', `${what}: ${err.message}`, {}, { cause: err });
}

// Node's zstd API exists only on newer runtimes; typed loosely so this compiles against @types/node 20.
interface ZlibWithZstd {
  createZstdCompress?: (opts?: { params?: Record<number, number> }) => Duplex;
  createZstdDecompress?: () => Duplex;
  constants: Record<string, number>;
}
const zlibZstd = zlib as unknown as ZlibWithZstd;

interface ZstdNapi {
  CompressStream: new (params?: { compressionLevel?: number }) => Duplex;
  DecompressStream: new () => Duplex;
}

let zstdNapi: Promise<ZstdNapi | undefined> | undefined;

function loadZstdNapi(): Promise<ZstdNapi | undefined> {
  // A variable specifier keeps TypeScript (and bundlers) from resolving the optional package.
  const name = 'zstd-napi';
  // require, not import(): see src/util/builtin.ts (the bundled CLI has no dynamic-import callback).
  zstdNapi ??= Promise.resolve()
    .then(() => require(name) as Partial<ZstdNapi> & { default?: Partial<ZstdNapi> })
    .then(
      (m) => {
        const mod = m.CompressStream ? m : m.default;
        return mod?.CompressStream && mod.DecompressStream ? (mod as ZstdNapi) : undefined;
      },
      () => undefined,
    );
  return zstdNapi;
}

const ZSTD_MISSING = 'zstd compression needs Node >= 22.15 or the optional package zstd-napi (npm install zstd-napi)';

/** Which zstd implementation this process would use, if any. */
export async function zstdSupport(): Promise<'zlib' | 'zstd-napi' | undefined> {
  if (typeof zlibZstd.createZstdCompress === 'function') return 'zlib';
  return (await loadZstdNapi()) ? 'zstd-napi' : undefined;
}

/** A stream that decompresses `kind` ('none' passes bytes through). */
export async function decompressStream(kind: Compression): Promise<Duplex> {
  switch (kind) {
    case 'none':
      return new PassThrough();
    case 'gzip':
      // Node's gunzip reads concatenated members, which parallel gzip (ours, pigz) produces.
      // 256 KiB output chunks instead of 16 KiB: a quarter less CPU unpacking a Debian base,
      // most of it per-chunk stream overhead downstream (measured, src/fs/unpack).
      return mapErrors(zlib.createGunzip({ chunkSize: 256 * 1024 }), 'gzip decompression');
    case 'zstd': {
      if (zlibZstd.createZstdDecompress) return mapErrors(zlibZstd.createZstdDecompress(), 'zstd decompression');
      const napi = await loadZstdNapi();
      if (napi) return mapErrors(new napi.DecompressStream(), 'zstd decompression');
      throw new GantryError('UNSUPPORTED', ZSTD_MISSING.replace('compression', 'decompression'), { hint: 'run gantry on Node 24, or npm install zstd-napi' });
    }
    case 'bzip2':
      return new ChildCodec({ command: 'bzip2', args: ['-dc'], what: 'bzip2 decompression', installHint: 'install bzip2 (apt-get install bzip2 / apk add bzip2)' });
    case 'xz':
      return new ChildCodec({ command: 'xz', args: ['-dc'], what: 'xz decompression', installHint: 'install xz (apt-get install xz-utils / apk add xz)' });
    default:
      throw new GantryError('INVALID_ARGUMENT', `unknown compression "${String(kind)}"`);
  }
}

/**
 * Decompresses whatever arrives, recognising the codec from the first bytes (layer blobs with
 * an unhelpful media type, ADD of a local archive). Errors of the input or the codec surface on
 * `output`.
 */
export async function decompressAuto(input: Readable): Promise<{ compression: Compression; output: Duplex }> {
  const source = input[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  let head = Buffer.alloc(0);
  let ended = false;
  while (head.length < MAGIC_BYTES) {
    const next = await source.next();
    if (next.done) {
      ended = true;
      break;
    }
    head = Buffer.concat([head, typeof next.value === 'string' ? Buffer.from(next.value) : next.value]);
  }
  const compression = detectCompression(head);
  const output = await decompressStream(compression);
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
  // pipeline destroys `output` with the first error, which is where the consumer listens.
  pipeline(replay, output, () => undefined);
  return { compression, output };
}

export interface CompressOptions {
  /** gzip 1-9 (default 6), zstd 1-19 (default 3). */
  level?: number;
  /** gzip only: the deterministic 1 MiB member format, on worker threads (default true). */
  parallel?: boolean;
}

function checkLevel(kind: string, level: number, min: number, max: number): number {
  if (!Number.isInteger(level) || level < min || level > max) {
    throw new GantryError('INVALID_ARGUMENT', `${kind} compression level must be an integer from ${min} to ${max}, got ${level}`);
  }
  return level;
}

/** A stream that compresses to `kind` ('none' passes bytes through). */
export async function compressStream(kind: LayerCompression, opts: CompressOptions = {}): Promise<Duplex> {
  switch (kind) {
    case 'none':
      return new PassThrough();
    case 'gzip': {
      const level = checkLevel('gzip', opts.level ?? DEFAULT_GZIP_LEVEL, 1, 9);
      if (opts.parallel ?? true) return mapErrors(new ParallelGzip({ level }), 'gzip compression');
      // 1 MiB chunks: measurably faster than the 16 KiB default (deps.md §4).
      return mapErrors(zlib.createGzip({ level, chunkSize: 1024 * 1024 }), 'gzip compression');
    }
    case 'zstd': {
      const level = checkLevel('zstd', opts.level ?? DEFAULT_ZSTD_LEVEL, 1, 22);
      if (zlibZstd.createZstdCompress) {
        const key = zlibZstd.constants['ZSTD_c_compressionLevel'];
        return mapErrors(zlibZstd.createZstdCompress(key === undefined ? {} : { params: { [key]: level } }), 'zstd compression');
      }
      const napi = await loadZstdNapi();
      if (napi) return mapErrors(new napi.CompressStream({ compressionLevel: level }), 'zstd compression');
      throw new GantryError('UNSUPPORTED', ZSTD_MISSING, { hint: 'run gantry on Node 24, or npm install zstd-napi; or use --compression=gzip' });
    }
    default:
      throw new GantryError('INVALID_ARGUMENT', `cannot compress with "${String(kind)}" (supported: gzip, zstd, none)`);
  }
}
