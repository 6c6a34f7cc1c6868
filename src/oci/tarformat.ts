import { GantryError } from '../util/errors.js';

/**
 * Just enough of the ustar format for the archives this folder writes and indexes (docker-archive
 * members: short ASCII names, regular files and directories). Layer tars are src/archive's job.
 */

export const BLOCK = 512;

export interface TarHeaderInput {
  name: string;
  size: number;
  type?: 'file' | 'directory';
  mode?: number;
  /** Seconds since the epoch; 0 keeps archives reproducible. */
  mtime?: number;
}

function octal(value: number, width: number): string {
  // width includes the terminating NUL
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** One 512-byte ustar header. Names over 100 bytes go into the prefix field when they can. */
export function tarHeader(input: TarHeaderInput): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  let name = input.name;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', 155);
    if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100) {
      throw new GantryError('INTERNAL', `tar member name too long for ustar: ${name}`);
    }
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  if (input.size > 0o77777777777) throw new GantryError('UNSUPPORTED', `tar member ${input.name} is larger than 8 GiB`);
  const dir = input.type === 'directory';
  h.write(name, 0, 100, 'utf8');
  h.write(octal(input.mode ?? (dir ? 0o755 : 0o644), 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(dir ? 0 : input.size, 12), 124, 'ascii');
  h.write(octal(input.mtime ?? 0, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(dir ? '5' : '0', 156, 'ascii');
  h.write('ustar\x0000', 257, 'binary');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

/** Zero bytes that pad a member's data to a block boundary. */
export function tarPadding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest, 0);
}

/** The end-of-archive marker: two zero blocks. */
export const TAR_END = Buffer.alloc(2 * BLOCK, 0);

/** A whole small tar in memory (tests, tiny synthetic layers). */
export function tarBytes(files: Array<{ name: string; content?: string | Buffer; type?: 'file' | 'directory'; mode?: number }>): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    const data = f.type === 'directory' ? Buffer.alloc(0) : Buffer.from(f.content ?? '');
    parts.push(tarHeader({ name: f.name, size: data.length, type: f.type ?? 'file', ...(f.mode !== undefined ? { mode: f.mode } : {}) }), data, tarPadding(data.length));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}
