#!/usr/bin/env node
// Runs dist/gantry.cjs, the whole CLI in one file (scripts/bundle-cli.mjs, written by
// `npm run build` after tsc), when it is at least as new as the tsc output: loading one file
// instead of ~340 modules saves ~0.1 s per run. A later `tsc` alone makes the bundle older than
// dist/src, which then runs, so what runs is always the last thing built. The bundle's compiled
// code is cached between runs (Node's compile cache, or on Node 20 compileWithCodeCache below).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const bundle = fileURLToPath(new URL('../dist/gantry.cjs', import.meta.url));
const bundled = statSync(bundle, { throwIfNoEntry: false });
const compiled = bundled && statSync(new URL('../dist/src/cli/main.js', import.meta.url), { throwIfNoEntry: false });
if (bundled && (!compiled || bundled.mtimeMs >= compiled.mtimeMs)) {
  runBundle(bundle);
} else {
  const { runCli } = await import('../dist/src/cli/main.js');
  runCli(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}

/** The bundle starts the CLI itself, with process.argv as it is here. */
function runBundle(file) {
  if (Module.enableCompileCache) Module.enableCompileCache();
  const script = Module.enableCompileCache ? undefined : compileWithCodeCache(file);
  if (!script) {
    createRequire(import.meta.url)(file);
    return;
  }
  const mod = new Module(file);
  mod.filename = file;
  script.runInThisContext().call(mod.exports, mod.exports, createRequire(file), mod, file, dirname(file));
}

/**
 * Node 20 has no module.enableCompileCache(), so the bundle is compiled here with V8's code cache,
 * kept in ~/.cache/gantry/code-cache: ~40 ms less CPU per run (of ~190 ms for a cached rebuild).
 * The file is used only when its SHA-256 over (Node version, SHA-256 of the bundle, data) matches,
 * so a corrupt or foreign one is ignored, and V8 itself refuses data of another V8 or other flags.
 * The bundle is keyed by content, not size and mtime: V8 checks only the source length, and npm
 * may install every release with the same mtime, so a release changing a version string would
 * otherwise run the old release's code (hashing the 2.5 MB bundle, read anyway, costs ~2 ms).
 * It is written at exit (functions compiled while running are in it too) when there was none, V8
 * refused it, or a build runs with one written by a lighter command (`gantry version`).
 * Returns undefined (plain require) where this cannot work.
 */
function compileWithCodeCache(file) {
  // The bundle makes no import() call (scripts/image/bundle.mjs refuses one): on Node 20 a function
  // restored from a code cache has no dynamic-import callback, whatever the Script was given.
  let dir;
  try {
    dir = join(process.env.XDG_CACHE_HOME || join(process.env.HOME || homedir(), '.cache'), 'gantry', 'code-cache');
  } catch {
    return undefined;
  }
  const cacheFile = join(dir, `${createHash('sha256').update(file).digest('hex').slice(0, 16)}.bin`);
  const source = readFileSync(file);
  const key = `${process.version} ${process.arch} ${createHash('sha256').update(source).digest('hex')}`;
  const sum = (flag, data) => createHash('sha256').update(key).update(flag).update(data).digest();
  const building = process.argv[2] === 'build' || process.argv[2] === 'executor';
  // Layout: SHA-256 (32 bytes) | 1 when written by a build (1 byte) | V8 data.
  let cachedData;
  let fromBuild = false;
  let size;
  try {
    const buf = readFileSync(cacheFile);
    size = buf.length;
    if (buf.length > 33 && sum(buf.subarray(32, 33), buf.subarray(33)).equals(buf.subarray(0, 32))) {
      cachedData = buf.subarray(33);
      fromBuild = buf[32] === 1;
    }
  } catch {
    // none yet, or unreadable: compile without
  }
  const script = new vm.Script(Module.wrap(source.toString('utf8')), { filename: file, ...(cachedData ? { cachedData } : {}) });
  if (!cachedData || script.cachedDataRejected || (building && !fromBuild)) {
    process.once('exit', () => {
      const tmp = `${cacheFile}.${process.pid}`;
      try {
        // Left alone if another run replaced it meanwhile (e.g. the one re-executed in a user namespace).
        if (statSync(cacheFile, { throwIfNoEntry: false })?.size !== size) return;
        const data = script.createCachedData();
        const flag = Buffer.from([building ? 1 : 0]);
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        writeFileSync(tmp, Buffer.concat([sum(flag, data), flag, data]), { mode: 0o600 });
        renameSync(tmp, cacheFile);
      } catch {
        try {
          rmSync(tmp, { force: true });
        } catch {
          // a cache that cannot be written is only slower
        }
      }
    });
  }
  return script;
}
