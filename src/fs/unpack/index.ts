export type { LayerEntry, LayerEntryHeader, LayerEntryType, UnpackStats } from './entry.js';
export { unpackLayer, type UnpackOptions } from './unpack-layer.js';
export { resolveInRoot, resolveComponentsInRoot, MAX_SYMLINKS, type ResolveOptions } from './resolve-in-root.js';
export { IgnoreList } from './ignore-list.js';
export { unpackLayerStream } from './unpack-layer-stream.js';
