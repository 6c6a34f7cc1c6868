import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import Module from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir, type TempDir } from '../src/testing/tmp.js';

// dist/test/<this>.js -> the repository root.
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function node(args: string[], cwd?: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) =>
    execFile(process.execPath, args, { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } }, (err, stdout, stderr) =>
      resolvePromise({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    ),
  );
}

/**
 * bin/gantry.js runs dist/gantry.cjs (one bundle: fast start) unless tsc wrote dist/src after it,
 * in a stand-in tree whose bundle and tsc output only say which of them ran.
 */
describe('bin/gantry.js chooses between the bundle and the tsc output', () => {
  let tmp: TempDir;
  const T = new Date('2026-01-01T00:00:00Z');
  const later = new Date(T.getTime() + 5000);

  before(async () => {
    tmp = await tempDir('bin-launcher');
  });
  after(() => tmp?.cleanup());

  const cases: Array<{ name: string; bundle?: Date; compiled?: Date; ran: 'bundle' | 'compiled' }> = [
    { name: 'a bundle newer than dist/src runs', bundle: later, compiled: T, ran: 'bundle' },
    { name: 'a bundle as old as dist/src runs (npm pack gives every file one mtime)', bundle: T, compiled: T, ran: 'bundle' },
    { name: 'a bundle older than dist/src (tsc ran since) does not', bundle: T, compiled: later, ran: 'compiled' },
    { name: 'without a bundle dist/src runs', compiled: T, ran: 'compiled' },
    { name: 'a bundle without dist/src runs', bundle: T, ran: 'bundle' },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const root = join(tmp.path, c.name.replace(/\W+/g, '-'));
      await mkdir(join(root, 'bin'), { recursive: true });
      await mkdir(join(root, 'dist', 'src', 'cli'), { recursive: true });
      await writeFile(join(root, 'package.json'), '{"type":"module"}\n');
      await copyFile(join(REPO, 'bin', 'gantry.js'), join(root, 'bin', 'gantry.js'));
      if (c.bundle) {
        await writeFile(join(root, 'dist', 'gantry.cjs'), `process.stdout.write('bundle ' + process.argv.slice(2).join(' '));\n`);
        await utimes(join(root, 'dist', 'gantry.cjs'), c.bundle, c.bundle);
      }
      if (c.compiled) {
        await writeFile(join(root, 'dist', 'src', 'cli', 'main.js'), `export async function runCli(argv) { process.stdout.write('compiled ' + argv.join(' ')); return 3; }\n`);
        await utimes(join(root, 'dist', 'src', 'cli', 'main.js'), c.compiled, c.compiled);
      } else {
        await rm(join(root, 'dist', 'src'), { recursive: true });
      }
      const r = await node([join(root, 'bin', 'gantry.js'), 'executor', '--help']);
      assert.equal(r.stdout, `${c.ran} executor --help`, r.stderr);
      assert.equal(r.code, c.ran === 'compiled' ? 3 : 0, 'the exit code is the CLI\'s');
    });
  }
});

test('scripts/bundle-cli.mjs bundles a CLI that runs on its own (no node_modules beside it)', async () => {
  const tmp = await tempDir('bin-bundle');
  try {
    const out = join(tmp.path, 'gantry.cjs');
    const b = await node([join(REPO, 'scripts', 'bundle-cli.mjs'), out]);
    assert.equal(b.code, 0, b.stderr);
    const v = await node([out, 'version'], tmp.path);
    assert.match(v.stdout, /^gantry \d+\.\d+\.\d+/, v.stderr);
    const help = await node([out, 'executor', '--help'], tmp.path);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /--destination/);
  } finally {
    await tmp.cleanup();
  }
});

/**
 * On Node 20 bin/gantry.js compiles the bundle with a V8 code cache under $XDG_CACHE_HOME/gantry
 * (Node >= 22 has its own compile cache instead). A cache file that is damaged, or was made for
 * another build of the bundle, must be ignored and replaced, never trusted.
 */
describe('the code cache of the bundle', () => {
  let tmp: TempDir;
  let root: string;
  let cacheHome: string;
  const cacheDir = () => join(cacheHome, 'gantry', 'code-cache');
  const run = async (...args: string[]) => {
    const r = await node([join(root, 'bin', 'gantry.js'), ...args], undefined, { XDG_CACHE_HOME: cacheHome });
    assert.equal(r.stderr, '');
    assert.equal(r.code, 5, 'the exit code is the one the bundle set');
    assert.equal(r.stdout, `bundle ${args.join(' ')} ${join(root, 'dist')}`);
  };
  const cacheFile = async () => {
    const names = await readdir(cacheDir());
    assert.equal(names.length, 1, `one cache file per bundle (${names.join(', ')})`);
    return join(cacheDir(), names[0]!);
  };

  before(async () => {
    tmp = await tempDir('bin-code-cache');
    root = join(tmp.path, 'tree');
    cacheHome = join(tmp.path, 'cache');
    await mkdir(join(root, 'bin'), { recursive: true });
    await mkdir(join(root, 'dist'), { recursive: true });
    await writeFile(join(root, 'package.json'), '{"type":"module"}\n');
    await copyFile(join(REPO, 'bin', 'gantry.js'), join(root, 'bin', 'gantry.js'));
    // Enough code for V8 to cache, using what a CommonJS module has: require, __dirname, module.
    const body = Array.from({ length: 200 }, (_, i) => `function f${i}(x) { return x + ${i}; }`).join('\n');
    await writeFile(
      join(root, 'dist', 'gantry.cjs'),
      `${body}\nconst { join } = require('node:path');\nmodule.exports.total = f199(1);\nprocess.stdout.write('bundle ' + process.argv.slice(2).join(' ') + ' ' + join(__dirname));\nprocess.exitCode = 5;\n`,
    );
  });
  after(() => tmp?.cleanup());

  if (typeof (Module as { enableCompileCache?: unknown }).enableCompileCache === 'function') {
    test('Node has a compile cache of its own: gantry keeps none', async () => {
      await run('version');
      await assert.rejects(readdir(cacheDir()));
    });
    return;
  }

  test('is written by the first run and kept by the next', async () => {
    await run('version');
    const written = await readFile(await cacheFile());
    assert.ok(written.length > 33);
    await run('version');
    assert.deepEqual(await readFile(await cacheFile()), written);
  });

  const damages: Array<{ name: string; damage: (b: Buffer) => Buffer }> = [
    { name: 'a flipped byte in the data', damage: (b) => Buffer.concat([b.subarray(0, b.length - 10), Buffer.from([b[b.length - 10]! ^ 0xff]), b.subarray(b.length - 9)]) },
    { name: 'a truncated file', damage: (b) => b.subarray(0, 40) },
    { name: 'an empty file', damage: () => Buffer.alloc(0) },
    { name: 'random bytes', damage: (b) => Buffer.from(Array.from({ length: b.length }, (_, i) => (i * 7919) & 0xff)) },
  ];
  for (const d of damages) {
    test(`${d.name} is ignored and replaced`, async () => {
      await run('version');
      const file = await cacheFile();
      const good = await readFile(file);
      const damaged = d.damage(good);
      await writeFile(file, damaged);
      await run('version');
      const replaced = await readFile(file);
      assert.notDeepEqual(replaced, damaged, 'replaced');
      await run('version');
      assert.deepEqual(await readFile(file), replaced, 'by one the next run accepts (V8 data differs from run to run: an unusable file would be rewritten)');
    });
  }

  test('one made for another build of the bundle is ignored and replaced', async () => {
    await run('version');
    const file = await cacheFile();
    const before = await readFile(file);
    const bundle = join(root, 'dist', 'gantry.cjs');
    await writeFile(bundle, `${await readFile(bundle, 'utf8')}// another build\n`);
    await run('version');
    const after = await readFile(file);
    assert.notDeepEqual(after.subarray(0, 32), before.subarray(0, 32), 'rewritten for the new bundle');
    await run('version');
    assert.deepEqual(await readFile(file), after, 'and then used');
  });

  test('a touched bundle keeps its cache', async () => {
    await run('version');
    const file = await cacheFile();
    const before = await readFile(file);
    const t = new Date(Date.now() + 60_000);
    await utimes(join(root, 'dist', 'gantry.cjs'), t, t);
    await run('version');
    assert.deepEqual(await readFile(file), before);
  });

  // npm may install every release with one fixed mtime, and V8 checks only the source length.
  test('a bundle with the same size and mtime but other content does not use the old cache', async () => {
    const bundle = join(root, 'dist', 'gantry.cjs');
    const original = await readFile(bundle, 'utf8');
    const mtime = new Date(1_500_000_000_000);
    await utimes(bundle, mtime, mtime);
    await run('version');
    const file = await cacheFile();
    const before = await readFile(file);
    const release = original.replace("'bundle '", "'BUNDLE '");
    assert.equal(release.length, original.length);
    try {
      await writeFile(bundle, release);
      await utimes(bundle, mtime, mtime);
      const r = await node([join(root, 'bin', 'gantry.js'), 'version'], undefined, { XDG_CACHE_HOME: cacheHome });
      assert.equal(r.stdout, `BUNDLE version ${join(root, 'dist')}`, 'the new code ran');
      assert.notDeepEqual((await readFile(file)).subarray(0, 32), before.subarray(0, 32), 'rewritten for the new bundle');
    } finally {
      await writeFile(bundle, original);
    }
  });

  test('a build replaces one written by a lighter command, since it compiled more', async () => {
    await rm(cacheDir(), { recursive: true, force: true });
    await run('version');
    const light = await readFile(await cacheFile());
    await run('executor', '--help');
    const full = await readFile(await cacheFile());
    assert.notDeepEqual(full, light);
    await run('executor', '--help');
    await run('version');
    assert.deepEqual(await readFile(await cacheFile()), full, 'kept by later runs of either kind');
  });
});

// Functions restored from a V8 code cache on Node 20 have no dynamic-import callback: a lazy
// import() in the bundle worked on the run that wrote the cache and threw on every later one.
test('the real bundle reaches an HTTPS registry on a run that uses its code cache', async () => {
  const tmp = await tempDir('bin-https-cached');
  try {
    const env = { XDG_CACHE_HOME: join(tmp.path, 'cache'), HOME: tmp.path };
    const bin = join(REPO, 'bin', 'gantry.js');
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(await node([bin, 'inspect', '127.0.0.1:1/nothing:here'], undefined, env));
    for (const r of runs) {
      assert.notEqual(r.code, 0);
      assert.doesNotMatch(r.stderr, /DYNAMIC_IMPORT|dynamic import/i);
      assert.match(r.stderr, /ECONNREFUSED|connect/i);
    }
  } finally {
    await tmp.cleanup();
  }
});
