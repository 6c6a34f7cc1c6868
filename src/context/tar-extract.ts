/**
 * Extracts a context tarball (plain or compressed) into an empty directory, refusing anything
 * that could write outside it: absolute names, `..` components, and entries or hard links that
 * would pass through a symlink the archive created. src/fs has the full layer unpacker, but the
 * import rules (DESIGN.md §3) keep src/context on util/dockerfile/archive, and a context needs far
 * less (no whiteouts, owners, xattrs or devices), so this is a deliberately small sibling.
 */
import { constants } from 'node:fs';
import { chmod, link, lstat, lutimes, mkdir, open, rmdir, symlink, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { decompressStream, detectCompression, MAGIC_BYTES, readTar, type ReadTarHeader } from '../archive/index.js';
import { GantryError, wrapError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';

export interface ExtractOptions {
  /** Names the archive in messages (`tar://ctx.tar.gz`, `stdin`). */
  source: string;
  signal?: AbortSignal;
  logger?: Logger;
}

export interface ExtractStats {
  entries: number;
  bytes: number;
}

function unsafe(source: string, entry: string, why: string): GantryError {
  return new GantryError('UNSAFE_PATH', `context archive ${source}: entry "${entry}" ${why}`, {
    hint: 'the archive is malformed or hostile; build it from a directory with tar -C <dir> .',
    entry,
  });
}

/** `./a//b/` -> `a/b`; '' is the root itself. Rejects absolute names and any `..`. */
export function safeEntryPath(source: string, name: string): string {
  if (name.startsWith('/')) throw unsafe(source, name, 'is an absolute path');
  if (name.includes('\0')) throw unsafe(source, name, 'contains a NUL byte');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw unsafe(source, name, 'contains ".." and could escape the context');
  return parts.join('/');
}

/**
 * Reads the first bytes without consuming them and returns a stream of the decompressed tar.
 * Compression is whatever src/archive recognises by its magic bytes.
 */
export async function decompressedTar(input: Readable, source: string): Promise<Readable> {
  const { head, stream } = await peek(input, MAGIC_BYTES);
  if (head.length === 0) {
    throw new GantryError('CONTEXT_INVALID', `context archive ${source} is empty`, { hint: 'pipe a tar archive (optionally compressed) of the context directory' });
  }
  const kind = detectCompression(head);
  if (kind === 'none') return stream;
  const decoder = await decompressStream(kind);
  stream.on('error', (err) => decoder.destroy(err));
  return stream.pipe(decoder);
}

/** The first `n` bytes of `input`, and a stream that still yields everything from the start. */
function peek(input: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const detach = () => {
      input.off('readable', onReadable);
      input.off('end', onEnd);
      input.off('error', onError);
    };
    const onEnd = () => {
      detach();
      const all = Buffer.concat(chunks);
      resolve({ head: all.subarray(0, n), stream: Readable.from(all.length ? [all] : []) });
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while (length < n && (chunk = input.read() as Buffer | null) !== null) {
        chunks.push(chunk);
        length += chunk.length;
      }
      if (length >= n) {
        detach();
        const head = Buffer.concat(chunks);
        input.unshift(head);
        resolve({ head: head.subarray(0, n), stream: input });
      }
    };
    const onError = (err: Error) => {
      detach();
      reject(err);
    };
    input.on('readable', onReadable);
    input.on('end', onEnd);
    input.on('error', onError);
  });
}

interface PendingDir {
  path: string;
  mode: number;
  mtime: number;
}

/** Extracts `input` (any supported compression) into `dest`, which must exist and be empty. */
export async function extractContextTar(input: Readable, dest: string, opts: ExtractOptions): Promise<ExtractStats> {
  const logger = opts.logger ?? silentLogger;
  const { source, signal } = opts;
  const stats: ExtractStats = { entries: 0, bytes: 0 };
  // Directories known to be real directories (not symlinks) below dest, by relative path.
  const realDirs = new Set<string>(['']);
  const dirs: PendingDir[] = [];

  async function ensureParents(rel: string, entry: string): Promise<void> {
    const parts = rel.split('/');
    let prefix = '';
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = prefix === '' ? parts[i]! : `${prefix}/${parts[i]}`;
      if (realDirs.has(prefix)) continue;
      const abs = join(dest, prefix);
      const st = await lstat(abs).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      if (!st) await mkdir(abs, { mode: 0o755 });
      else if (st.isSymbolicLink()) throw unsafe(source, entry, `would be written through the symlink "${prefix}"`);
      else if (!st.isDirectory()) {
        throw new GantryError('ARCHIVE_INVALID', `context archive ${source}: entry "${entry}" needs "${prefix}" to be a directory, but the archive made it a file`);
      }
      realDirs.add(prefix);
    }
  }

  /** Tar semantics: a later entry replaces an earlier one of the same name. */
  async function clear(rel: string, abs: string, entry: string, keepDir: boolean): Promise<void> {
    const st = await lstat(abs).catch(() => undefined);
    if (!st) return;
    if (st.isDirectory()) {
      if (keepDir) return;
      try {
        await rmdir(abs);
      } catch (err) {
        throw wrapError(err, `context archive ${source}: entry "${entry}" replaces a non-empty directory`, 'ARCHIVE_INVALID');
      }
      realDirs.delete(rel);
      return;
    }
    await unlink(abs);
  }

  async function writeEntry(header: ReadTarHeader, body: Readable): Promise<void> {
    const entry = header.name;
    const rel = safeEntryPath(source, entry);
    if (rel === '') {
      if (header.type === 'dir') dirs.push({ path: dest, mode: header.mode, mtime: header.mtime });
      return;
    }
    await ensureParents(rel, entry);
    const abs = join(dest, rel);
    switch (header.type) {
      case 'dir': {
        await clear(rel, abs, entry, true);
        await mkdir(abs, { mode: 0o755 }).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'EEXIST') throw err;
        });
        realDirs.add(rel);
        dirs.push({ path: abs, mode: header.mode, mtime: header.mtime });
        return;
      }
      case 'file': {
        await clear(rel, abs, entry, false);
        // O_EXCL|O_NOFOLLOW: the path was cleared just above, so anything there now is a race.
        const fh = await open(abs, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        try {
          for await (const chunk of body) await fh.write(chunk as Buffer);
          await fh.chmod(header.mode & 0o7777);
          await fh.utimes(header.mtime, header.mtime);
        } finally {
          await fh.close();
        }
        stats.bytes += header.size;
        return;
      }
      case 'symlink': {
        await clear(rel, abs, entry, false);
        // The target is content (COPY copies the link itself); it is never followed here.
        await symlink(header.linkname ?? '', abs);
        await lutimes(abs, header.mtime, header.mtime).catch(() => undefined);
        return;
      }
      case 'hardlink': {
        let target: string;
        try {
          target = safeEntryPath(source, header.linkname ?? '');
        } catch {
          throw unsafe(source, entry, `is a hard link to "${header.linkname}", outside the context`);
        }
        if (target === '') throw unsafe(source, entry, 'is a hard link to the context root');
        await ensureParents(target, entry);
        const targetAbs = join(dest, target);
        const st = await lstat(targetAbs).catch(() => undefined);
        if (!st || !st.isFile()) {
          throw new GantryError('ARCHIVE_INVALID', `context archive ${source}: hard link "${entry}" points to "${header.linkname}", which is not a file earlier in the archive`);
        }
        await clear(rel, abs, entry, false);
        await link(targetAbs, abs);
        return;
      }
      default:
        // Devices and FIFOs cannot be created unprivileged and have no place in a build context.
        logger.log('debug', `context archive ${source}: skipping ${header.type} entry "${entry}"`);
    }
  }

  const tar = await decompressedTar(input, source);
  for await (const { header, body } of readTar(tar)) {
    signal?.throwIfAborted();
    try {
      await writeEntry(header, body);
    } catch (err) {
      if (err instanceof GantryError) throw err;
      throw wrapError(err, `context archive ${source}: extracting "${header.name}"`);
    }
    stats.entries++;
  }
  // Deepest first, so a read-only directory is locked only after its children are written.
  dirs.sort((a, b) => b.path.length - a.path.length);
  for (const d of dirs) {
    // A later entry may have replaced the directory with something else.
    const st = await lstat(d.path).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    await chmod(d.path, d.mode & 0o7777);
    await utimes(d.path, d.mtime, d.mtime);
  }
  return stats;
}
