/**
 * `ADD <url>`: the file is downloaded as BuildKit's HTTP source does it: named after the last
 * path segment of the URL (`__unnamed__` when there is none), mode 0600, mtime from
 * Last-Modified, never unpacked, and checked against `--checksum` when given.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { join, posix } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GantryError, wrapError } from '../util/errors.js';

export interface Download {
  host: string;
  name: string;
  mtime?: Date;
  digest: string;
}

export function isUrlSource(src: string): boolean {
  return /^https?:\/\//i.test(src) && !isGitSource(src);
}

/** `git@host:repo`, `ssh://`, `git://`, or an http(s) URL ending in `.git` (optionally `#ref`). */
export function isGitSource(src: string): boolean {
  return /^(git@|ssh:\/\/|git:\/\/)/.test(src) || (/^https?:\/\//i.test(src) && /\.git(#.*)?$/.test(src));
}

export function urlFileName(src: string): string {
  try {
    const base = posix.basename(new URL(src).pathname);
    return base === '' || base === '.' || base === '/' ? '__unnamed__' : base;
  } catch {
    return '__unnamed__';
  }
}

/** Downloads `url` into `dir`; verifies `checksum` (`sha256:<hex>`) when given. */
export async function download(url: string, dir: string, checksum: string | undefined, signal?: AbortSignal): Promise<Download> {
  if (checksum !== undefined && !/^sha(256|384|512):[0-9a-f]+$/.test(checksum)) {
    throw new GantryError('INVALID_ARGUMENT', `invalid checksum ${checksum}`, { hint: 'use --checksum=sha256:<64 hex digits>' });
  }
  const name = urlFileName(url);
  const host = join(dir, name);
  const algorithm = checksum ? checksum.slice(0, checksum.indexOf(':')) : 'sha256';
  const hash = createHash(algorithm);
  let lastModified: string | undefined;
  try {
    // Loaded here, not at the top: undici costs ~25 ms at start-up, and most builds have no ADD <url>.
    const { request } = await import('undici');
    let current = url;
    for (let hops = 0; ; hops++) {
      const res = await request(current, { method: 'GET', signal, headers: { 'user-agent': 'gantry' } });
      if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location && hops < 10) {
        await res.body.dump();
        current = new URL(String(res.headers.location), current).toString();
        continue;
      }
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new GantryError('NOT_FOUND', `invalid response status ${res.statusCode}`, { status: res.statusCode, hint: 'check the URL; ADD only downloads from URLs that answer 200' });
      }
      const lm = res.headers['last-modified'];
      lastModified = Array.isArray(lm) ? lm[0] : lm;
      const hasher = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      await pipeline(res.body, hasher, createWriteStream(host, { mode: 0o600 }));
      break;
    }
  } catch (err) {
    throw wrapError(err, `downloading ${url}`);
  }
  const digest = `${algorithm}:${hash.digest('hex')}`;
  if (checksum !== undefined && digest !== checksum) {
    throw new GantryError('DIGEST_MISMATCH', `downloading ${url}: digest mismatch ${digest}: expected ${checksum}`, {
      hint: 'the file at the URL changed, or --checksum is wrong',
    });
  }
  const out: Download = { host, name, digest };
  if (lastModified) {
    const t = Date.parse(lastModified);
    if (!Number.isNaN(t)) out.mtime = new Date(t);
  }
  return out;
}
