import { createHash } from 'node:crypto';
import { backoffDelay } from '../util/retry.js';
import { GantryError } from '../util/errors.js';
import { isDigest, parseDigest, sha256 } from '../util/digest.js';
import { MediaType, type Descriptor, type RawManifest } from '../oci/types.js';
import { baseMediaType, isSchema1 } from '../oci/mediatype.js';
import type { RegistryClient } from './client.js';
import { pullScope, pushScope } from './auth/scope.js';
import { readLimitedBuffer } from './response-error.js';
import { headerValue, pause } from './transport.js';
import type { Repository } from './reference.js';

/** Every manifest kind we can read; without an explicit Accept, old registries serve schema 1. */
export const MANIFEST_ACCEPT = [MediaType.OciIndex, MediaType.OciManifest, MediaType.DockerManifestList, MediaType.DockerManifest].join(', ');

/** Registries must accept 4 MB manifests; larger ones are a sign of a hostile or broken server. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export function digestOf(bytes: Buffer, algorithm = 'sha256'): string {
  return algorithm === 'sha256' ? sha256(bytes) : `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

function baseType(contentType: string | undefined): string | undefined {
  return contentType ? baseMediaType(contentType) || undefined : undefined;
}

/**
 * The manifest's media type: its own `mediaType` field when present (that is what the digest
 * covers), else Content-Type, else guessed from the shape (OCI manifests may omit both).
 */
export function manifestMediaType(bytes: Buffer, contentType: string | undefined, what: string): string {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new GantryError('MANIFEST_INVALID', `${what}: the manifest is not valid JSON`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new GantryError('MANIFEST_INVALID', `${what}: the manifest is not a JSON object`);
  const obj = doc as Record<string, unknown>;
  if (obj.schemaVersion === 1 || (contentType && isSchema1(contentType))) {
    throw new GantryError('MANIFEST_INVALID', `${what}: the registry only has a Docker schema 1 manifest, which is deprecated and not supported`, {
      hint: 'push the image again with a current Docker/BuildKit/gantry so the registry stores a schema 2 or OCI manifest',
    });
  }
  if (typeof obj.mediaType === 'string' && obj.mediaType) return obj.mediaType;
  const ct = baseType(contentType);
  if (ct && ct !== 'application/json' && ct !== 'application/octet-stream' && ct !== 'text/plain') return ct;
  if (Array.isArray(obj.manifests)) return MediaType.OciIndex;
  if (obj.config && typeof obj.config === 'object') return MediaType.OciManifest;
  throw new GantryError('MANIFEST_INVALID', `${what}: cannot tell the manifest type (no mediaType field, Content-Type ${contentType ?? 'missing'})`);
}

function manifestPath(repo: Repository, ref: string): string {
  return `/v2/${repo.repository}/manifests/${ref}`;
}

function checkRef(ref: string, what: string): void {
  if (ref.includes('@') || ref.includes('/')) throw new GantryError('REFERENCE_INVALID', `${what}: "${ref}" is neither a tag nor a digest`);
}

/** GET a manifest by tag or digest; the bytes are verified against the digest we asked for or were told. */
export async function getManifest(client: RegistryClient, repo: Repository, ref: string, opts: { signal?: AbortSignal; push?: boolean } = {}): Promise<RawManifest> {
  const what = `pulling manifest ${repo.registry}/${repo.repository}${isDigest(ref) ? '@' : ':'}${ref}`;
  checkRef(ref, what);
  for (let attempt = 1; ; attempt++) {
    const res = await client.request({
      registry: repo.registry,
      method: 'GET',
      path: manifestPath(repo, ref),
      headers: { accept: MANIFEST_ACCEPT },
      scopes: [opts.push ? pushScope(repo.repository) : pullScope(repo.repository)],
      expect: [200],
      ctx: { what, kind: 'manifest' },
      signal: opts.signal,
    });
    const declared = Number(headerValue(res.headers, 'content-length'));
    if (Number.isFinite(declared) && declared > MAX_MANIFEST_BYTES) {
      res.body.destroy();
      throw new GantryError('MANIFEST_INVALID', `${what}: manifest of ${declared} bytes exceeds the ${MAX_MANIFEST_BYTES}-byte limit`);
    }
    let bytes: Buffer;
    try {
      bytes = await readLimitedBuffer(res.body, MAX_MANIFEST_BYTES, `${what}: manifest`);
    } catch (err) {
      // A dropped connection mid-manifest is worth another try; an oversized manifest is not.
      if (err instanceof GantryError || attempt > client.options.retries || opts.signal?.aborted) throw err instanceof GantryError ? err : new GantryError('REGISTRY_UNREACHABLE', `${what}: ${(err as Error).message}`, {}, { cause: err });
      continue;
    }
    return verifyManifest(bytes, ref, headerValue(res.headers, 'docker-content-digest'), headerValue(res.headers, 'content-type'), what);
  }
}

export function verifyManifest(bytes: Buffer, ref: string, headerDigest: string | undefined, contentType: string | undefined, what: string): RawManifest {
  let digest: string;
  if (isDigest(ref)) {
    digest = digestOf(bytes, parseDigest(ref).algorithm);
    if (digest !== ref) {
      throw new GantryError('DIGEST_MISMATCH', `${what}: the registry returned content with digest ${digest}`, { expected: ref, actual: digest });
    }
  } else if (headerDigest && isDigest(headerDigest)) {
    digest = digestOf(bytes, parseDigest(headerDigest).algorithm);
    if (digest !== headerDigest) {
      throw new GantryError('DIGEST_MISMATCH', `${what}: content has digest ${digest} but Docker-Content-Digest says ${headerDigest}`, { expected: headerDigest, actual: digest });
    }
    if (parseDigest(headerDigest).algorithm !== 'sha256') digest = sha256(bytes);
  } else {
    digest = sha256(bytes);
  }
  return { mediaType: manifestMediaType(bytes, contentType, what), bytes, digest };
}

/** HEAD a manifest: its descriptor, or undefined when the registry does not have it. */
export async function headManifest(client: RegistryClient, repo: Repository, ref: string, opts: { signal?: AbortSignal; push?: boolean } = {}): Promise<Descriptor | undefined> {
  const what = `checking manifest ${repo.registry}/${repo.repository}${isDigest(ref) ? '@' : ':'}${ref}`;
  checkRef(ref, what);
  const res = await client.request({
    registry: repo.registry,
    method: 'HEAD',
    path: manifestPath(repo, ref),
    headers: { accept: MANIFEST_ACCEPT },
    scopes: [opts.push ? pushScope(repo.repository) : pullScope(repo.repository)],
    expect: [200, 404],
    ctx: { what, kind: 'manifest' },
    signal: opts.signal,
  });
  await res.body.dump();
  if (res.status === 404) return undefined;
  const digest = headerValue(res.headers, 'docker-content-digest');
  const size = Number(headerValue(res.headers, 'content-length'));
  const mediaType = baseType(headerValue(res.headers, 'content-type'));
  if (!digest || !isDigest(digest) || !Number.isFinite(size) || !mediaType || mediaType === 'application/json') {
    // Registries that omit these on HEAD (allowed before distribution-spec 1.0): fall back to GET.
    const raw = await getManifest(client, repo, ref, opts);
    return { mediaType: raw.mediaType, digest: raw.digest, size: raw.bytes.length };
  }
  return { mediaType, digest, size };
}

/** PUT a manifest by digest, then under each tag. */
export async function putManifest(client: RegistryClient, repo: Repository, raw: RawManifest, tags: string[], signal?: AbortSignal): Promise<void> {
  const actual = digestOf(raw.bytes, isDigest(raw.digest) ? parseDigest(raw.digest).algorithm : 'sha256');
  if (actual !== raw.digest) {
    throw new GantryError('DIGEST_MISMATCH', `pushing manifest to ${repo.registry}/${repo.repository}: bytes have digest ${actual}, not ${raw.digest}`);
  }
  // A PUT by tag stores the manifest under its digest as well: a digest PUT first would only add
  // a round trip (skopeo and crane push by tag alone too).
  const refs = tags.length > 0 ? [...new Set(tags)] : [raw.digest];
  for (const ref of refs) {
    const what = `pushing manifest ${raw.digest} to ${repo.registry}/${repo.repository}${ref === raw.digest ? '' : `:${ref}`}`;
    checkRef(ref, what);
    const res = await putOnce(client, repo, raw, ref, what, signal);
    await res.body.dump();
    const echoed = headerValue(res.headers, 'docker-content-digest');
    if (echoed && isDigest(echoed) && parseDigest(echoed).algorithm === parseDigest(raw.digest).algorithm && echoed !== raw.digest) {
      throw new GantryError('DIGEST_MISMATCH', `${what}: the registry stored it as ${echoed}`, { hint: 'the registry rewrote the manifest; it may not support this media type', expected: raw.digest, actual: echoed });
    }
  }
}

/**
 * GHCR (and docker.pkg.github.com) sometimes answer MANIFEST_BLOB_UNKNOWN right after the blobs
 * were pushed; the blobs appear moments later. Callers only put a manifest after every blob
 * succeeded, so that answer is retried with backoff rather than failing the push.
 */
async function putOnce(client: RegistryClient, repo: Repository, raw: RawManifest, ref: string, what: string, signal?: AbortSignal) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await client.request({
        registry: repo.registry,
        method: 'PUT',
        path: manifestPath(repo, ref),
        headers: { 'content-type': raw.mediaType, 'content-length': String(raw.bytes.length) },
        body: () => raw.bytes,
        scopes: [pushScope(repo.repository)],
        expect: [200, 201, 202, 204],
        ctx: { what, kind: 'manifest' },
        signal,
      });
    } catch (err) {
      const codes = err instanceof GantryError ? err.details.registryCodes : undefined;
      if (!Array.isArray(codes) || !codes.includes('MANIFEST_BLOB_UNKNOWN') || attempt > client.options.retries || signal?.aborted) throw err;
      client.options.logger.log('debug', `${what}: registry does not see every blob yet; retrying`);
      await pause(backoffDelay({ attempts: client.options.retries + 1, ...client.options.backoff }, attempt) + 250 * attempt, signal);
    }
  }
}
