// Bundles the gantry CLI into one CommonJS file that runs on a bare `node` (no node_modules).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

// Entry compiled from the TypeScript sources (not dist/), so the bundle never picks up stale output.
const ENTRY = `import { runCli } from './src/cli/main.ts';
runCli(process.argv.slice(2)).then((code) => { process.exitCode = code; });
`;

// `import.meta` does not exist in CJS, and the bundle has no files around it: each use in the
// sources is rewritten here into what it meant, and any other use fails the bundle.
const REWRITES = [
  {
    // src/cli/main.ts reads ../../../package.json next to dist/: inline the two fields it needs.
    what: 'package.json read',
    pattern: /readFileSync\(\s*new URL\(\s*(['"])(?:\.\.\/)+package\.json\1\s*,\s*import\.meta\.url\s*\)\s*,\s*(['"])utf-?8\2\s*\)/g,
    replace: (pkg) => JSON.stringify(JSON.stringify({ name: pkg.name, version: pkg.version })),
  },
  {
    // `const require = createRequire(import.meta.url)` (lazy loading of package internals, e.g.
    // src/registry/undici-lite.ts): dropping it leaves plain require() calls, which esbuild
    // bundles and still runs lazily; otherwise they would look for node_modules beside the bundle.
    what: 'createRequire(import.meta.url)',
    pattern: /\bconst\s+require\s*=\s*createRequire\(\s*import\.meta\.url\s*\)\s*;?/g,
    replace: () => '',
  },
];

function rewriteImportMeta(pkg) {
  return {
    name: 'gantry-rewrite-import-meta',
    setup(b) {
      b.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, async (args) => {
        const source = await readFile(args.path, 'utf8');
        if (!source.includes('import.meta')) return undefined;
        let contents = source;
        for (const r of REWRITES) contents = contents.replace(r.pattern, r.replace(pkg));
        if (contents.includes('import.meta')) {
          throw new Error(`${args.path} uses import.meta in a way the bundle cannot keep (it would point at /gantry/gantry.cjs); add a rewrite to scripts/image/bundle.mjs (handled: ${REWRITES.map((r) => r.what).join(', ')})`);
        }
        return { contents, loader: 'ts' };
      });
    },
  };
}

/**
 * Writes `outfile` and returns { bytes, inputs, version }. Any esbuild warning fails the bundle:
 * they are the ESM-to-CJS hazards (import.meta, top-level await, unresolvable requires).
 */
export async function bundleCli({ repoRoot, outfile }) {
  const esbuild = await import('esbuild');
  const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8'));
  const result = await esbuild.build({
    stdin: { contents: ENTRY, resolveDir: repoRoot, sourcefile: 'gantry-entry.ts', loader: 'ts' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile,
    plugins: [rewriteImportMeta(pkg)],
    // Optional packages loaded by computed name (zstd-napi) stay runtime imports; they are
    // absent from the image, where the code falls back or says what is missing.
    logLevel: 'silent',
    metafile: true,
    legalComments: 'eof',
  });
  if (result.warnings.length > 0) {
    const text = await esbuild.formatMessages(result.warnings, { kind: 'warning' });
    throw new Error(`esbuild warnings while bundling the CLI:\n${text.join('\n')}`);
  }
  // No import() may survive bundling: bin/gantry.js compiles the bundle from a V8 code cache, and
  // on Node 20 functions restored from one have no dynamic-import callback (the call throws
  // ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING). Built-ins and optional packages use require.
  const code = await readFile(outfile, 'utf8');
  const dynamic = code.split('\n').flatMap((line, i) => (!/^\s*(\*|\/\/)/.test(line) && /(^|[^{|<\w$.])import\(/.test(line) ? [`${i + 1}: ${line.trim()}`] : []));
  if (dynamic.length > 0) throw new Error(`the bundle still calls import() (use require; see src/util/builtin.ts):\n${dynamic.slice(0, 5).join('\n')}`);
  const out = Object.values(result.metafile.outputs)[0];
  return { bytes: out.bytes, inputs: Object.keys(result.metafile.inputs).length, version: pkg.version };
}
