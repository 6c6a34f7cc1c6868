import { sha256 } from '../util/digest.js';
import { MediaType } from './types.js';
import type { ImageConfig, ImageIndex, ImageManifest, RawManifest } from './types.js';

/**
 * Canonical JSON for what we write: struct-like objects in a fixed key order (the order of the
 * image-spec's Go structs), maps (annotations, labels, ports, volumes) sorted by key, no
 * whitespace. The same object therefore always has the same digest, whatever order its keys were
 * set in. Documents we only pass through are never re-serialized: their bytes are kept.
 */

type Shape = { keys: string[]; fields: Record<string, Shape | 'map' | Shape[]> };

const platform: Shape = { keys: ['architecture', 'os', 'os.version', 'os.features', 'variant', 'features'], fields: {} };
const descriptor: Shape = {
  keys: ['mediaType', 'artifactType', 'digest', 'size', 'urls', 'annotations', 'data', 'platform'],
  fields: { annotations: 'map', platform },
};
const manifest: Shape = {
  keys: ['schemaVersion', 'mediaType', 'artifactType', 'config', 'layers', 'subject', 'annotations'],
  fields: { config: descriptor, layers: [descriptor], subject: descriptor, annotations: 'map' },
};
const index: Shape = {
  keys: ['schemaVersion', 'mediaType', 'artifactType', 'manifests', 'subject', 'annotations'],
  fields: { manifests: [descriptor], subject: descriptor, annotations: 'map' },
};
const healthcheck: Shape = { keys: ['Test', 'Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries'], fields: {} };
const containerConfig: Shape = {
  keys: ['User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'Volumes', 'WorkingDir', 'Labels', 'StopSignal', 'ArgsEscaped', 'Healthcheck', 'OnBuild', 'Shell'],
  fields: { ExposedPorts: 'map', Volumes: 'map', Labels: 'map', Healthcheck: healthcheck },
};
const history: Shape = { keys: ['created', 'created_by', 'author', 'comment', 'empty_layer'], fields: {} };
const config: Shape = {
  keys: ['created', 'author', 'architecture', 'os', 'os.version', 'os.features', 'variant', 'config', 'rootfs', 'history'],
  fields: { config: containerConfig, rootfs: { keys: ['type', 'diff_ids'], fields: {} }, history: [history] },
};

function write(value: unknown, shape: Shape | 'map' | Shape[] | undefined): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`cannot serialize ${value} as JSON`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    const item = Array.isArray(shape) ? shape[0] : undefined;
    return `[${value.map((v) => (v === undefined ? 'null' : write(v, item))).join(',')}]`;
  }
  const obj = value as Record<string, unknown>;
  const struct = shape && shape !== 'map' && !Array.isArray(shape) ? shape : undefined;
  const known = struct ? struct.keys.filter((k) => obj[k] !== undefined) : [];
  const rest = Object.keys(obj)
    .filter((k) => obj[k] !== undefined && !known.includes(k))
    .sort();
  const parts = [...known, ...rest].map((k) => `${JSON.stringify(k)}:${write(obj[k], struct?.fields[k])}`);
  return `{${parts.join(',')}}`;
}

export function canonicalManifest(m: ImageManifest): Buffer {
  return Buffer.from(write(m, manifest), 'utf8');
}

export function canonicalIndex(i: ImageIndex): Buffer {
  return Buffer.from(write(i, index), 'utf8');
}

export function canonicalConfig(c: ImageConfig): Buffer {
  return Buffer.from(write(c, config), 'utf8');
}

/** Any JSON value with sorted keys (used for small files such as index.json maps). */
export function canonicalJson(value: unknown): Buffer {
  return Buffer.from(write(value, undefined), 'utf8');
}

/** Serializes a manifest or index we built into the raw form sources and sinks exchange. */
export function toRawManifest(doc: ImageManifest | ImageIndex): RawManifest {
  const isIdx = 'manifests' in doc;
  const bytes = isIdx ? canonicalIndex(doc) : canonicalManifest(doc);
  const mediaType = doc.mediaType ?? (isIdx ? MediaType.OciIndex : MediaType.OciManifest);
  return { mediaType, bytes, digest: sha256(bytes) };
}
