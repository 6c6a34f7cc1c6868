import type { Readable } from 'node:stream';

/**
 * One layer entry, as src/archive's `readTar` yields it (unpack-layer-stream.ts passes one to the
 * other, so the compiler keeps the two in step). Declared structurally, and a little looser
 * (Date mtimes, optional xattrs), so producers other than a tar reader can feed the unpacker.
 */
export type LayerEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface LayerEntryHeader {
  name: string;
  type: LayerEntryType;
  /** Permission bits including setuid/setgid/sticky; file-type bits, if present, are ignored. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** A Date, or seconds since the epoch (PAX mtimes may be fractional). */
  mtime: Date | number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, Buffer>;
}

export interface LayerEntry {
  header: LayerEntryHeader;
  body: Readable;
}

export interface UnpackStats {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** `.wh.<name>` and `.wh..wh..opq` entries applied. */
  whiteouts: number;
  devices: number;
  fifos: number;
  /** Entries not materialised: under an ignored path, aufs metadata, devices skipped by policy. */
  skipped: number;
  /** Bytes of regular-file content written. */
  bytes: number;
}
