#!/usr/bin/env node
// Bundles the GitHub Action (src/action/main.ts) into one CommonJS file with no runtime
// dependencies: the runner executes it straight from the repository, with no node_modules.
//   node scripts/bundle-action.mjs [outfile]      default outfile: dist/index.cjs (action.yml's main)
// The bundle contains third-party code (undici, @actions/core, tar-stream), which never enters
// main: it is generated here, exercised by test/action, and added only to release tags.
// CJS rather than ESM because @actions/core is ESM-only and esbuild's ESM output cannot
// `require` Node built-ins (deps.md §9); build-push-action ships the same format.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';


import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = resolve(process.argv[2] ?? join(root, 'dist', 'index.cjs'));

/**
 * `import.meta` does not exist in CJS. Modules that load optional parts lazily with
 * `const require = createRequire(import.meta.url)` (to keep the CLI's start fast) would, in a
 * bundle, resolve them next to the bundle at run time, where there is no node_modules: dropping
 * that line leaves plain `require('…')` calls, which esbuild bundles (scripts/image/bundle.mjs
 * does the same for the executor image). Any other use of import.meta fails the bundle.
 */
const bundleLazyRequires = {
  name: 'bundle-lazy-requires',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      if (!text.includes('import.meta')) return undefined;
      const contents = text.replace(/\bconst\s+require\s*=\s*createRequire\(\s*import\.meta\.url\s*\)\s*;?/g, '');
      if (contents.includes('import.meta')) throw new Error(`${args.path} uses import.meta, which the Action bundle cannot keep: add a rewrite to scripts/bundle-action.mjs`);
      return { contents, loader: 'ts' };
    });
  },
};

const result = await build({
  entryPoints: [join(root, 'src', 'action', 'main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: true,
  keepNames: true,
  // Third-party license notices stay in the file that ships their code.
  legalComments: 'eof',
  logLevel: 'silent',
  plugins: [bundleLazyRequires],
});
// esbuild's warnings here are the ESM-to-CJS hazards (import.meta, unresolvable requires).
if (result.warnings.length > 0) {
  const { formatMessages } = await import('esbuild');
  throw new Error(`esbuild warnings while bundling the Action:\n${(await formatMessages(result.warnings, { kind: 'warning' })).join('\n')}`);
}
console.log(`wrote ${outfile}`);
