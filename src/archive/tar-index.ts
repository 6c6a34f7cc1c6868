/**
 * indexTar: where each member of a tar FILE lies (name -> offset and size of its data), found by
 * reading only the headers and seeking over the data, so members can later be streamed straight
 * from the file by byte range: a multi-GB docker-archive is never read whole, held in memory or
 * extracted. readTar is the streaming counterpart for tars that are read front to back.
 * Understands ustar, PAX extended headers (path, linkpath, size) and GNU long names, which covers
 * docker, skopeo, ggcr, GNU/BSD tar and TarWriter output.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import { GantryError } from '../util/errors.js';
import { detectCompression, MAGIC_BYTES } from './compression.js';
import { parsePaxRecords, type PaxRecords } from './pax.js';
import { BLOCK, paddedSize, type TarEntryType } from './tar-header.js';

export interface TarMember {
  /** Cleaned name (see cleanTarName). */
  name: string;
  type: TarEntryType;
  /** Where the member's data starts in the file. */
  offset: number;
  /** Bytes of data: 0 for anything but a regular file. */
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
    let current = this.members.get(cleanTarName(name));
    for (let hops = 0; current && hops < 16; hops++) {
      if (current.type === 'file') return current;
      if (current.type === 'symlink') current = this.members.get(cleanTarName(posix.join(posix.dirname(current.name), current.linkname)));
      else if (current.type === 'hardlink') current = this.members.get(cleanTarName(current.linkname));
      else return undefined;
    }
    return undefined;
  }
}

/** Normalized member name: no leading `./` or `/`, no trailing `/`, no `.`/`..` segments. */
export function cleanTarName(name: string): string {
  const n = posix.normalize('/' + name).slice(1);
  return n.endsWith('/') ? n.slice(0, -1) : n;
}

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file', // contiguous file
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};

/** Types whose size field says nothing about data following the header (as Go's archive/tar reads them). */
const HEADER_ONLY = new Set<TarEntryType>(['hardlink', 'symlink', 'char', 'block', 'dir', 'fifo']);

/** Extended headers larger than this are refused: they hold names and a few numbers. */
const MAX_EXTENDED = 1 << 20;

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

const UNPACK: Record<string, string> = { gzip: 'gunzip', zstd: 'unzstd', bzip2: 'bunzip2', xz: 'unxz' };

/** Indexes the plain (uncompressed) tar at `path`. Later members of the same name replace earlier ones. */
export async function indexTar(path: string): Promise<TarIndex> {
  const fh = await open(path, 'r');
  try {
    const { size: fileSize } = await fh.stat();
    const compression = detectCompression(await readAt(fh, 0, MAGIC_BYTES));
    if (compression !== 'none') {
      throw new GantryError('ARCHIVE_INVALID', `${path} is a ${compression}-compressed file, not a tar`, {
        hint: `decompress it first (${UNPACK[compression]}); members are read by offset, which needs a plain tar`,
      });
    }
    const members = new Map<string, TarMember>();
    let pos = 0;
    let pax: PaxRecords = new Map();
    let globalPax: PaxRecords = new Map();
    let longName: string | undefined;
    let longLink: string | undefined;
    while (pos + BLOCK <= fileSize) {
      const h = await readAt(fh, pos, BLOCK);
      if (h.every((b) => b === 0)) break;
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
      const recorded = field(h, 148, 8).trim();
      if (!/^[0-7]+$/.test(recorded) || parseInt(recorded, 8) !== sum) throw new GantryError('ARCHIVE_INVALID', `${path}: not a tar file or corrupt (bad header checksum at offset ${pos})`);
      const flag = String.fromCharCode(h[156]!);
      let size = numeric(h, 124, 12, 'size');
      const dataStart = pos + BLOCK;
      if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
        if (size > MAX_EXTENDED) throw new GantryError('ARCHIVE_INVALID', `${path}: oversized extended header at offset ${pos}`);
        const data = await readAt(fh, dataStart, size);
        if (flag === 'x') pax = parsePaxRecords(data, pax);
        else if (flag === 'g') globalPax = parsePaxRecords(data, new Map(globalPax));
        else if (flag === 'L') longName = field(data, 0, data.length);
        else longLink = field(data, 0, data.length);
        pos = dataStart + paddedSize(size);
        continue;
      }
      const record = (key: string) => (pax.get(key) ?? globalPax.get(key))?.toString('utf8');
      const ustar = h.toString('latin1', 257, 263) === 'ustar\x00';
      const prefix = ustar ? field(h, 345, 155) : '';
      const name = record('path') ?? longName ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
      const linkname = record('linkpath') ?? longLink ?? field(h, 157, 100);
      const paxSize = record('size');
      if (paxSize !== undefined) size = Number(paxSize);
      pax = new Map();
      longName = longLink = undefined;
      const type = TYPES[flag];
      const dataSize = type && HEADER_ONLY.has(type) ? 0 : size;
      if (dataStart + dataSize > fileSize) throw new GantryError('ARCHIVE_INVALID', `${path}: truncated tar (member ${name})`);
      // Members of a type we do not know (GNU sparse, volume labels, ...) are skipped, not listed.
      if (type) members.set(cleanTarName(name), { name: cleanTarName(name), type, offset: dataStart, size: dataSize, linkname });
      pos = dataStart + paddedSize(dataSize);
    }
    return new TarIndex(path, members);
  } finally {
    await fh.close();
  }
}
