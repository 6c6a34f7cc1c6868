import { GantryError } from '../util/errors.js';
import { sha256 } from '../util/digest.js';
import { canonicalConfig } from './canonical.js';
import { isObject, join, optBoolean, optObjectMap, optString, optStringArray, optStringMap, Problems, typeName, type JsonObject } from './check.js';
import { digestProblem } from './descriptor.js';
import { normalizePlatform } from './platform.js';
import { MediaType } from './types.js';
import type { Descriptor, History, ImageConfig, ImageManifest, Platform } from './types.js';

const ENV_RE = /^[^=]+=.*$/s;
/** RFC 3339 date-time, what Go's time.Time marshals to. */
const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

function optDateTime(p: Problems, obj: JsonObject, key: string, path: string): void {
  const v = optString(p, obj, key, path);
  if (v !== undefined && !DATE_TIME_RE.test(v)) p.add(join(path, key), `"${v}" is not an RFC 3339 date-time`);
}

/** Records every problem of an image config document (OCI or Docker). */
export function checkConfig(p: Problems, doc: unknown): void {
  if (!isObject(doc)) {
    p.add('', `must be an object, got ${typeName(doc)}`);
    return;
  }
  optDateTime(p, doc, 'created', '');
  optString(p, doc, 'author', '');
  optString(p, doc, 'architecture', '', true);
  optString(p, doc, 'os', '', true);
  optString(p, doc, 'os.version', '');
  optStringArray(p, doc, 'os.features', '');
  optString(p, doc, 'variant', '');

  const c = doc.config;
  if (c !== undefined && c !== null) {
    if (!isObject(c)) p.add('config', `must be an object, got ${typeName(c)}`);
    else {
      optString(p, c, 'User', 'config');
      optObjectMap(p, c, 'ExposedPorts', 'config', true);
      optStringArray(p, c, 'Env', 'config', true);
      if (Array.isArray(c.Env)) {
        c.Env.forEach((e, i) => {
          if (typeof e === 'string' && !ENV_RE.test(e)) p.add(`config.Env[${i}]`, `"${e}" is not NAME=value`);
        });
      }
      optStringArray(p, c, 'Entrypoint', 'config', true);
      optStringArray(p, c, 'Cmd', 'config', true);
      optObjectMap(p, c, 'Volumes', 'config', true);
      optString(p, c, 'WorkingDir', 'config');
      optStringMap(p, c, 'Labels', 'config', true);
      optString(p, c, 'StopSignal', 'config');
      optBoolean(p, c, 'ArgsEscaped', 'config');
      optStringArray(p, c, 'OnBuild', 'config', true);
      optStringArray(p, c, 'Shell', 'config');
      if (c.Healthcheck !== undefined && c.Healthcheck !== null && !isObject(c.Healthcheck)) {
        p.add('config.Healthcheck', `must be an object, got ${typeName(c.Healthcheck)}`);
      }
    }
  }

  const rootfs = doc.rootfs;
  if (rootfs === undefined) p.add('rootfs', 'is required');
  else if (!isObject(rootfs)) p.add('rootfs', `must be an object, got ${typeName(rootfs)}`);
  else {
    const type = optString(p, rootfs, 'type', 'rootfs', true);
    if (type !== undefined && type !== 'layers') p.add('rootfs.type', `must be "layers", got "${type}"`);
    if (rootfs.diff_ids === undefined) p.add('rootfs.diff_ids', 'is required');
    optStringArray(p, rootfs, 'diff_ids', 'rootfs');
    if (Array.isArray(rootfs.diff_ids)) {
      rootfs.diff_ids.forEach((d, i) => {
        const problem = typeof d === 'string' ? digestProblem(d) : undefined;
        if (problem) p.add(`rootfs.diff_ids[${i}]`, problem);
      });
    }
  }

  const history = doc.history;
  if (history !== undefined && history !== null) {
    if (!Array.isArray(history)) p.add('history', `must be an array, got ${typeName(history)}`);
    else {
      history.forEach((h, i) => {
        const path = `history[${i}]`;
        if (!isObject(h)) {
          p.add(path, `must be an object, got ${typeName(h)}`);
          return;
        }
        optDateTime(p, h, 'created', path);
        optString(p, h, 'author', path);
        optString(p, h, 'created_by', path);
        optString(p, h, 'comment', path);
        optBoolean(p, h, 'empty_layer', path);
      });
    }
  }
}

/** Parses and validates image config bytes (as read from a blob). */
export function parseConfig(bytes: Uint8Array, what = 'image config'): ImageConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new GantryError('CONFIG_INVALID', `${what} is not valid JSON: ${(err as Error).message}`);
  }
  const p = new Problems();
  checkConfig(p, doc);
  if (!p.ok) throw new GantryError('CONFIG_INVALID', `invalid ${what}: ${p.summary()}`);
  return doc as ImageConfig;
}

/**
 * Cross-checks an image manifest against its config: one diff_id per layer, and as many
 * non-empty history entries as layers when history is present.
 */
export function checkImage(manifest: ImageManifest, config: ImageConfig, what = 'image'): void {
  const layers = manifest.layers.length;
  const diffIds = config.rootfs.diff_ids.length;
  if (layers !== diffIds) {
    throw new GantryError('CONFIG_INVALID', `${what}: manifest has ${layers} layer(s) but config has ${diffIds} diff_id(s)`);
  }
  if (config.history?.length) {
    const nonEmpty = config.history.filter((h) => !h.empty_layer).length;
    if (nonEmpty !== layers) {
      throw new GantryError('CONFIG_INVALID', `${what}: config history has ${nonEmpty} non-empty entr${nonEmpty === 1 ? 'y' : 'ies'} for ${layers} layer(s)`);
    }
  }
}

/** An empty image config for a platform: no layers, no history, empty container config. */
export function newConfig(platform: Platform, opts: { created?: string } = {}): ImageConfig {
  const p = normalizePlatform(platform);
  const cfg: ImageConfig = {
    architecture: p.architecture,
    os: p.os,
    config: {},
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
  if (opts.created) cfg.created = opts.created;
  if (p['os.version']) cfg['os.version'] = p['os.version'];
  if (p['os.features']) cfg['os.features'] = p['os.features'];
  if (p.variant) cfg.variant = p.variant;
  return cfg;
}

/**
 * A copy of `config` with a layer appended: its diff_id and a history entry describing it.
 * Configs are values; builders derive new ones instead of mutating shared state.
 */
export function withLayer(config: ImageConfig, diffId: string, entry: Omit<History, 'empty_layer'> = {}): ImageConfig {
  const problem = digestProblem(diffId);
  if (problem) throw new GantryError('DIGEST_INVALID', `diff_id: ${problem}`);
  return {
    ...config,
    rootfs: { type: 'layers', diff_ids: [...config.rootfs.diff_ids, diffId] },
    history: [...(config.history ?? []), stripUndefined({ ...entry, empty_layer: undefined })],
  };
}

/** A copy of `config` with a history entry for a step that changed metadata only (`empty_layer: true`). */
export function withEmptyLayerHistory(config: ImageConfig, entry: Omit<History, 'empty_layer'>): ImageConfig {
  return { ...config, history: [...(config.history ?? []), stripUndefined({ ...entry, empty_layer: true })] };
}

/**
 * The history entry of each layer, index-aligned with `rootfs.diff_ids`: entries marked
 * `empty_layer` describe no layer and are skipped. Undefined where history is shorter.
 */
export function historyOfLayers(config: ImageConfig): Array<History | undefined> {
  const entries = (config.history ?? []).filter((h) => !h.empty_layer);
  return config.rootfs.diff_ids.map((_, i) => entries[i]);
}

/** Canonical bytes and descriptor of a config we built. */
export function configBlob(config: ImageConfig, mediaType: string = MediaType.OciConfig): { bytes: Buffer; descriptor: Descriptor } {
  const bytes = canonicalConfig(config);
  return { bytes, descriptor: { mediaType, digest: sha256(bytes), size: bytes.length } };
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
