import { createReadStream, readlinkSync, type Stats } from 'node:fs';
import type { LayerEntry, TarHeader } from '../../archive/index.js';

/**
 * The tar entry of a non-directory, given its lstat and a header already holding name, mode,
 * owners, mtime and xattrs. Shared by both snapshotters (overlay upper-dir diff, walk snapshot):
 * a second name for an inode archived earlier becomes a hard link (`firstLink` remembers inodes
 * by `dev:ino`). Returns undefined for sockets, which tar cannot hold (docker and BuildKit drop
 * them too).
 */
export function statEntry(header: TarHeader, st: Stats, hostPath: string, firstLink: Map<string, string>): LayerEntry | undefined {
  if (st.nlink > 1) {
    const key = `${st.dev}:${st.ino}`;
    const first = firstLink.get(key);
    if (first !== undefined) return { header: { ...header, type: 'hardlink', linkname: first, size: 0 } };
    firstLink.set(key, header.name);
  }
  if (st.isFile()) {
    header.size = st.size;
    return { header, body: st.size > 0 ? createReadStream(hostPath) : Buffer.alloc(0) };
  }
  if (st.isSymbolicLink()) return { header: { ...header, type: 'symlink', linkname: readlinkSync(hostPath) } };
  if (st.isCharacterDevice() || st.isBlockDevice()) {
    const { major, minor } = deviceNumbers(st.rdev);
    return { header: { ...header, type: st.isCharacterDevice() ? 'char' : 'block', devmajor: major, devminor: minor } };
  }
  if (st.isFIFO()) return { header: { ...header, type: 'fifo' } };
  return undefined;
}

/** Linux dev_t (as Node's `rdev`) split into major and minor, glibc's encoding. */
export function deviceNumbers(rdev: number): { major: number; minor: number } {
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev % 2 ** 32;
  const major = ((lo >>> 8) & 0xfff) | ((hi & 0xfffff000) >>> 0);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xfff00);
  return { major, minor };
}
