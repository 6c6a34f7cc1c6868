/**
 * Tar header model and the USTAR + PAX encoder behind TarWriter.
 *
 * Determinism rules (same input -> same bytes, whatever the machine):
 * - USTAR magic `ustar\0`, version `00`; numeric fields are zero-padded octal ending in NUL.
 * - A field that does not fit USTAR (long or non-ASCII path/linkname/uname/gname, uid/gid above
 *   0o7777777, size of 8 GiB or more, mtime outside 0..0o77777777777 or with a requested fraction)
 *   goes into a PAX `x` header and its USTAR field holds 0 (numbers) or the ASCII part of the
 *   text truncated to fit, as Go's archive/tar and Python's tarfile do.
 * - The PAX header entry itself is always named `PaxHeader`, mode 0644, uid/gid 0, mtime 0, no
 *   user/group names: GNU tar's default name embeds the process id, which would make every
 *   build's digest differ. Its records are sorted by key.
 * - No atime/ctime records, no GNU extensions, no base-256 numbers.
 * Long names use the USTAR prefix field where a split at a `/` fits (the same rule as Go's
 * splitUSTARPath), so ordinary deep paths need no PAX header at all.
 */
import { GantryError } from '../util/errors.js';
import { encodePaxRecords } from './pax.js';

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarHeader {
  /** Path inside the archive, without a leading `/`; directories get a trailing `/` on write. */
  name: string;
  type: TarEntryType;
  /** Permission bits including setuid (0o4000), setgid (0o2000) and sticky (0o1000). */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  /** Body length; only regular files have a body. Defaults to 0. */
  size?: number;
  /** A Date, or seconds since the epoch (may carry a fraction). */
  mtime: Date | number;
  /** Target of a symlink, or the archive path a hard link points to. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, written as `SCHILY.xattr.<name>` PAX records (binary-safe). */
  xattrs?: Record<string, Buffer | string>;
}

export interface HeaderEncodeOptions {
  /** Keep sub-second mtimes (as a PAX `mtime` record). Off by default: whole seconds only. */
  subsecondMtime?: boolean;
  /** Clamp mtimes to at most this many seconds since the epoch (SOURCE_DATE_EPOCH). */
  clampMtime?: number;
}

export const BLOCK = 512;
export const PAX_HEADER_NAME = 'PaxHeader';

const TYPEFLAG: Record<TarEntryType, number> = {
  file: 0x30,
  hardlink: 0x31,
  symlink: 0x32,
  char: 0x33,
  block: 0x34,
  dir: 0x35,
  fifo: 0x36,
};
const PAX_TYPEFLAG = 0x78; // 'x'

const MAX_OCTAL_7 = 0o7777777; // 8-byte fields: 7 digits + NUL
const MAX_OCTAL_11 = 0o77777777777; // 12-byte fields: 11 digits + NUL

// Offsets and lengths of the USTAR fields we write.
const F = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const;

const isAscii = (s: string) => /^[\x00-\x7f]*$/.test(s);
const toAscii = (s: string) => s.replace(/[^\x01-\x7f]/g, '');

function writeOctal(block: Buffer, [off, len]: readonly [number, number], value: number): void {
  block.write(value.toString(8).padStart(len - 1, '0'), off, len - 1, 'latin1');
  block[off + len - 1] = 0;
}

function writeText(block: Buffer, [off, len]: readonly [number, number], value: string): void {
  block.write(value, off, len, 'latin1');
}

/** Splits a long ASCII path into USTAR prefix + name at a `/`, or returns undefined. */
export function splitUstarPath(name: string): { prefix: string; name: string } | undefined {
  if (name.length <= 100 || !isAscii(name)) return undefined;
  let limit = name.length;
  if (limit > 156) limit = 156;
  else if (name.endsWith('/')) limit--;
  const i = name.lastIndexOf('/', limit - 1);
  const suffixLen = name.length - i - 1;
  if (i <= 0 || suffixLen === 0 || suffixLen > 100 || i > 155) return undefined;
  return { prefix: name.slice(0, i), name: name.slice(i + 1) };
}

function checkInteger(what: string, entry: string, value: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new GantryError('INVALID_ARGUMENT', `tar entry "${entry}": ${what} ${value} is not an integer between 0 and ${max}`);
  }
}

/** Seconds and nanoseconds of an mtime after clamping and optional truncation. */
function splitMtime(mtime: Date | number, opts: HeaderEncodeOptions, entry: string): { sec: number; nsec: number } {
  let seconds = mtime instanceof Date ? mtime.getTime() / 1000 : mtime;
  if (!Number.isFinite(seconds)) throw new GantryError('INVALID_ARGUMENT', `tar entry "${entry}": invalid mtime`);
  if (opts.clampMtime !== undefined && seconds > opts.clampMtime) seconds = opts.clampMtime;
  const sec = Math.floor(seconds);
  // Round to microseconds first: binary floating point turns .1 into .0999999999….
  const nsec = opts.subsecondMtime ? Math.round((seconds - sec) * 1e6) * 1000 : 0;
  return nsec >= 1e9 ? { sec: sec + 1, nsec: 0 } : { sec, nsec };
}

function formatPaxTime(sec: number, nsec: number): string {
  if (nsec === 0) return String(sec);
  const frac = String(nsec).padStart(9, '0').replace(/0+$/, '');
  // Negative times: POSIX writes -1.5 as "-1.5", i.e. sign applies to the whole value.
  if (sec < 0) {
    const whole = -(sec + 1);
    const f = String(1e9 - nsec).padStart(9, '0').replace(/0+$/, '');
    return `-${whole}.${f}`;
  }
  return `${sec}.${frac}`;
}

/**
 * Encodes one entry's header block(s): an optional PAX header (header + padded records)
 * followed by the USTAR header. The result's length is a multiple of 512.
 */
export function encodeHeader(h: TarHeader, opts: HeaderEncodeOptions = {}): Buffer {
  const typeflag = TYPEFLAG[h.type];
  if (typeflag === undefined) throw new GantryError('INVALID_ARGUMENT', `tar entry "${h.name}": unknown type "${String(h.type)}"`);
  let name = h.name;
  if (name.length === 0) throw new GantryError('INVALID_ARGUMENT', 'tar entry with an empty name');
  if (name.includes('\0')) throw new GantryError('INVALID_ARGUMENT', `tar entry "${name}": name contains NUL`);
  if (h.type === 'dir' && !name.endsWith('/')) name += '/';
  const size = h.size ?? 0;
  checkInteger('size', name, size);
  if (size !== 0 && h.type !== 'file') {
    throw new GantryError('INVALID_ARGUMENT', `tar entry "${name}": a ${h.type} cannot have a body (size ${size})`);
  }
  checkInteger('uid', name, h.uid);
  checkInteger('gid', name, h.gid);
  checkInteger('mode', name, h.mode);
  const linkname = h.linkname ?? '';
  if ((h.type === 'symlink' || h.type === 'hardlink') && linkname === '') {
    throw new GantryError('INVALID_ARGUMENT', `tar entry "${name}": a ${h.type} needs a linkname`);
  }
  if (linkname.includes('\0')) throw new GantryError('INVALID_ARGUMENT', `tar entry "${name}": linkname contains NUL`);
  const devmajor = h.devmajor ?? 0;
  const devminor = h.devminor ?? 0;
  checkInteger('devmajor', name, devmajor, MAX_OCTAL_7);
  checkInteger('devminor', name, devminor, MAX_OCTAL_7);

  const pax = new Map<string, Buffer>();
  const block = Buffer.alloc(BLOCK);

  // Name: plain, USTAR prefix split, or PAX path with an ASCII stand-in in the USTAR field.
  if (name.length <= 100 && isAscii(name)) {
    writeText(block, F.name, name);
  } else {
    const split = splitUstarPath(name);
    if (split) {
      writeText(block, F.name, split.name);
      writeText(block, F.prefix, split.prefix);
    } else {
      pax.set('path', Buffer.from(name, 'utf8'));
      writeText(block, F.name, toAscii(name).slice(0, 100));
    }
  }
  if (linkname.length > 100 || !isAscii(linkname)) {
    pax.set('linkpath', Buffer.from(linkname, 'utf8'));
    writeText(block, F.linkname, toAscii(linkname).slice(0, 100));
  } else {
    writeText(block, F.linkname, linkname);
  }

  writeOctal(block, F.mode, h.mode & 0o7777);
  for (const key of ['uid', 'gid'] as const) {
    if (h[key] > MAX_OCTAL_7) {
      pax.set(key, Buffer.from(String(h[key])));
      writeOctal(block, F[key], 0);
    } else {
      writeOctal(block, F[key], h[key]);
    }
  }
  if (size > MAX_OCTAL_11) {
    pax.set('size', Buffer.from(String(size)));
    writeOctal(block, F.size, 0);
  } else {
    writeOctal(block, F.size, size);
  }
  const { sec, nsec } = splitMtime(h.mtime, opts, name);
  if (nsec !== 0 || sec < 0 || sec > MAX_OCTAL_11) {
    pax.set('mtime', Buffer.from(formatPaxTime(sec, nsec)));
  }
  writeOctal(block, F.mtime, sec < 0 || sec > MAX_OCTAL_11 ? 0 : sec);
  block[F.typeflag[0]] = typeflag;
  block.write('ustar\0', F.magic[0], 'latin1');
  block.write('00', F.version[0], 'latin1');
  for (const key of ['uname', 'gname'] as const) {
    const v = h[key] ?? '';
    if (v.length > 31 || !isAscii(v) || v.includes('\0')) {
      pax.set(key, Buffer.from(v, 'utf8'));
      writeText(block, F[key], toAscii(v).slice(0, 31));
    } else {
      writeText(block, F[key], v);
    }
  }
  writeOctal(block, F.devmajor, devmajor);
  writeOctal(block, F.devminor, devminor);

  for (const [k, v] of Object.entries(h.xattrs ?? {})) {
    if (k.length === 0 || k.includes('=') || k.includes('\0')) {
      throw new GantryError('INVALID_ARGUMENT', `tar entry "${name}": invalid xattr name "${k}"`);
    }
    pax.set(`SCHILY.xattr.${k}`, typeof v === 'string' ? Buffer.from(v, 'utf8') : v);
  }
  setChecksum(block);
  if (pax.size === 0) return block;

  const records = encodePaxRecords([...pax.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const paxBlock = Buffer.alloc(BLOCK);
  writeText(paxBlock, F.name, PAX_HEADER_NAME);
  writeOctal(paxBlock, F.mode, 0o644);
  writeOctal(paxBlock, F.uid, 0);
  writeOctal(paxBlock, F.gid, 0);
  writeOctal(paxBlock, F.size, records.length);
  writeOctal(paxBlock, F.mtime, 0);
  paxBlock[F.typeflag[0]] = PAX_TYPEFLAG;
  paxBlock.write('ustar\0', F.magic[0], 'latin1');
  paxBlock.write('00', F.version[0], 'latin1');
  writeOctal(paxBlock, F.devmajor, 0);
  writeOctal(paxBlock, F.devminor, 0);
  setChecksum(paxBlock);
  const padded = Buffer.alloc(paddedSize(records.length));
  records.copy(padded);
  return Buffer.concat([paxBlock, padded, block]);
}

function setChecksum(block: Buffer): void {
  block.fill(0x20, F.chksum[0], F.chksum[0] + 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  // 6 octal digits, NUL, space: the historical layout every reader accepts.
  block.write(sum.toString(8).padStart(6, '0'), F.chksum[0], 6, 'latin1');
  block[F.chksum[0] + 6] = 0;
  block[F.chksum[0] + 7] = 0x20;
}

/** `n` rounded up to a whole number of 512-byte blocks. */
export function paddedSize(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}
