import { MediaType } from './types.js';

/**
 * Media-type predicates. Docker and OCI name the same things differently; everything that decides
 * how to treat content asks these functions instead of comparing strings, so both families (and
 * parameters such as `; charset=utf-8` from a Content-Type header) are handled in one place.
 */

export type Compression = 'none' | 'gzip' | 'zstd';

/** The media type without parameters, lower-cased: `application/json; charset=utf-8` -> `application/json`. */
export function baseMediaType(mediaType: string): string {
  const i = mediaType.indexOf(';');
  return (i < 0 ? mediaType : mediaType.slice(0, i)).trim().toLowerCase();
}

const INDEXES = new Set<string>([MediaType.OciIndex, MediaType.DockerManifestList]);
const MANIFESTS = new Set<string>([MediaType.OciManifest, MediaType.DockerManifest]);
const CONFIGS = new Set<string>([MediaType.OciConfig, MediaType.DockerConfig]);
const SCHEMA1 = new Set<string>([MediaType.DockerManifestSchema1, MediaType.DockerManifestSchema1Signed]);

const LAYERS: ReadonlyMap<string, { compression: Compression; distributable: boolean }> = new Map([
  [MediaType.OciLayer, { compression: 'none', distributable: true }],
  [MediaType.OciLayerGzip, { compression: 'gzip', distributable: true }],
  [MediaType.OciLayerZstd, { compression: 'zstd', distributable: true }],
  [MediaType.OciLayerNondistributable, { compression: 'none', distributable: false }],
  [MediaType.OciLayerNondistributableGzip, { compression: 'gzip', distributable: false }],
  [MediaType.OciLayerNondistributableZstd, { compression: 'zstd', distributable: false }],
  [MediaType.DockerLayer, { compression: 'none', distributable: true }],
  [MediaType.DockerLayerGzip, { compression: 'gzip', distributable: true }],
  [MediaType.DockerLayerZstd, { compression: 'zstd', distributable: true }],
  [MediaType.DockerLayerForeignGzip, { compression: 'gzip', distributable: false }],
]);

export function isIndex(mediaType: string): boolean {
  return INDEXES.has(baseMediaType(mediaType));
}

export function isManifest(mediaType: string): boolean {
  return MANIFESTS.has(baseMediaType(mediaType));
}

/** Manifest or index: something a tag can point at. */
export function isManifestOrIndex(mediaType: string): boolean {
  return isIndex(mediaType) || isManifest(mediaType);
}

export function isConfig(mediaType: string): boolean {
  return CONFIGS.has(baseMediaType(mediaType));
}

export function isSchema1(mediaType: string): boolean {
  return SCHEMA1.has(baseMediaType(mediaType));
}

export function isDockerMediaType(mediaType: string): boolean {
  return baseMediaType(mediaType).startsWith('application/vnd.docker.');
}

/** A filesystem layer we know how to unpack (artifact blobs such as `application/vnd.example+type` are not). */
export function isLayer(mediaType: string): boolean {
  return LAYERS.has(baseMediaType(mediaType));
}

/** Compression of a layer media type; undefined for anything that is not a known layer. */
export function layerCompression(mediaType: string): Compression | undefined {
  return LAYERS.get(baseMediaType(mediaType))?.compression;
}

/**
 * Whether a layer may be pushed to another registry. Foreign / non-distributable layers (Windows
 * base layers) are fetched from their `urls` instead; anything that is not a layer is distributable.
 */
export function isDistributable(mediaType: string): boolean {
  return LAYERS.get(baseMediaType(mediaType))?.distributable ?? true;
}

const DOCKER_TO_OCI: ReadonlyMap<string, string> = new Map([
  [MediaType.DockerManifestList, MediaType.OciIndex],
  [MediaType.DockerManifest, MediaType.OciManifest],
  [MediaType.DockerConfig, MediaType.OciConfig],
  [MediaType.DockerLayer, MediaType.OciLayer],
  [MediaType.DockerLayerGzip, MediaType.OciLayerGzip],
  [MediaType.DockerLayerZstd, MediaType.OciLayerZstd],
  [MediaType.DockerLayerForeignGzip, MediaType.OciLayerNondistributableGzip],
]);

const OCI_TO_DOCKER: ReadonlyMap<string, string> = new Map([
  [MediaType.OciIndex, MediaType.DockerManifestList],
  [MediaType.OciManifest, MediaType.DockerManifest],
  [MediaType.OciConfig, MediaType.DockerConfig],
  [MediaType.OciLayer, MediaType.DockerLayer],
  [MediaType.OciLayerGzip, MediaType.DockerLayerGzip],
  [MediaType.OciLayerZstd, MediaType.DockerLayerZstd],
  [MediaType.OciLayerNondistributableGzip, MediaType.DockerLayerForeignGzip],
]);

/** The OCI equivalent of a Docker media type; other types are returned unchanged. */
export function toOciMediaType(mediaType: string): string {
  return DOCKER_TO_OCI.get(baseMediaType(mediaType)) ?? mediaType;
}

/**
 * The Docker equivalent of an OCI media type; other types are returned unchanged (Docker has no
 * names for non-distributable uncompressed/zstd layers or artifacts).
 */
export function toDockerMediaType(mediaType: string): string {
  return OCI_TO_DOCKER.get(baseMediaType(mediaType)) ?? mediaType;
}

/** The layer media type for a compression, in the family (docker/oci) of the manifest it goes into. */
export function layerMediaType(compression: Compression, family: 'oci' | 'docker' = 'oci'): string {
  const oci = compression === 'gzip' ? MediaType.OciLayerGzip : compression === 'zstd' ? MediaType.OciLayerZstd : MediaType.OciLayer;
  return family === 'docker' ? toDockerMediaType(oci) : oci;
}

/** Detects compression from the first bytes of a blob (gzip 1f 8b, zstd 28 b5 2f fd). */
export function sniffCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}
