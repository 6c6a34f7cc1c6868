import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  baseMediaType,
  isConfig,
  isDistributable,
  isIndex,
  isLayer,
  isManifest,
  isSchema1,
  layerCompression,
  layerMediaType,
  sniffCompression,
  toDockerMediaType,
  toOciMediaType,
} from './mediatype.js';
import { MediaType } from './types.js';

test('media types are classified for both families', () => {
  const table: Array<[string, { index?: boolean; manifest?: boolean; config?: boolean; layer?: 'none' | 'gzip' | 'zstd'; distributable?: boolean; schema1?: boolean }]> = [
    [MediaType.OciIndex, { index: true }],
    [MediaType.DockerManifestList, { index: true }],
    [MediaType.OciManifest, { manifest: true }],
    [MediaType.DockerManifest, { manifest: true }],
    [`${MediaType.DockerManifest}; charset=utf-8`, { manifest: true }],
    [MediaType.OciConfig, { config: true }],
    [MediaType.DockerConfig, { config: true }],
    [MediaType.OciLayer, { layer: 'none' }],
    [MediaType.OciLayerGzip, { layer: 'gzip' }],
    [MediaType.OciLayerZstd, { layer: 'zstd' }],
    [MediaType.OciLayerNondistributableGzip, { layer: 'gzip', distributable: false }],
    [MediaType.DockerLayer, { layer: 'none' }],
    [MediaType.DockerLayerGzip, { layer: 'gzip' }],
    [MediaType.DockerLayerZstd, { layer: 'zstd' }],
    [MediaType.DockerLayerForeignGzip, { layer: 'gzip', distributable: false }],
    [MediaType.DockerManifestSchema1Signed, { schema1: true }],
    ['application/vnd.example+type', {}],
    [MediaType.OciEmpty, {}],
  ];
  for (const [mt, want] of table) {
    assert.equal(isIndex(mt), !!want.index, `isIndex ${mt}`);
    assert.equal(isManifest(mt), !!want.manifest, `isManifest ${mt}`);
    assert.equal(isConfig(mt), !!want.config, `isConfig ${mt}`);
    assert.equal(isLayer(mt), want.layer !== undefined, `isLayer ${mt}`);
    assert.equal(layerCompression(mt), want.layer, `layerCompression ${mt}`);
    assert.equal(isDistributable(mt), want.distributable ?? true, `isDistributable ${mt}`);
    assert.equal(isSchema1(mt), !!want.schema1, `isSchema1 ${mt}`);
  }
});

test('Docker and OCI media types map onto each other', () => {
  const pairs: Array<[string, string]> = [
    [MediaType.DockerManifestList, MediaType.OciIndex],
    [MediaType.DockerManifest, MediaType.OciManifest],
    [MediaType.DockerConfig, MediaType.OciConfig],
    [MediaType.DockerLayer, MediaType.OciLayer],
    [MediaType.DockerLayerGzip, MediaType.OciLayerGzip],
    [MediaType.DockerLayerZstd, MediaType.OciLayerZstd],
    [MediaType.DockerLayerForeignGzip, MediaType.OciLayerNondistributableGzip],
  ];
  for (const [docker, oci] of pairs) {
    assert.equal(toOciMediaType(docker), oci);
    assert.equal(toDockerMediaType(oci), docker);
    assert.equal(toOciMediaType(oci), oci, 'OCI types stay');
    assert.equal(toDockerMediaType(docker), docker, 'Docker types stay');
  }
  assert.equal(toDockerMediaType('application/vnd.example+type'), 'application/vnd.example+type');
  assert.equal(layerMediaType('gzip'), MediaType.OciLayerGzip);
  assert.equal(layerMediaType('none', 'docker'), MediaType.DockerLayer);
  assert.equal(layerMediaType('zstd', 'docker'), MediaType.DockerLayerZstd);
  assert.equal(baseMediaType(' Application/JSON ; charset=utf-8'), 'application/json');
});

test('compression is recognized by magic bytes', () => {
  const table: Array<[number[], string]> = [
    [[0x1f, 0x8b, 0x08, 0x00], 'gzip'],
    [[0x28, 0xb5, 0x2f, 0xfd, 0x00], 'zstd'],
    [[0x28, 0xb5, 0x2f], 'none'],
    [[0x1f], 'none'],
    [[], 'none'],
    [[...Buffer.from('etc/passwd')], 'none'],
  ];
  for (const [bytes, want] of table) assert.equal(sniffCompression(Uint8Array.from(bytes)), want, JSON.stringify(bytes));
});
