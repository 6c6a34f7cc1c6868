import { GantryError } from '../util/errors.js';
import { hasherFor } from '../util/digest.js';
import { isObject, join, optString, optStringMap, Problems, typeName, type JsonObject } from './check.js';
import { checkConfig } from './config.js';
import { checkDescriptor, digestProblem, isValidMediaType } from './descriptor.js';
import { baseMediaType, isIndex, isManifest, isSchema1 } from './mediatype.js';
import { MediaType } from './types.js';
import type { ImageIndex, ImageManifest, RawManifest } from './types.js';

/** Content types that say nothing about the document (old registries, file sources). */
const GENERIC_CONTENT_TYPES = new Set(['', 'application/json', 'application/octet-stream', 'binary/octet-stream', 'text/plain']);

export type ParsedManifest =
  | { kind: 'manifest'; mediaType: string; manifest: ImageManifest; raw: RawManifest }
  | { kind: 'index'; mediaType: string; index: ImageIndex; raw: RawManifest };

export interface ManifestCheckOptions {
  /**
   * Enforce the image-spec JSON schema to the letter. The schema wants at least one layer, but
   * real images built FROM scratch with metadata only have none (BuildKit and Docker push them),
   * so reading is lenient unless asked.
   */
  strict?: boolean;
}

function checkCommon(p: Problems, doc: JsonObject): void {
  if (doc.schemaVersion === undefined) p.add('schemaVersion', 'is required');
  else if (doc.schemaVersion !== 2) p.add('schemaVersion', `must be 2, got ${JSON.stringify(doc.schemaVersion)}`);
  for (const key of ['mediaType', 'artifactType']) {
    const v = optString(p, doc, key, '');
    if (v !== undefined && !isValidMediaType(v)) p.add(key, `"${v}" is not a valid media type`);
  }
  if (doc.subject !== undefined) checkDescriptor(p, doc.subject, 'subject');
  optStringMap(p, doc, 'annotations', '');
}

/** Records every problem of an image manifest document. */
export function checkImageManifest(p: Problems, doc: unknown, opts: ManifestCheckOptions = {}): void {
  if (!isObject(doc)) {
    p.add('', `must be an object, got ${typeName(doc)}`);
    return;
  }
  checkCommon(p, doc);
  if (doc.config === undefined) p.add('config', 'is required');
  else checkDescriptor(p, doc.config, 'config');
  if (doc.layers === undefined) p.add('layers', 'is required');
  else if (!Array.isArray(doc.layers)) p.add('layers', `must be an array, got ${typeName(doc.layers)}`);
  else {
    if (opts.strict && doc.layers.length === 0) p.add('layers', 'must have at least one entry');
    doc.layers.forEach((l, i) => checkDescriptor(p, l, join('layers', i)));
  }
}

/** Records every problem of an image index / Docker manifest list document. */
export function checkImageIndex(p: Problems, doc: unknown): void {
  if (!isObject(doc)) {
    p.add('', `must be an object, got ${typeName(doc)}`);
    return;
  }
  checkCommon(p, doc);
  if (doc.manifests === undefined) p.add('manifests', 'is required');
  else if (!Array.isArray(doc.manifests)) p.add('manifests', `must be an array, got ${typeName(doc.manifests)}`);
  else doc.manifests.forEach((m, i) => checkDescriptor(p, m, join('manifests', i)));
}

/** Records the problems of an `oci-layout` file. */
export function checkLayoutHeader(p: Problems, doc: unknown): void {
  if (!isObject(doc)) {
    p.add('', `must be an object, got ${typeName(doc)}`);
    return;
  }
  const v = optString(p, doc, 'imageLayoutVersion', '', true);
  if (v !== undefined && v !== '1.0.0') p.add('imageLayoutVersion', `must be "1.0.0", got "${v}"`);
}

/**
 * Validates a document of one of the image-spec media types exactly as the spec's schemas (plus
 * upstream's extra checks: strict registered digests, padded base64, `Env` entries) do. Returns
 * the problems; an empty list means valid. Unknown media types are not validated.
 */
export function validateDocument(mediaType: string, bytes: Uint8Array | string): string[] {
  const p = new Problems();
  let doc: unknown;
  try {
    doc = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    return [`not valid JSON: ${(err as Error).message}`];
  }
  switch (baseMediaType(mediaType)) {
    case MediaType.OciDescriptor:
      checkDescriptor(p, doc, '');
      break;
    case MediaType.OciLayoutHeader:
      checkLayoutHeader(p, doc);
      break;
    case MediaType.OciManifest:
    case MediaType.DockerManifest:
      checkImageManifest(p, doc, { strict: true });
      break;
    case MediaType.OciIndex:
    case MediaType.DockerManifestList:
      checkImageIndex(p, doc);
      break;
    case MediaType.OciConfig:
    case MediaType.DockerConfig:
      checkConfig(p, doc);
      break;
    default:
      break;
  }
  return p.list;
}

/**
 * Parses a manifest or index as read from a source. Checks, beyond the shape: the bytes hash to
 * `raw.digest`, the document's own `mediaType` agrees with the Content-Type it came with, and
 * Docker schema 1 is refused with a clear error (it cannot be converted without re-hashing layers).
 */
export function parseManifest(raw: RawManifest, opts: ManifestCheckOptions & { what?: string } = {}): ParsedManifest {
  const what = opts.what ?? `manifest ${raw.digest}`;
  if (raw.digest) {
    const problem = digestProblem(raw.digest);
    if (problem) throw new GantryError('DIGEST_INVALID', `${what}: ${problem}`);
    let actual: string | undefined;
    try {
      actual = `${raw.digest.slice(0, raw.digest.indexOf(':'))}:${hasherFor(raw.digest).update(raw.bytes).digest('hex')}`;
    } catch {
      actual = undefined; // an algorithm we cannot compute: nothing to compare
    }
    if (actual !== undefined && actual !== raw.digest) {
      throw new GantryError('DIGEST_MISMATCH', `${what}: content has digest ${actual}`, { expected: raw.digest, actual });
    }
  }
  const schema1 = () =>
    new GantryError('UNSUPPORTED', `${what} is a Docker schema 1 manifest, which is not supported`, {
      hint: 'schema 1 images are deprecated and refused by current registries; re-push the image with a current Docker or skopeo to get a schema 2 / OCI manifest',
    });
  if (isSchema1(raw.mediaType)) throw schema1();

  let doc: unknown;
  try {
    doc = JSON.parse(raw.bytes.toString('utf8'));
  } catch (err) {
    throw new GantryError('MANIFEST_INVALID', `${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw new GantryError('MANIFEST_INVALID', `${what}: must be a JSON object, got ${typeName(doc)}`);
  if (doc.schemaVersion === 1) throw schema1();

  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  const contentType = raw.mediaType ? baseMediaType(raw.mediaType) : '';
  const generic = GENERIC_CONTENT_TYPES.has(contentType);
  if (declared !== undefined && !generic && baseMediaType(declared) !== contentType) {
    throw new GantryError('MANIFEST_INVALID', `${what}: its mediaType "${declared}" disagrees with the content type "${raw.mediaType}"`);
  }
  // Content-Type first; OCI documents may omit mediaType, and some servers send application/json.
  const mediaType = !generic ? contentType : declared ?? (Array.isArray(doc.manifests) ? MediaType.OciIndex : MediaType.OciManifest);
  if (isSchema1(mediaType)) throw schema1();

  const p = new Problems();
  if (isIndex(mediaType)) {
    checkImageIndex(p, doc);
    if (!p.ok) throw new GantryError('MANIFEST_INVALID', `invalid image index ${what}: ${p.summary()}`);
    return { kind: 'index', mediaType, index: doc as unknown as ImageIndex, raw };
  }
  if (isManifest(mediaType)) {
    checkImageManifest(p, doc, opts);
    if (!p.ok) throw new GantryError('MANIFEST_INVALID', `invalid image manifest ${what}: ${p.summary()}`);
    return { kind: 'manifest', mediaType, manifest: doc as unknown as ImageManifest, raw };
  }
  throw new GantryError('UNSUPPORTED', `${what} has media type "${mediaType}", which is neither an image manifest nor an index`);
}
