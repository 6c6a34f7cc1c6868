export { PathTree, TreeNode, INDEXED_CONTENT, type IndexEntry, type IndexEntryType, type LayerIndex } from './path-tree.js';
export { SparseRoot } from './materialize.js';
export { LayerIndexStore, defaultLayerIndexDir, listLayerIndexes, pruneLayerIndexes, type LayerIndexPruneOptions, type StoredLayerIndexInfo } from './layer-index-store.js';
export { recordIndex } from './record.js';
