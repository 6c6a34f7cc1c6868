/** src/build: orchestrates a build (stages, COPY/ADD, metadata instructions) and its outputs. */
export { build } from './build.js';
export type { BuildOptions, BuildResult } from './options.js';
export { BuiltImage } from './export.js';
