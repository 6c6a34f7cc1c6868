import { open, type FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import { GantryError } from '../util/errors.js';
import { sniffCompression } from './mediatype.js';
import { BLOCK } from './tarformat.js';

/**
 * Indexes a tar file once (member name -> offset and size of its data) by reading only the
 * headers, so members can later be streamed straight from the file by range: a multi-GB
 * docker-archive is never held in memory or extracted to disk. Understands ustar, PAX extended
 * headers (path, size, linkpath) and GNU long names, which covers docker, skopeo, ggcr and
 * GNU/BSD tar output.
 */

export interface TarMember {
  name: string;
  /** '0' regular file, '1' hard link, '2' symlink, '5' directory, ... */
  type: string;
  offset: number;
  size: number;
  linkname: string;
}

export class TarIndex {
  constructor(
    readonly path: string,
    readonly members: ReadonlyMap<string, TarMember>,
  ) {}

  /** The regular-file member for `name`, following symlinks and hard links (docker save links duplicate layers). */
  resolve(name: string): TarMember | undefined {
    let current = this.members.get(cleanName(name));
    for (let hops = 0; current && hops < 16; hops++) {
      if (current.type === '0' || current.type === '\0' || current.type === '7') return current;
      if (current.type === '2') current = this.members.get(cleanName(posix.join(posix.dirname(current.name), current.linkname)));
      else if (current.type === '1') current = this.members.get(cleanName(current.linkname));
      else return undefined;
    }
    return undefined;
  }
}

/** Normalized member name: no leading `./` or `/`, no trailing `/`, no `.`/`..` segments. */
export function cleanName(name: string): string {
  const n = posix.normalize('/' + name).slice(1);
  return n.endsWith('/') ? n.slice(0, -1) : n;
}

function field(buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end < 0 || end > start + len ? start + len : end);
}

function numeric(buf: Buffer, start: number, len: number, what: string): number {
  if (buf[start]! & 0x80) {
    // GNU base-256 for values that do not fit in octal.
    let v = 0;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + buf[i]!;
    return v;
  }
  const s = field(buf, start, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new GantryError('ARCHIVE_INVALID', `bad ${what} field "${s}" in tar header`);
  return parseInt(s, 8);
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const len = parseInt(data.toString('ascii', pos, space), 10);
    if (!Number.isFinite(len) || len <= 0) break;
    const record = data.toString('utf8', space + 1, pos + len - 1);
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += len;
  }
  return out;
}

async function readAt(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === length ? buf : buf.subarray(0, got);
}

export async function indexTar(path: string): Promise<TarIndex> {
  const fh = await open(path, 'r');
  try {
    const { size: fileSize } = await fh.stat();
    const members = new Map<string, TarMember>();
    let pos = 0;
    let pax: Record<string, string> = {};
    let longName: string | undefined;
    let longLink: string | undefined;
    const magic = await readAt(fh, 0, 4);
    const compression = sniffCompression(magic);
    if (compression !== 'none') {
      throw new GantryError('ARCHIVE_INVALID', `${path} is a ${compression}-compressed file, not a tar`, {
        hint: `decompress it first (${compression === 'gzip' ? 'gunzip' : 'unzstd'}); members are read by offset, which needs a plain tar`,
      });
    }
    while (pos + BLOCK <= fileSize) {
      const h = await readAt(fh, pos, BLOCK);
      if (h.every((b) => b === 0)) break;
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
      const recorded = numeric(h, 148, 8, 'checksum');
      if (sum !== recorded) throw new GantryError('ARCHIVE_INVALID', `${path}: not a tar file or corrupt (bad header checksum at offset ${pos})`);
      const type = String.fromCharCode(h[156]!) || '0';
      let size = numeric(h, 124, 12, 'size');
      const dataStart = pos + BLOCK;
      const magic = h.toString('binary', 257, 263);
      const prefix = magic === 'ustar\x00' ? field(h, 345, 155) : '';
      let name = prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100);
      let linkname = field(h, 157, 100);
      if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
        if (size > 1 << 20) throw new GantryError('ARCHIVE_INVALID', `${path}: oversized extended header at offset ${pos}`);
        const data = await readAt(fh, dataStart, size);
        if (type === 'x') pax = { ...pax, ...parsePax(data) };
        else if (type === 'L') longName = field(data, 0, data.length);
        else if (type === 'K') longLink = field(data, 0, data.length);
        pos = dataStart + Math.ceil(size / BLOCK) * BLOCK;
        continue;
      }
      if (pax.path !== undefined) name = pax.path;
      else if (longName !== undefined) name = longName;
      if (pax.linkpath !== undefined) linkname = pax.linkpath;
      else if (longLink !== undefined) linkname = longLink;
      if (pax.size !== undefined) size = Number(pax.size);
      pax = {};
      longName = longLink = undefined;
      const hasData = type === '0' || type === '\0' || type === '7';
      if (hasData && dataStart + size > fileSize) throw new GantryError('ARCHIVE_INVALID', `${path}: truncated tar (member ${name})`);
      members.set(cleanName(name), { name: cleanName(name), type: type === '\0' ? '0' : type, offset: dataStart, size: hasData ? size : 0, linkname });
      pos = dataStart + (hasData || type === 'x' ? Math.ceil(size / BLOCK) * BLOCK : 0);
    }
    return new TarIndex(path, members);
  } finally {
    await fh.close();
  }
}
