import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Packages every `gantry build`/`executor` run would pay for at start-up although most builds
 * never use them: undici (HTTP(S)_PROXY and ADD <url> only, ~25 ms) and isomorphic-git (git
 * contexts only, ~10 ms). They must stay behind dynamic imports.
 */
const LAZY = ['undici', 'isomorphic-git'];

test('loading the build commands and the engine loads neither undici, isomorphic-git nor node:https', async () => {
  const modules = ['./executor.js', './build.js', '../build/index.js', '../registry/index.js', '../context/index.js', '../cache/index.js'].map((m) => fileURLToPath(new URL(m, import.meta.url)));
  // A fresh process: this test runner may have loaded anything already.
  const script = `
    import { createRequire } from 'node:module';
    for (const m of ${JSON.stringify(modules)}) await import(m);
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    const packages = loaded.filter((k) => k.includes('/node_modules/')).map((k) => k.split('/node_modules/').pop());
    console.log(JSON.stringify({ packages, builtins: process.moduleLoadList }));
  `;
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, ['--input-type=module', '-e', script], (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
  );
  const loaded = JSON.parse(out) as { packages: string[]; builtins: string[] };
  const packages = new Set(loaded.packages.map((p) => p.split('/')[0]));
  assert.ok(packages.has('tar-stream'), `the probe sees CommonJS packages (loaded: ${[...packages].join(', ')})`);
  for (const name of LAZY) assert.ok(!packages.has(name), `${name} is loaded at start-up (loaded: ${[...packages].join(', ')})`);
  // node:https drags node:tls in; plain-HTTP registries (local ones) never need them.
  assert.ok(loaded.builtins.includes('NativeModule http'), 'the probe sees built-in modules');
  assert.ok(!loaded.builtins.includes('NativeModule https'), 'node:https is loaded at start-up');
});
