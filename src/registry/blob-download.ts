import type { Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { GantryError } from '../util/errors.js';
import { hasherFor, parseDigest } from '../util/digest.js';
import type { Logger } from '../util/logger.js';
import { backoffDelay, type BackoffPolicy } from '../util/retry.js';
import type { Descriptor } from '../oci/types.js';
import type { RegistryClient } from './client.js';
import { pullScope, pushScope } from './auth/scope.js';
import type { Repository } from './reference.js';
import { headerValue, isTransientNetworkError, pause, type HttpResponse } from './transport.js';

/**
 * Response bytes buffered per blob before the socket is paused. undici's 64 KiB default pauses
 * and resumes the socket for nearly every chunk of a layer that is being re-uploaded.
 */
export const BLOB_HIGH_WATER_MARK = 1024 * 1024;

/**
 * Opens a blob for reading. The stream is verified (digest and size) and survives dropped
 * connections: it re-requests the rest with `Range: bytes=<received>-` up to `retries` times, so a
 * reset 900 MB into a 1 GB layer costs 100 MB, not 1 GB.
 */
export async function openBlob(client: RegistryClient, repo: Repository, desc: Descriptor, opts: { signal?: AbortSignal; push?: boolean } = {}): Promise<Readable> {
  const what = `pulling blob ${desc.digest} from ${repo.registry}/${repo.repository}`;
  const scopes = [opts.push ? pushScope(repo.repository) : pullScope(repo.repository)];
  const fetchFrom = (offset: number) =>
    client.request({
      registry: repo.registry,
      method: 'GET',
      path: `/v2/${repo.repository}/blobs/${desc.digest}`,
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
      scopes,
      expect: offset > 0 ? [200, 206] : [200],
      ctx: { what, kind: 'blob' },
      signal: opts.signal,
      highWaterMark: BLOB_HIGH_WATER_MARK,
    });
  const first = await fetchFrom(0);
  return new BlobStream(first, {
    desc,
    what,
    verifying: `blob ${desc.digest} from ${repo.registry}/${repo.repository}`,
    fetchFrom,
    retries: client.options.retries,
    backoff: { attempts: client.options.retries + 1, ...client.options.backoff },
    logger: client.options.logger,
    signal: opts.signal,
  });
}

interface BlobStreamParams {
  desc: Descriptor;
  what: string;
  /** Subject of SIZE_MISMATCH / DIGEST_MISMATCH messages. */
  verifying: string;
  fetchFrom(offset: number): Promise<HttpResponse>;
  retries: number;
  backoff: BackoffPolicy;
  logger: Logger;
  signal: AbortSignal | undefined;
}

/**
 * A blob as one Readable over the response bodies: each chunk is counted and hashed as it passes
 * (no stage in between), the stream fails with SIZE_MISMATCH as soon as it runs past the
 * descriptor's size and with DIGEST_MISMATCH instead of ending when the content is not the
 * descriptor's, and a dropped connection is resumed with a Range request.
 */
class BlobStream extends Readable {
  private res: HttpResponse;
  private readonly hash: Hash;
  private received = 0;
  /** Bytes to drop from the current response: a server that ignored Range restarts at byte 0. */
  private skip = 0;
  private resumes = 0;
  private reconnecting = false;

  constructor(
    first: HttpResponse,
    private readonly p: BlobStreamParams,
  ) {
    super({ highWaterMark: BLOB_HIGH_WATER_MARK });
    this.hash = hasherFor(p.desc.digest);
    this.res = first;
    this.attach(first);
  }

  private attach(res: HttpResponse): void {
    this.res = res;
    res.body.on('data', this.onData);
    res.body.once('end', this.onEnd);
    res.body.once('error', this.onError);
  }

  /** Stops listening to a response and releases its connection. */
  private release(res: HttpResponse): void {
    res.body.off('data', this.onData);
    res.body.off('end', this.onEnd);
    res.body.off('error', this.onError);
    // undici reports destroying an unfinished body as an error; nobody is listening for it any more.
    res.body.on('error', () => undefined);
    res.body.destroy();
  }

  private readonly onData = (chunk: Buffer): void => {
    let c = chunk;
    if (this.skip > 0) {
      const drop = Math.min(this.skip, c.length);
      this.skip -= drop;
      c = c.subarray(drop);
      if (c.length === 0) return;
    }
    const size = this.p.desc.size;
    if (size >= 0 && this.received + c.length > size) {
      this.release(this.res);
      this.destroy(new GantryError('SIZE_MISMATCH', `${this.p.verifying}: more than the expected ${size} bytes`));
      return;
    }
    this.received += c.length;
    this.hash.update(c);
    if (!this.push(c)) this.res.body.pause();
  };

  private readonly onEnd = (): void => {
    const { desc, verifying } = this.p;
    if (desc.size >= 0 && this.received < desc.size) {
      this.onError(new GantryError('REGISTRY_UNREACHABLE', `${this.p.what}: connection ended after ${this.received} of ${desc.size} bytes`, { errno: 'UND_ERR_SOCKET' }));
      return;
    }
    const actual = `${parseDigest(desc.digest).algorithm}:${this.hash.digest('hex')}`;
    if (actual !== desc.digest) {
      this.destroy(new GantryError('DIGEST_MISMATCH', `${verifying}: content has digest ${actual}`, { expected: desc.digest, actual }));
      return;
    }
    this.push(null);
  };

  private readonly onError = (err: unknown): void => {
    this.release(this.res);
    if (this.destroyed) return;
    const { what, signal } = this.p;
    if (signal?.aborted || this.resumes >= this.p.retries || !isTransientNetworkError(err)) {
      this.destroy(err instanceof GantryError ? err : new GantryError('REGISTRY_UNREACHABLE', `${what}: ${(err as Error).message} after ${this.received} bytes`, {}, { cause: err }));
      return;
    }
    this.resumes++;
    this.p.logger.log('debug', `${what}: connection lost after ${this.received} bytes (${(err as Error).message}); resuming`);
    this.reconnecting = true;
    this.reconnect().then(
      (res) => {
        this.reconnecting = false;
        if (this.destroyed) this.release(res);
        else this.attach(res);
      },
      (e: unknown) => {
        this.reconnecting = false;
        this.destroy(e as Error);
      },
    );
  };

  /** Requests the rest of the blob after a backoff and checks where the answer starts. */
  private async reconnect(): Promise<HttpResponse> {
    await pause(backoffDelay(this.p.backoff, this.resumes), this.p.signal);
    if (this.destroyed) throw new GantryError('ABORTED', `${this.p.what}: the reader was closed`);
    const res = await this.p.fetchFrom(this.received);
    this.skip = 0;
    if (res.status === 200) {
      this.skip = this.received;
    } else {
      const start = /^bytes (\d+)-/.exec(headerValue(res.headers, 'content-range') ?? '');
      if (start && Number(start[1]) !== this.received) {
        res.body.destroy();
        throw new GantryError('REGISTRY_ERROR', `${this.p.what}: asked to resume at byte ${this.received}, the registry answered from byte ${start[1]}`);
      }
    }
    return res;
  }

  override _read(): void {
    if (!this.reconnecting) this.res.body.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.reconnecting) this.release(this.res);
    cb(err);
  }
}
