import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sha256 } from '../util/digest.js';
import { isGantryError } from '../util/errors.js';
import { canonicalConfig, canonicalManifest, toRawManifest } from './canonical.js';
import { checkImage, historyOfLayers, newConfig, parseConfig, withEmptyLayerHistory, withLayer } from './config.js';
import { parseManifest } from './manifest.js';
import { MediaType } from './types.js';
import type { ImageManifest } from './types.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;
const manifest: ImageManifest = {
  schemaVersion: 2,
  mediaType: MediaType.OciManifest,
  config: { mediaType: MediaType.OciConfig, digest: D('c'), size: 10 },
  layers: [{ mediaType: MediaType.OciLayerGzip, digest: D('1'), size: 20 }],
};

function bare(): Omit<ImageManifest, 'mediaType'> {
  const { mediaType: _omit, ...rest } = manifest;
  return rest;
}

function raw(doc: unknown, mediaType: string = MediaType.OciManifest) {
  const bytes = Buffer.from(typeof doc === 'string' ? doc : JSON.stringify(doc));
  return { mediaType, bytes, digest: sha256(bytes) };
}

test('manifests and indexes parse into a discriminated result', () => {
  const m = parseManifest(raw(manifest));
  assert.equal(m.kind, 'manifest');
  const index = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [{ ...manifest.config, mediaType: MediaType.OciManifest, platform: { os: 'linux', architecture: 'amd64' } }] };
  const i = parseManifest(raw(index, MediaType.OciIndex));
  assert.equal(i.kind, 'index');
  // An OCI document may omit mediaType; a generic Content-Type defers to the document's shape.
  assert.equal(parseManifest(raw(bare(), 'application/json')).mediaType, MediaType.OciManifest);
  assert.equal(parseManifest(raw(index, 'application/json')).kind, 'index');
  // Built FROM scratch with metadata only: no layers is fine when reading.
  assert.equal(parseManifest(raw({ ...manifest, layers: [] })).kind, 'manifest');
  assert.throws(() => parseManifest(raw({ ...manifest, layers: [] }), { strict: true }), /at least one/);
});

test('what is read is refused with the reason', () => {
  const table: Array<[string, ReturnType<typeof raw>, string, RegExp]> = [
    ['schema 1 by version', raw({ schemaVersion: 1, name: 'x', fsLayers: [] }, 'application/json'), 'UNSUPPORTED', /schema 1/],
    ['schema 1 by media type', raw({}, MediaType.DockerManifestSchema1Signed), 'UNSUPPORTED', /schema 1/],
    ['schemaVersion 3', raw({ ...manifest, schemaVersion: 3 }), 'MANIFEST_INVALID', /schemaVersion: must be 2/],
    ['mediaType vs Content-Type', raw(manifest, MediaType.DockerManifest), 'MANIFEST_INVALID', /disagrees with the content type/],
    ['missing layers', raw({ schemaVersion: 2, config: manifest.config }), 'MANIFEST_INVALID', /layers: is required/],
    ['missing config', raw({ schemaVersion: 2, layers: [] }), 'MANIFEST_INVALID', /config: is required/],
    ['bad layer digest', raw({ ...manifest, layers: [{ ...manifest.layers[0], digest: 'sha256:abc' }] }), 'MANIFEST_INVALID', /layers\[0\]\.digest/],
    ['index without manifests', raw({ schemaVersion: 2 }, MediaType.OciIndex), 'MANIFEST_INVALID', /manifests: is required/],
    ['not JSON', raw('{"schemaVersion":'), 'MANIFEST_INVALID', /not valid JSON/],
    ['not an object', raw('[]'), 'MANIFEST_INVALID', /must be a JSON object/],
    ['unknown type', raw(bare(), 'application/vnd.example+json'), 'UNSUPPORTED', /neither an image manifest nor an index/],
    ['declared vs unknown type', raw(manifest, 'application/vnd.example+json'), 'MANIFEST_INVALID', /disagrees/],
  ];
  for (const [name, r, code, re] of table) {
    assert.throws(() => parseManifest(r), (e) => isGantryError(e) && e.code === code && re.test(e.message), name);
  }
  const tampered = { ...raw(manifest), digest: D('0') };
  assert.throws(() => parseManifest(tampered), (e) => isGantryError(e, 'DIGEST_MISMATCH'));
});

test('configs are validated, including Env entries and rootfs', () => {
  const base = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [D('1')] } };
  assert.equal(parseConfig(Buffer.from(JSON.stringify(base))).os, 'linux');
  const bad: Array<[string, unknown, RegExp]> = [
    ['no architecture', { ...base, architecture: undefined }, /architecture: is required/],
    ['no rootfs', { ...base, rootfs: undefined }, /rootfs: is required/],
    ['no diff_ids', { ...base, rootfs: { type: 'layers' } }, /rootfs.diff_ids: is required/],
    ['bad diff_id', { ...base, rootfs: { type: 'layers', diff_ids: ['x'] } }, /diff_ids\[0\]/],
    ['wrong rootfs type', { ...base, rootfs: { type: 'tar', diff_ids: [] } }, /must be "layers"/],
    ['Env without =', { ...base, config: { Env: ['PATH'] } }, /config.Env\[0\]: "PATH" is not NAME=value/],
    ['Env with empty name', { ...base, config: { Env: ['=x'] } }, /is not NAME=value/],
    ['bad created', { ...base, created: 'yesterday' }, /RFC 3339/],
    ['history not array', { ...base, history: 'x' }, /history: must be an array/],
  ];
  for (const [name, doc, re] of bad) {
    assert.throws(() => parseConfig(Buffer.from(JSON.stringify(doc))), (e) => isGantryError(e, 'CONFIG_INVALID') && re.test(e.message), name);
  }
  // Docker writes null for an unset Cmd/Entrypoint.
  assert.ok(parseConfig(Buffer.from(JSON.stringify({ ...base, config: { Cmd: null, Entrypoint: null, Env: ['A=', 'B=c=d'] } }))));
});

test('a manifest and its config must agree on the number of layers', () => {
  let cfg = newConfig({ os: 'linux', architecture: 'arm64', variant: 'v8' });
  assert.deepEqual(cfg, { architecture: 'arm64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] }, history: [] });
  cfg = withLayer(cfg, D('1'), { created_by: 'COPY . /' });
  cfg = withEmptyLayerHistory(cfg, { created_by: 'ENV A=b' });
  checkImage(manifest, cfg);
  assert.throws(() => checkImage({ ...manifest, layers: [] }, cfg), (e) => isGantryError(e, 'CONFIG_INVALID') && /0 layer\(s\) but config has 1/.test(e.message));
  const badHistory = { ...cfg, history: [{ created_by: 'a' }, { created_by: 'b' }] };
  assert.throws(() => checkImage(manifest, badHistory), /2 non-empty entries for 1 layer/);
  cfg = withLayer(cfg, D('2'), { created_by: 'RUN x' });
  assert.deepEqual(historyOfLayers(cfg).map((h) => h?.created_by), ['COPY . /', 'RUN x']);
  assert.deepEqual(cfg.history!.map((h) => h.empty_layer), [undefined, true, undefined]);
  assert.throws(() => withLayer(cfg, 'nope'), (e) => isGantryError(e, 'DIGEST_INVALID'));
});

test('canonical serialization fixes key order, sorts maps and is whitespace-free', () => {
  const shuffled = {
    layers: [{ size: 20, digest: D('1'), mediaType: MediaType.OciLayerGzip, annotations: { z: '1', a: '2' } }],
    config: { digest: D('c'), size: 10, mediaType: MediaType.OciConfig },
    mediaType: MediaType.OciManifest,
    schemaVersion: 2 as const,
  };
  const bytes = canonicalManifest(shuffled);
  assert.equal(
    bytes.toString(),
    `{"schemaVersion":2,"mediaType":"${MediaType.OciManifest}","config":{"mediaType":"${MediaType.OciConfig}","digest":"${D('c')}","size":10},` +
      `"layers":[{"mediaType":"${MediaType.OciLayerGzip}","digest":"${D('1')}","size":20,"annotations":{"a":"2","z":"1"}}]}`,
  );
  assert.equal(toRawManifest(shuffled).digest, sha256(bytes));
  assert.deepEqual(canonicalManifest(manifest), canonicalManifest(JSON.parse(JSON.stringify(manifest))));

  const cfg = canonicalConfig({
    rootfs: { diff_ids: [D('1')], type: 'layers' },
    os: 'linux',
    config: { Labels: { b: '1', a: '2' }, Env: ['A=1'], User: 'root' },
    architecture: 'amd64',
    history: [{ empty_layer: true, created_by: 'x' }],
    created: '2024-01-01T00:00:00Z',
  });
  assert.equal(
    cfg.toString(),
    `{"created":"2024-01-01T00:00:00Z","architecture":"amd64","os":"linux","config":{"User":"root","Env":["A=1"],"Labels":{"a":"2","b":"1"}},` +
      `"rootfs":{"type":"layers","diff_ids":["${D('1')}"]},"history":[{"created_by":"x","empty_layer":true}]}`,
  );
});
