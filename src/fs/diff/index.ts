export { diffUpperDir, deviceNumbers, WHITEOUT_PREFIX, OPAQUE_WHITEOUT, type DiffOptions } from './diff-upper.js';
export {
  readXattrs,
  parseGetfattrDump,
  isOverlayXattr,
  isOpaqueMarked,
  isXwhiteoutMarked,
  getfattrMissing,
  type XattrMap,
  type GetfattrOptions,
} from './getfattr.js';
