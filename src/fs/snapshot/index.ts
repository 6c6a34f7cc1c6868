export {
  takeSnapshot,
  sameMetadata,
  hashFile,
  fileType,
  isDir,
  isRegular,
  isSymlink,
  RACY_WINDOW_NS,
  type Snapshot,
  type SnapshotMode,
  type SnapshotOptions,
  type FileMeta,
} from './walk.js';
export { diffSnapshots, comparePaths, type Change, type ChangeKind, type DiffSnapshotOptions } from './diff.js';
export { snapshotLayerEntries, type SnapshotLayerOptions } from './layer.js';
export { parseMountinfo, mountPointsUnder } from './mountinfo.js';
export { inplaceIgnorePaths, BUILDER_PATHS, SYSTEM_PATHS, type IgnorePathOptions } from './ignore.js';
