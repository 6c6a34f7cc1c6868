import { createHash, type Hash } from 'node:crypto';

/**
 * Length-framed hashing: every value is written as `<u32 length><bytes>`, every list as
 * `<u32 count>` followed by its items. Unlike separator-joined strings (Kaniko joins key parts
 * with "-", so `a-b`+`c` and `a`+`b-c` collide), a framed encoding has exactly one reading.
 */
export class FramedHash {
  private readonly hash: Hash = createHash('sha256');
  private readonly u32 = Buffer.alloc(4);

  private len(n: number): void {
    this.u32.writeUInt32BE(n >>> 0, 0);
    this.hash.update(this.u32);
  }

  /** A string (UTF-8) or bytes. */
  value(v: string | Uint8Array): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    this.len(b.length);
    this.hash.update(b);
    return this;
  }

  /** A named field: the name is framed too, so an absent optional field cannot be mistaken for another. */
  field(name: string, v: string | Uint8Array): this {
    return this.value(name).value(v);
  }

  /** Integers (modes, ids, sizes) as decimal text, so the encoding has no width limits. */
  int(name: string, n: number | bigint): this {
    return this.field(name, String(n));
  }

  list<T>(name: string, items: readonly T[], each: (item: T, h: this) => void): this {
    this.value(name);
    this.len(items.length);
    for (const item of items) each(item, this);
    return this;
  }

  hex(): string {
    return this.hash.digest('hex');
  }
}

/** Byte-wise comparison, the order Go and the tar writer use for names. */
export function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
