import { spawn } from 'node:child_process';
import { GantryError } from '../../util/errors.js';

/**
 * Extended attributes, read with `getfattr` (package `attr`): Node has no getxattr(2). One
 * process serves a whole request (`-R` over an upperdir, or a list of paths), so a diff costs a
 * single spawn however many files carry xattrs.
 */

export type XattrMap = Map<string, Record<string, Buffer>>;

export interface GetfattrOptions {
  /** Walk directories (physically: symlinks are not followed). */
  recursive?: boolean;
  /** Only attributes whose name matches this regular expression (getfattr `-m`); default all. */
  match?: string;
  signal?: AbortSignal;
}

/** getfattr escapes bytes as `\ooo` in file names; decode back to the UTF-8 names readdir gives. */
function unescapeName(text: string): string {
  if (!text.includes('\\')) return text;
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const m = /^\\([0-7]{3})/.exec(text.slice(i, i + 4));
    if (m) {
      bytes.push(parseInt(m[1], 8));
      i += 3;
    } else {
      for (const b of Buffer.from(text[i], 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Parses `getfattr -d -e hex --absolute-names` output: `# file: P` then `name=0xHEX` lines. */
export function parseGetfattrDump(text: string): XattrMap {
  const out: XattrMap = new Map();
  let current: Record<string, Buffer> | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = {};
      out.set(unescapeName(line.slice(8)), current);
      continue;
    }
    if (line === '' || !current) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) {
      current[unescapeName(line)] = Buffer.alloc(0);
      continue;
    }
    const name = unescapeName(line.slice(0, eq));
    const value = line.slice(eq + 1);
    if (value.startsWith('0x')) current[name] = Buffer.from(value.slice(2), 'hex');
    else if (value.startsWith('"') && value.endsWith('"')) current[name] = Buffer.from(value.slice(1, -1), 'utf8');
    else current[name] = Buffer.from(value, 'utf8');
  }
  return out;
}

export function getfattrMissing(): GantryError {
  return new GantryError('UNSUPPORTED', '`getfattr` is not installed; it is needed to read extended attributes (file capabilities, overlay markers)', {
    hint: 'install the `attr` package (apt-get install attr / apk add attr)',
  });
}

/**
 * xattrs of the given absolute paths (and, with `recursive`, everything below them), keyed by
 * path. Paths without attributes are absent. A path that does not exist is an error.
 */
export function readXattrs(paths: readonly string[], opts: GetfattrOptions = {}): Promise<XattrMap> {
  if (paths.length === 0) return Promise.resolve(new Map());
  const args = ['--absolute-names', '-h', '-d', '-e', 'hex', '-m', opts.match ?? '-'];
  if (opts.recursive) args.push('-R', '-P');
  args.push('--', ...paths);
  return new Promise((resolve, reject) => {
    const child = spawn('getfattr', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' }, signal: opts.signal });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => {
      if (err.length < 16 * 1024) err += c;
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') reject(getfattrMissing());
      else if (e.code === 'ABORT_ERR') reject(new GantryError('ABORTED', 'reading extended attributes was cancelled'));
      else reject(new GantryError('IO', `getfattr failed: ${e.message}`));
    });
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new GantryError('IO', `getfattr exited with status ${code}: ${err.trim()}`));
        return;
      }
      resolve(parseGetfattrDump(Buffer.concat(out).toString('utf8')));
    });
  });
}

/** Overlay bookkeeping attributes: never part of an image. */
export function isOverlayXattr(name: string): boolean {
  return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.');
}

/** `trusted.overlay.opaque=y` (or `user.overlay.opaque=y` on a userxattr mount). */
export function isOpaqueMarked(attrs: Record<string, Buffer> | undefined): boolean {
  if (!attrs) return false;
  for (const name of ['trusted.overlay.opaque', 'user.overlay.opaque']) {
    const v = attrs[name];
    if (v && v.length === 1 && v[0] === 0x79 /* y */) return true;
  }
  return false;
}

/** Newer kernels may mark a whiteout as an empty regular file with `overlay.whiteout`. */
export function isXwhiteoutMarked(attrs: Record<string, Buffer> | undefined): boolean {
  return !!attrs && ('trusted.overlay.whiteout' in attrs || 'user.overlay.whiteout' in attrs);
}
