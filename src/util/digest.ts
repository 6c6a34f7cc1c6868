import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { GantryError } from './errors.js';

/** `sha256:<64 hex>`; the only algorithm registries are required to support and the one we write. */
export type Digest = `${string}:${string}`;

const DIGEST_RE = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;
const HEX_LEN: Record<string, number> = { sha256: 64, sha512: 128 };

export interface ParsedDigest {
  algorithm: string;
  encoded: string;
}

/** Parses and validates a digest string as the OCI spec defines it. */
export function parseDigest(value: string): ParsedDigest {
  const m = DIGEST_RE.exec(value);
  if (!m) throw new GantryError('DIGEST_INVALID', `invalid digest "${value}": expected algorithm:hex, e.g. sha256:…`);
  const algorithm = m[1]!;
  const encoded = m[2]!;
  const len = HEX_LEN[algorithm];
  if (len === undefined) {
    throw new GantryError('DIGEST_INVALID', `unsupported digest algorithm "${algorithm}" in "${value}" (supported: sha256, sha512)`);
  }
  if (encoded.length !== len || !/^[a-f0-9]+$/.test(encoded)) {
    throw new GantryError('DIGEST_INVALID', `invalid ${algorithm} digest "${value}": expected ${len} lowercase hex characters`);
  }
  return { algorithm, encoded };
}

export function isDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

export function sha256(data: string | Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function hasherFor(digest: string): Hash {
  return createHash(parseDigest(digest).algorithm);
}

/**
 * Pass-through stream that hashes and counts what flows through it. Read `digest`/`size` after
 * 'end' (or after the pipeline resolves).
 */
export class DigestingStream extends Transform {
  private readonly hash: Hash;
  private readonly algorithm: string;
  size = 0;
  private result: Digest | undefined;

  constructor(algorithm = 'sha256') {
    super();
    this.algorithm = algorithm;
    this.hash = createHash(algorithm);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.result = `${this.algorithm}:${this.hash.digest('hex')}`;
    cb();
  }

  /** The digest of everything that passed; throws if the stream has not ended yet. */
  get digest(): Digest {
    if (!this.result) throw new GantryError('INTERNAL', 'digest read before the stream ended');
    return this.result;
  }
}

/**
 * Pass-through stream that fails with DIGEST_MISMATCH / SIZE_MISMATCH at the end (or as soon as
 * the size is exceeded) when the content is not what the descriptor promised. Consumers therefore
 * never see a successful end of a corrupt blob.
 */
export class VerifyingStream extends Transform {
  private readonly hash: Hash;
  private seen = 0;

  constructor(
    private readonly expected: { digest: string; size?: number },
    private readonly what = `blob ${expected.digest}`,
  ) {
    super();
    this.hash = hasherFor(expected.digest);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.expected.size !== undefined && this.expected.size >= 0 && this.seen > this.expected.size) {
      cb(new GantryError('SIZE_MISMATCH', `${this.what}: more than the expected ${this.expected.size} bytes`));
      return;
    }
    this.hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.expected.size !== undefined && this.expected.size >= 0 && this.seen !== this.expected.size) {
      cb(new GantryError('SIZE_MISMATCH', `${this.what}: got ${this.seen} bytes, expected ${this.expected.size}`));
      return;
    }
    const { algorithm } = parseDigest(this.expected.digest);
    const actual = `${algorithm}:${this.hash.digest('hex')}`;
    if (actual !== this.expected.digest) {
      cb(new GantryError('DIGEST_MISMATCH', `${this.what}: content has digest ${actual}`, { expected: this.expected.digest, actual }));
      return;
    }
    cb();
  }
}
