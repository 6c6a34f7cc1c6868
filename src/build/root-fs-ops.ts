/**
 * The file system calls a COPY/ADD/WORKDIR step makes on the root it writes into, so that the same
 * code (copy.ts RootWriter, layers.ts entriesFromRoot, users.ts) writes either to disk (the
 * stage root, --link scratch directories) or to memory (a sparse root, path-root.ts). Paths are
 * host-style paths under the writer's root. Calls are synchronous like the ones they stand for.
 */
import {
  chmodSync,
  copyFileSync,
  createReadStream,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import type { Readable } from 'node:stream';

/** The part of fs.Stats the copy and the layer writer read. */
export interface RootStats {
  isDirectory(): boolean;
  isFile(): boolean;
  isSymbolicLink(): boolean;
  isFIFO(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  dev: number;
  ino: number;
  rdev: number;
  mtime: Date;
}

export interface RootFsOps {
  /** Whether lchown really sets owners (else the layer takes them from elsewhere). */
  readonly canChown: boolean;
  lstat(path: string): RootStats;
  readlink(path: string): string;
  readFile(path: string): Buffer;
  mkdir(path: string): void;
  chmod(path: string, mode: number): void;
  lchown(path: string, uid: number, gid: number): void;
  utimes(path: string, atime: Date, mtime: Date): void;
  lutimes(path: string, atime: Date, mtime: Date): void;
  /** Copies a host file (outside the root) to `dest`. */
  copyFile(src: string, dest: string): void;
  writeFile(path: string, data: Buffer): void;
  link(existing: string, path: string): void;
  symlink(target: string, path: string): void;
  unlink(path: string): void;
  /** rm -rf. */
  rmTree(path: string): void;
  /** A regular file's content for a layer: small files whole, larger ones streamed. */
  body(path: string, st: RootStats): Buffer | Readable;
}

/** Files up to this size are read whole (one call) instead of streamed (open, reads, close). */
export const READ_WHOLE_MAX = 1 << 20;

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** The real file system. */
export const diskOps: RootFsOps = {
  canChown: isRoot,
  lstat: (p) => lstatSync(p),
  readlink: (p) => readlinkSync(p),
  readFile: (p) => readFileSync(p),
  mkdir: (p) => mkdirSync(p),
  chmod: (p, m) => chmodSync(p, m),
  lchown: (p, u, g) => lchownSync(p, u, g),
  utimes: (p, a, m) => utimesSync(p, a, m),
  lutimes: (p, a, m) => lutimesSync(p, a, m),
  copyFile: (s, d) => copyFileSync(s, d),
  writeFile: (p, d) => writeFileSync(p, d),
  link: (e, p) => linkSync(e, p),
  symlink: (t, p) => symlinkSync(t, p),
  unlink: (p) => unlinkSync(p),
  rmTree: (p) => rmSync(p, { recursive: true, force: true }),
  body: (p, st) => (st.size === 0 ? Buffer.alloc(0) : st.size <= READ_WHOLE_MAX ? readFileSync(p) : createReadStream(p)),
};
