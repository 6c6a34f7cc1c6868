import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main, type CliIO } from './main.js';
import { parseSize, planPrune, type PruneEntry } from './prune.js';

const HEX = (c: string) => c.repeat(64);

/** A HOME holding two RUN cache mounts and two unpacked layers, each with a distinct age and size. */
async function populatedHome(root: string): Promise<string> {
  const home = await mkdtemp(join(root, 'home-'));
  const runCache = join(home, '.cache', 'gantry', 'run-cache');
  const layers = join(home, '.cache', 'gantry', 'layers');
  const day = 24 * 3600 * 1000;
  const entries: Array<{ path: string; bytes: number; age: number; sizeFile?: boolean }> = [
    { path: join(runCache, 'apt'), bytes: 4000, age: 4 },
    { path: join(runCache, 'npm'), bytes: 1000, age: 1 },
    { path: join(layers, HEX('a')), bytes: 3000, age: 3, sizeFile: true },
    { path: join(layers, HEX('b')), bytes: 2000, age: 2, sizeFile: true },
  ];
  for (const e of entries) {
    // A stored layer is <hex>/{tree,size,notes.json} (src/cache/layer-store.ts); a RUN cache is a tree.
    const data = e.sizeFile ? join(e.path, 'tree', 'sub') : join(e.path, 'sub');
    await mkdir(data, { recursive: true });
    await writeFile(join(data, 'data'), Buffer.alloc(e.bytes));
    if (e.sizeFile) {
      await writeFile(join(e.path, 'size'), String(e.bytes));
      await writeFile(join(e.path, 'notes.json'), 'null');
    }
    const t = new Date(Date.now() - e.age * day);
    await utimes(e.path, t, t);
  }
  // An unpack in progress (another build's): left alone; src/cache/layer-store.test.ts covers the
  // age after which an interrupted one goes.
  await mkdir(join(layers, '.tmp-in-progress'), { recursive: true });
  return home;
}

async function prune(home: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIO = { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: { HOME: home, PATH: process.env.PATH } };
  const code = await main(['prune', ...args], io);
  return { code, out, err };
}

async function remaining(home: string): Promise<string[]> {
  const base = join(home, '.cache', 'gantry');
  const list = async (d: string) => (await readdir(join(base, d)).catch(() => [] as string[])).filter((n) => !n.startsWith('.tmp-')).map((n) => `${d}/${n}`);
  return [...(await list('run-cache')), ...(await list('layers'))].sort();
}

describe('gantry prune', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'gantry-prune-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const cases: Array<{ name: string; args: string[]; left: string[]; outHas: RegExp[] }> = [
    { name: 'removes every RUN cache mount and unpacked layer by default', args: [], left: [], outHas: [/removed run-cache apt/, /removed layer sha256:a{64}/, /total reclaimed space: 10\.0kB/] },
    { name: '--all removes everything even with --keep-storage', args: ['--all', '--keep-storage=1GB'], left: [], outHas: [/removed run-cache npm/] },
    {
      name: '--keep-storage keeps the most recently used entries across both stores',
      args: ['--keep-storage=3500'],
      left: ['layers/' + HEX('b'), 'run-cache/npm'],
      outHas: [/removed run-cache apt/, /removed layer sha256:a{64}/, /2 kept/],
    },
    { name: '--keep-storage larger than the total removes nothing', args: ['--keep-storage', '1MB'], left: ['layers/' + HEX('a'), 'layers/' + HEX('b'), 'run-cache/apt', 'run-cache/npm'], outHas: [/0B \(0 entries, 4 kept\)/] },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const home = await populatedHome(root);
      const r = await prune(home, c.args);
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(await remaining(home), c.left);
      for (const re of c.outHas) assert.match(r.out, re);
    });
  }

  it('--dry-run lists what would go and removes nothing', async () => {
    const home = await populatedHome(root);
    const before = await remaining(home);
    const r = await prune(home, ['--dry-run', '--keep-storage=3500']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /would remove run-cache apt \(4\.0kB\)/);
    assert.match(r.out, /would remove layer sha256:a{64}/);
    assert.doesNotMatch(r.out, /npm|sha256:b/);
    assert.match(r.out, /would free: 7\.0kB/);
    assert.deepEqual(await remaining(home), before);
  });

  it('succeeds on a machine with no caches', async () => {
    const home = await mkdtemp(join(root, 'empty-'));
    const r = await prune(home, []);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /total reclaimed space: 0B/);
  });

  it('honours XDG_CACHE_HOME', async () => {
    const home = await populatedHome(root);
    let out = '';
    const code = await main(['prune'], { stdout: (t) => void (out += t), stderr: () => undefined, env: { HOME: '/nonexistent', XDG_CACHE_HOME: join(home, '.cache') } });
    assert.equal(code, 0);
    assert.deepEqual(await remaining(home), []);
    assert.match(out, /removed run-cache apt/);
  });

  it('rejects an invalid size and stray arguments as usage errors', async () => {
    const home = await mkdtemp(join(root, 'usage-'));
    for (const args of [['--keep-storage=lots'], ['everything']]) {
      const r = await prune(home, args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    }
  });
});

describe('gantry prune: every local cache', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'gantry-prune-all-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const hour = 3600 * 1000;
  /** One entry in each of the five caches, each 1000 bytes, used 5, 4, 3, 2 and 1 hours ago. */
  async function fiveCaches(): Promise<string> {
    const home = await mkdtemp(join(root, 'home-'));
    const base = join(home, '.cache', 'gantry');
    const files: Array<{ path: string; age: number; dir?: boolean }> = [
      { path: join(base, 'run-cache', 'apt'), age: 5, dir: true },
      { path: join(base, 'layers', HEX('c')), age: 4, dir: true },
      { path: join(base, 'context-index', 'context-0123abcd.json'), age: 3 },
      { path: join(base, 'layer-index', `${HEX('d')}.json`), age: 2 },
      { path: join(base, 'code-cache', '0123456789abcdef.bin'), age: 1 },
    ];
    for (const f of files) {
      const layer = f.path.includes('/layers/');
      const file = f.dir ? join(f.path, ...(layer ? ['tree'] : []), 'data') : f.path;
      await mkdir(join(file, '..'), { recursive: true });
      await writeFile(file, Buffer.alloc(1000));
      if (layer) {
        await writeFile(join(f.path, 'size'), '1000');
        await writeFile(join(f.path, 'notes.json'), 'null');
      }
      const t = new Date(Date.now() - f.age * hour);
      await utimes(f.path, t, t);
    }
    return home;
  }
  async function left(home: string): Promise<string[]> {
    const base = join(home, '.cache', 'gantry');
    const out: string[] = [];
    for (const d of ['run-cache', 'layers', 'context-index', 'layer-index', 'code-cache']) {
      for (const n of await readdir(join(base, d)).catch(() => [] as string[])) if (!n.endsWith('.size')) out.push(d);
    }
    return out;
  }

  const cases: Array<{ name: string; args: string[]; left: string[]; outHas: RegExp[] }> = [
    {
      name: 'removes all five caches by default, with a summary line each',
      args: [],
      left: [],
      outHas: [/^run-cache: freed 1\.0kB \(1 entry\) in /m, /^layers: freed 1\.0kB \(1 entry\)/m, /^context-index: freed 1\.0kB/m, /^layer-index: freed 1\.0kB \(1 entry\)/m, /^code-cache: freed 1\.0kB/m, /total reclaimed space: 5\.0kB \(5 entries\)/],
    },
    { name: '--keep-storage keeps the most recently used entries whatever cache they are in', args: ['--keep-storage=2500'], left: ['layer-index', 'code-cache'], outHas: [/^layers: freed 1\.0kB/m, /^layer-index: freed 0B \(0 entries, 1 kept\)/m, /3 entries, 2 kept/] },
    { name: '--older-than removes only what was not used for that long', args: ['--older-than=150m'], left: ['layer-index', 'code-cache'], outHas: [/^context-index: freed 1\.0kB/m, /^code-cache: freed 0B \(0 entries, 1 kept\)/m] },
    { name: '--older-than and --keep-storage together: old ones, then more until the rest fits', args: ['--older-than=270m', '--keep-storage=1500'], left: ['code-cache'], outHas: [/4 entries, 1 kept/] },
    { name: '--all wins over --older-than and --keep-storage', args: ['--all', '--older-than=100h', '--keep-storage=1GB'], left: [], outHas: [/5 entries\)/] },
    { name: '--dry-run prints the same summary and removes nothing', args: ['--dry-run', '--keep-storage=2500'], left: ['run-cache', 'layers', 'context-index', 'layer-index', 'code-cache'], outHas: [/^layers: would free 1\.0kB \(1 entry\)/m, /^layer-index: would free 0B \(0 entries, 1 kept\)/m, /would free: 3\.0kB/] },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const home = await fiveCaches();
      const r = await prune(home, c.args);
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(await left(home), c.left);
      for (const re of c.outHas) assert.match(r.out, re);
    });
  }

  it('rejects an invalid --older-than as a usage error', async () => {
    const r = await prune(await mkdtemp(join(root, 'usage-')), ['--older-than=7d']);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /7d/);
  });

  it('--cache-dir removes only warms of killed warmers, never cached images', async () => {
    const home = await mkdtemp(join(root, 'home-'));
    const cacheDir = join(home, 'kaniko-cache');
    const old = new Date(Date.now() - 2 * hour);
    // warm-downloading: an old directory, but a blob still being written below it.
    for (const d of ['tmp/warm-killed', 'tmp/warm-running', 'tmp/warm-downloading', 'images/sha256-' + HEX('e')]) {
      await mkdir(join(cacheDir, 'gantry', d), { recursive: true });
      await writeFile(join(cacheDir, 'gantry', d, 'blob'), Buffer.alloc(700));
    }
    for (const p of ['tmp/warm-killed/blob', 'tmp/warm-killed', 'tmp/warm-downloading', 'images/sha256-' + HEX('e') + '/blob', 'images/sha256-' + HEX('e')]) await utimes(join(cacheDir, 'gantry', p), old, old);
    const dry = await prune(home, ['--cache-dir', cacheDir, '--dry-run']);
    assert.match(dry.out, /warms of killed warmers only\): would free 700B \(1 entry\)/);
    assert.deepEqual((await readdir(join(cacheDir, 'gantry', 'tmp'))).sort(), ['warm-downloading', 'warm-killed', 'warm-running']);
    const r = await prune(home, ['--cache-dir', cacheDir]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual((await readdir(join(cacheDir, 'gantry', 'tmp'))).sort(), ['warm-downloading', 'warm-running']);
    assert.deepEqual(await readdir(join(cacheDir, 'gantry', 'images')), ['sha256-' + HEX('e')]);
  });

  it('lists every cache in --help', async () => {
    const r = await prune(root, ['--help']);
    for (const word of ['run-cache', 'layers', 'context-index', 'layer-index', 'code-cache', '--older-than', '--cache-dir']) assert.match(r.out, new RegExp(word));
  });
});

describe('parseSize', () => {
  const cases: Array<[string, number]> = [
    ['1024', 1024],
    ['512MB', 512e6],
    ['10gb', 10e9],
    ['1.5GiB', 1.5 * 1024 ** 3],
    ['2k', 2000],
    ['7KiB', 7168],
  ];
  for (const [text, want] of cases) it(`parses ${text}`, () => assert.equal(parseSize(text), want));
  for (const bad of ['', 'MB', '-1', '1XB']) it(`rejects "${bad}"`, () => assert.throws(() => parseSize(bad)));
});

describe('planPrune', () => {
  const at = (d: number) => new Date(d * 1000);
  const e = (name: string, bytes: number, t: number): PruneEntry => ({ kind: 'layer', name, path: `/x/${name}`, bytes, lastUsed: at(t) });
  it('drops oldest first until the rest fits, and stops there', () => {
    const plan = planPrune([e('new', 10, 3), e('old', 10, 1), e('mid', 10, 2)], 15);
    assert.deepEqual(plan.remove.map((x) => x.name), ['old', 'mid']);
    assert.deepEqual(plan.keep.map((x) => x.name), ['new']);
  });
  it('removes everything without a budget', () => {
    assert.deepEqual(planPrune([e('a', 1, 1), e('b', 1, 2)]).keep, []);
  });
});
