/**
 * src/cache: layer cache keys, the stores cache entries live in (registry repository, OCI layout,
 * local directory) and the store of unpacked base layers. Imports util, oci, registry, archive.
 */
export { cacheKey, keyTag, CACHE_KEY_VERSION, type CacheKey, type CacheKeyInput, type InstructionIdentity, type MountIdentity, type HeredocIdentity, type FlagValue } from './keys.js';
export { contextDigest, ContextHashIndex, RACY_MARGIN_MS, type ContextFile, type FileDigest, type ContextDigestOptions, type ContextDigestResult, type ContextDigestStats } from './context-digest.js';
export { parseGoDuration } from './duration.js';
export { QueuedCacheStore, DEFAULT_CACHE_TTL_MS, type CacheStore, type CachedLayer, type CacheEntry, type PutResult, type StoreCommonOptions } from './store.js';
export { ImageCacheStore, cacheImage, ANNOTATION as CACHE_ANNOTATION, CACHE_IMAGE_VERSION, type ImageCacheBackend } from './image-store.js';
export { registryCacheStore, ociLayoutCacheStore, openCacheRepo, defaultCacheRepo, type RegistryCacheOptions } from './registry-store.js';
export { LocalCacheStore } from './local-store.js';
export { parseCacheSpec, openCacheStore, type CacheSpec } from './spec.js';
export { UnpackedLayerStore, type UnpackFn, type LayerStoreOptions, type StoredLayerInfo, type PruneOptions, type PruneResult } from './layer-store.js';
export { BaseImageCache, DEFAULT_BASE_CACHE_DIR, type BaseImageCacheOptions, type BaseImageLookup, type CachedBaseImage, type WarmResult } from './base-images.js';
