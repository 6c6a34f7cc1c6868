import type { Readable } from 'node:stream';
import { GantryError, isGantryError } from '../util/errors.js';
import { backoffDelay } from '../util/retry.js';
import type { Descriptor } from '../oci/types.js';
import type { RegistryClient } from './client.js';
import { pullScope, pushScope } from './auth/scope.js';
import type { Repository } from './reference.js';
import { isRetryableStatus } from './response-error.js';
import { headerValue, isTransientNetworkError, pause, type HttpResponse } from './transport.js';

export interface UploadOptions {
  signal?: AbortSignal;
  /** A repository on the same registry that has the blob: try a cross-repo mount first. */
  mountFrom?: Repository;
}

/** HEAD the blob: whether the repository already has it (and with the expected size). */
export async function hasBlob(client: RegistryClient, repo: Repository, desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
  if (client.knowsBlob(repo.registry, repo.repository, desc.digest)) return true;
  const res = await client.request({
    registry: repo.registry,
    method: 'HEAD',
    path: `/v2/${repo.repository}/blobs/${desc.digest}`,
    scopes: [pushScope(repo.repository)],
    // A redirect to storage already says the registry has it; following it would HEAD a URL
    // presigned for GET, which S3-style backends refuse.
    expect: [200, 404, 301, 302, 303, 307, 308],
    redirects: false,
    ctx: { what: `checking blob ${desc.digest} in ${repo.registry}/${repo.repository}`, kind: 'blob' },
    signal,
  });
  await res.body.dump();
  if (res.status === 404) return false;
  const size = Number(headerValue(res.headers, 'content-length'));
  const present = res.status !== 200 || !(Number.isFinite(size) && desc.size >= 0 && size !== desc.size && size !== 0);
  if (present) client.rememberBlob(repo.registry, repo.repository, desc.digest);
  return present;
}

function locationOf(res: HttpResponse, what: string): URL {
  const loc = headerValue(res.headers, 'location');
  if (!loc) throw new GantryError('REGISTRY_ERROR', `${what}: the registry answered ${res.status} without a Location header`);
  // Locations may be relative or absolute, on another host, and carry state in the query: use as given.
  return new URL(loc, res.url);
}

function retryable(err: unknown): boolean {
  if (isTransientNetworkError(err)) return true;
  if (isGantryError(err)) {
    const status = err.details.status;
    if (typeof status === 'number' && (isRetryableStatus(status) || status === 416)) return true;
    // A session the registry lost (restart, GC) is recoverable by starting over.
    const codes = err.details.registryCodes;
    if (Array.isArray(codes) && codes.includes('BLOB_UPLOAD_UNKNOWN')) return true;
  }
  return false;
}

/**
 * Uploads a blob: cross-repo mount when possible (201 = done, 202 = the registry opened an upload
 * session instead, which we use), else POST + PUT (monolithic) or POST + PATCH… + PUT (chunked,
 * `chunkSize` > 0). A failed transfer is retried from a fresh session up to `retries` times;
 * failed chunks resume from the offset the registry reports.
 */
export async function uploadBlob(client: RegistryClient, repo: Repository, desc: Descriptor, open: () => Promise<Readable>, opts: UploadOptions = {}): Promise<'mounted' | 'uploaded'> {
  const what = `pushing blob ${desc.digest} to ${repo.registry}/${repo.repository}`;
  let session: UploadSession | undefined;
  if (opts.mountFrom && opts.mountFrom.registry === repo.registry && opts.mountFrom.repository !== repo.repository) {
    const res = await client.request({
      registry: repo.registry,
      method: 'POST',
      path: `/v2/${repo.repository}/blobs/uploads/?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(opts.mountFrom.repository)}`,
      headers: { 'content-length': '0' },
      scopes: [pushScope(repo.repository), pullScope(opts.mountFrom.repository)],
      expect: [201, 202],
      ctx: { what: `${what} (mounting from ${opts.mountFrom.repository})`, kind: 'upload' },
      signal: opts.signal,
    });
    await res.body.dump();
    if (res.status === 201) {
      client.rememberBlob(repo.registry, repo.repository, desc.digest);
      return 'mounted';
    }
    session = sessionOf(res, what);
  }
  const backoff = { attempts: client.options.retries + 1, ...client.options.backoff };
  // Open the source while the upload session is being created: the two round trips overlap. The
  // first attempt sends that stream; retries and auth replays open the source again.
  let early: Promise<Readable> | undefined = (async () => open())();
  early.catch(() => undefined);
  const openOnce = (): Promise<Readable> => {
    const p = early ?? open();
    early = undefined;
    return p;
  };
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        const current = session ?? (await startUpload(client, repo, what, opts.signal));
        session = undefined;
        if (client.options.chunkSize > 0) {
          // Registries may demand a minimum chunk (OCI-Chunk-Min-Length); every chunk but the last must meet it.
          const size = Math.max(client.options.chunkSize, current.minChunk ?? 0);
          await chunked(client, repo, desc, openOnce, current.location, size, what, opts.signal);
        } else {
          await monolithic(client, repo, desc, openOnce, current.location, what, opts.signal);
        }
        client.rememberBlob(repo.registry, repo.repository, desc.digest);
        return 'uploaded';
      } catch (err) {
        if (attempt > client.options.retries || opts.signal?.aborted || !retryable(err)) throw err;
        client.options.logger.log('debug', `${what}: ${(err as Error).message}; retrying the upload`);
        await pause(backoffDelay(backoff, attempt), opts.signal);
      }
    }
  } finally {
    // Never sent (the session could not be created): release the source.
    early?.then((s) => s.destroy(), () => undefined);
  }
}

interface UploadSession {
  location: URL;
  minChunk?: number;
}

function sessionOf(res: HttpResponse, what: string): UploadSession {
  const min = Number(headerValue(res.headers, 'oci-chunk-min-length'));
  return { location: locationOf(res, what), ...(Number.isInteger(min) && min > 0 ? { minChunk: min } : {}) };
}

async function startUpload(client: RegistryClient, repo: Repository, what: string, signal?: AbortSignal): Promise<UploadSession> {
  const res = await client.request({
    registry: repo.registry,
    method: 'POST',
    path: `/v2/${repo.repository}/blobs/uploads/`,
    headers: { 'content-length': '0' },
    scopes: [pushScope(repo.repository)],
    expect: [202],
    ctx: { what: `${what} (starting upload)`, kind: 'upload' },
    signal,
  });
  await res.body.dump();
  return sessionOf(res, what);
}

function withDigest(location: URL, digest: string): URL {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u;
}

async function monolithic(client: RegistryClient, repo: Repository, desc: Descriptor, open: () => Promise<Readable>, location: URL, what: string, signal?: AbortSignal): Promise<void> {
  const res = await client.request({
    registry: repo.registry,
    method: 'PUT',
    path: withDigest(location, desc.digest),
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
    body: open,
    scopes: [pushScope(repo.repository)],
    expect: [201, 204],
    // A half-sent PUT leaves the session in an unknown state: retry from a new session instead.
    retry: false,
    ctx: { what, kind: 'upload' },
    signal,
  });
  await res.body.dump();
}

/** Cuts a stream into buffers of exactly `size` bytes (the last may be shorter); one chunk in memory at a time. */
async function* chunksOf(stream: Readable, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  for await (const data of stream as AsyncIterable<Buffer>) {
    let buf = data;
    while (buf.length > 0) {
      const take = Math.min(size - have, buf.length);
      parts.push(buf.subarray(0, take));
      have += take;
      buf = buf.subarray(take);
      if (have === size) {
        yield parts.length === 1 ? parts[0]! : Buffer.concat(parts);
        parts = [];
        have = 0;
      }
    }
  }
  if (have > 0) yield Buffer.concat(parts);
}

/** Upload status: how many bytes the registry holds for this session (and where to continue). */
async function uploadStatus(client: RegistryClient, repo: Repository, location: URL, what: string, signal?: AbortSignal): Promise<{ offset: number; location: URL }> {
  const res = await client.request({
    registry: repo.registry,
    method: 'GET',
    path: location,
    scopes: [pushScope(repo.repository)],
    expect: [204, 200],
    ctx: { what: `${what} (querying upload status)`, kind: 'upload' },
    signal,
  });
  await res.body.dump();
  const range = /^(?:bytes=)?(\d+)-(\d+)$/.exec(headerValue(res.headers, 'range') ?? '');
  // distribution answers "0-0" for an empty session too, so that one is read as 0 bytes: if the
  // registry really holds one byte, resending it gets a 416 and the upload restarts cleanly.
  const offset = range && !(range[1] === '0' && range[2] === '0') ? Number(range[2]) + 1 : 0;
  return { offset, location: headerValue(res.headers, 'location') ? locationOf(res, what) : location };
}

async function chunked(client: RegistryClient, repo: Repository, desc: Descriptor, open: () => Promise<Readable>, start: URL, chunkSize: number, what: string, signal?: AbortSignal): Promise<void> {
  let location = start;
  let offset = 0;
  let failures = 0;
  const source = await open();
  try {
    for await (const chunk of chunksOf(source, chunkSize)) {
      const chunkStart = offset;
      let pending = chunk;
      while (pending.length > 0) {
        const body = pending;
        try {
          const res = await client.request({
            registry: repo.registry,
            method: 'PATCH',
            path: location,
            headers: {
              'content-type': 'application/octet-stream',
              'content-range': `${offset}-${offset + body.length - 1}`,
              'content-length': String(body.length),
            },
            body: () => body,
            scopes: [pushScope(repo.repository)],
            expect: [202, 204],
            retry: false,
            ctx: { what: `${what} (chunk at byte ${offset})`, kind: 'upload' },
            signal,
          });
          await res.body.dump();
          if (headerValue(res.headers, 'location')) location = locationOf(res, what);
          offset += body.length;
          pending = pending.subarray(body.length);
        } catch (err) {
          failures++;
          if (failures > client.options.retries || signal?.aborted || !retryable(err)) throw err;
          // The registry may have stored some or all of the chunk before failing: ask, then resend the rest.
          const status = await uploadStatus(client, repo, location, what, signal);
          location = status.location;
          if (status.offset < chunkStart || status.offset > chunkStart + chunk.length) {
            throw new GantryError('REGISTRY_ERROR', `${what}: the upload session holds ${status.offset} bytes, expected between ${chunkStart} and ${chunkStart + chunk.length}`, { status: 416 });
          }
          offset = status.offset;
          pending = chunk.subarray(offset - chunkStart);
          client.options.logger.log('debug', `${what}: chunk failed (${(err as Error).message}); resuming at byte ${offset}`);
        }
      }
    }
  } finally {
    source.destroy();
  }
  if (desc.size >= 0 && offset !== desc.size) {
    throw new GantryError('SIZE_MISMATCH', `${what}: the source produced ${offset} bytes, the descriptor says ${desc.size}`);
  }
  const res = await client.request({
    registry: repo.registry,
    method: 'PUT',
    path: withDigest(location, desc.digest),
    headers: { 'content-type': 'application/octet-stream', 'content-length': '0' },
    scopes: [pushScope(repo.repository)],
    expect: [201, 204],
    ctx: { what: `${what} (completing upload)`, kind: 'upload' },
    signal,
  });
  await res.body.dump();
}

/** Best-effort cancel of an upload session (e.g. the push-permission probe). */
export async function cancelUpload(client: RegistryClient, repo: Repository, location: URL, signal?: AbortSignal, opts: { authReplay?: boolean } = {}): Promise<void> {
  const res = await client.request({
    ...(opts.authReplay === false ? { authReplay: false, retry: false } : {}),
    registry: repo.registry,
    method: 'DELETE',
    path: location,
    scopes: [pushScope(repo.repository)],
    expect: [200, 202, 204, 404],
    ctx: { what: `cancelling upload to ${repo.registry}/${repo.repository}`, kind: 'upload' },
    signal,
  });
  await res.body.dump();
}

/**
 * Kaniko checks push access before building so a 40-minute build does not fail at the end: open
 * an upload session (needs a push token and write permission) and cancel it.
 */
export async function checkPushPermission(client: RegistryClient, repo: Repository, signal?: AbortSignal, opts: { waitForCancel?: boolean } = {}): Promise<void> {
  const what = `checking push permission for ${repo.registry}/${repo.repository}`;
  const res = await client.request({
    registry: repo.registry,
    method: 'POST',
    path: `/v2/${repo.repository}/blobs/uploads/`,
    headers: { 'content-length': '0' },
    scopes: [pushScope(repo.repository)],
    expect: [202],
    ctx: { what, kind: 'permission' },
    signal,
  });
  await res.body.dump();
  const loc = headerValue(res.headers, 'location');
  if (!loc) return;
  // The answer is in: cancelling the session is courtesy (registries expire idle sessions), so it
  // is not waited for unless the client is about to close, and not worth a second token where a
  // DELETE needs a `delete` scope (as in go-containerregistry's check).
  const cancelled = cancelUpload(client, repo, new URL(loc, res.url), signal, { authReplay: false }).catch(() => undefined);
  if (opts.waitForCancel) await cancelled;
}
