import { createHash, getHashes } from 'node:crypto';
import { GantryError } from '../util/errors.js';
import { isObject, join, optString, optStringArray, optStringMap, Problems, typeName, type JsonObject } from './check.js';
import { checkPlatform } from './platform.js';
import type { Descriptor } from './types.js';

/** RFC 6838 media type as the image-spec schema restricts it (type/subtype, each 1-127 chars). */
const MEDIA_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
/** The digest grammar of image-spec descriptor.md. */
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
/** Registered algorithms are checked strictly; others only against the grammar (the spec allows them). */
const REGISTERED: Record<string, RegExp> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
};
/** Standard base64 with padding, as Go's encoding/json decodes []byte. */
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function isValidMediaType(value: string): boolean {
  return MEDIA_TYPE_RE.test(value);
}

/** Why `value` is not an acceptable descriptor digest, or undefined when it is. */
export function digestProblem(value: string): string | undefined {
  if (!DIGEST_RE.test(value)) return `"${value}" is not a digest (expected algorithm:encoded, e.g. sha256:<64 hex>)`;
  const colon = value.indexOf(':');
  const alg = value.slice(0, colon);
  const re = REGISTERED[alg];
  if (re && !re.test(value.slice(colon + 1))) return `"${value}" is not a valid ${alg} digest (expected lower-case hex of the right length)`;
  return undefined;
}

function checkMediaTypeField(p: Problems, obj: JsonObject, key: string, path: string, required: boolean): void {
  const v = optString(p, obj, key, path, required);
  if (v !== undefined && !MEDIA_TYPE_RE.test(v)) p.add(join(path, key), `"${v}" is not a valid media type`);
}

/** Records every problem of a descriptor found at `path`. */
export function checkDescriptor(p: Problems, value: unknown, path: string): void {
  if (!isObject(value)) {
    p.add(path, `must be a descriptor object, got ${typeName(value)}`);
    return;
  }
  checkMediaTypeField(p, value, 'mediaType', path, true);
  checkMediaTypeField(p, value, 'artifactType', path, false);
  const digest = optString(p, value, 'digest', path, true);
  if (digest !== undefined) {
    const problem = digestProblem(digest);
    if (problem) p.add(join(path, 'digest'), problem);
  }
  const size = value.size;
  if (size === undefined) p.add(join(path, 'size'), 'is required');
  else if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    p.add(join(path, 'size'), `must be a non-negative integer, got ${typeof size === 'number' ? size : typeName(size)}`);
  }
  optStringArray(p, value, 'urls', path);
  if (Array.isArray(value.urls)) {
    value.urls.forEach((u, i) => {
      if (typeof u === 'string' && !isAbsoluteUri(u)) p.add(join(join(path, 'urls'), i), `"${u}" is not an absolute URI`);
    });
  }
  optStringMap(p, value, 'annotations', path);
  const data = optString(p, value, 'data', path);
  if (data !== undefined) checkEmbeddedData(p, data, value, join(path, 'data'));
  // The schema allows a platform on any descriptor (it only means something in an index).
  if (value.platform !== undefined) checkPlatform(p, value.platform, join(path, 'platform'));
}

function isAbsoluteUri(u: string): boolean {
  try {
    return new URL(u).protocol.length > 1;
  } catch {
    return false;
  }
}

/** `data` must be padded base64 and, when the algorithm is one we can compute, match size and digest. */
function checkEmbeddedData(p: Problems, data: string, desc: JsonObject, path: string): void {
  if (!BASE64_RE.test(data)) {
    p.add(path, 'must be standard base64 with padding');
    return;
  }
  const bytes = Buffer.from(data, 'base64');
  if (typeof desc.size === 'number' && bytes.length !== desc.size) {
    p.add(path, `holds ${bytes.length} bytes but size says ${desc.size}`);
  }
  if (typeof desc.digest === 'string' && digestProblem(desc.digest) === undefined) {
    const alg = desc.digest.slice(0, desc.digest.indexOf(':'));
    if (REGISTERED[alg] && getHashes().includes(alg)) {
      const actual = `${alg}:${createHash(alg).update(bytes).digest('hex')}`;
      if (actual !== desc.digest) p.add(path, `content has digest ${actual}, not ${desc.digest}`);
    }
  }
}

/** Validates one descriptor (e.g. from a CLI argument or a layout index) and returns it typed. */
export function parseDescriptor(value: unknown, what = 'descriptor'): Descriptor {
  const p = new Problems();
  checkDescriptor(p, value, '');
  if (!p.ok) throw new GantryError('MANIFEST_INVALID', `invalid ${what}: ${p.summary()}`);
  return value as unknown as Descriptor;
}

/** Bytes embedded in a descriptor's `data`, or undefined. Only call on validated descriptors. */
export function embeddedData(desc: Descriptor): Buffer | undefined {
  return desc.data === undefined ? undefined : Buffer.from(desc.data, 'base64');
}

/** `blobs/<alg>/<encoded>` path of a digest inside an OCI layout; the digest must be valid. */
export function blobPath(digest: string): string {
  const problem = digestProblem(digest);
  if (problem) throw new GantryError('DIGEST_INVALID', problem);
  const colon = digest.indexOf(':');
  return `blobs/${digest.slice(0, colon)}/${digest.slice(colon + 1)}`;
}

/** Descriptor fields that identify content, without annotations or platform. */
export function sameContent(a: Pick<Descriptor, 'digest' | 'size'>, b: Pick<Descriptor, 'digest' | 'size'>): boolean {
  return a.digest === b.digest && a.size === b.size;
}
