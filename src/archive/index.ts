/**
 * src/archive: tar read/write (deterministic writer with PAX), compression codecs, and the
 * tar -> compress -> digest layer pipeline. Imports only src/util.
 */
export { type TarEntryType, type TarHeader, type HeaderEncodeOptions, encodeHeader, splitUstarPath, PAX_HEADER_NAME } from './tar-header.js';
export { TarWriter, type TarWriterOptions } from './tar-writer.js';
export { readTar, type TarEntry, type ReadTarHeader } from './tar-reader.js';
export { indexTar, cleanTarName, TarIndex, type TarMember } from './tar-index.js';
export {
  type Compression,
  type LayerCompression,
  type CompressOptions,
  DEFAULT_GZIP_LEVEL,
  DEFAULT_ZSTD_LEVEL,
  MAGIC_BYTES,
  detectCompression,
  detectFileCompression,
  decompressStream,
  decompressAuto,
  compressStream,
  zstdSupport,
} from './compression.js';
export { ParallelGzip, type ParallelGzipOptions, DEFAULT_MEMBER_SIZE, defaultGzipWorkers } from './parallel-gzip.js';
export {
  writeLayer,
  digestLayerFile,
  layerMediaType,
  type LayerEntry,
  type LayerResult,
  type LayerSink,
  type LayerFileDigests,
  type WriteLayerOptions,
} from './layer.js';
