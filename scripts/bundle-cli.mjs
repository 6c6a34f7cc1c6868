#!/usr/bin/env node
// Bundles the CLI into dist/gantry.cjs, which bin/gantry.js runs instead of dist/src when it is
// at least as new as dist/src/cli/main.js (`npm run build` writes both, tsc first):
//   node scripts/bundle-cli.mjs [outfile]
// Why: a no-change cached rebuild spent ~0.1 s of its 0.36-0.40 s loading ~340 ES modules one by
// one; one CommonJS file is read and compiled in one go (the executor image runs the same bundle,
// scripts/image/bundle.mjs). The bundle holds third-party code (tar-stream, undici,
// isomorphic-git): it lives in dist/, which is never committed, and ships in the npm package.
import { rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleCli } from './image/bundle.mjs';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = resolve(process.argv[2] ?? join(repoRoot, 'dist', 'gantry.cjs'));

// Written beside and renamed into place: a CLI started meanwhile never reads half a bundle.
const partial = `${outfile}.${process.pid}.tmp`;
try {
  const b = await bundleCli({ repoRoot, outfile: partial });
  await rename(partial, outfile);
  console.log(`wrote ${outfile} (${(b.bytes / 1e6).toFixed(1)} MB from ${b.inputs} inputs)`);
} finally {
  await rm(partial, { force: true });
}
