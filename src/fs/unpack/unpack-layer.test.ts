import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  createReadStream,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { readTar } from '../../archive/index.js';
import { GantryError } from '../../util/errors.js';
import type { LayerEntry, LayerEntryType, UnpackStats } from './entry.js';
import { unpackLayer, type UnpackOptions } from './unpack-layer.js';
import { findExecutable } from './xattrs.js';

// ---- fixtures: archives written by python's tarfile, read by src/archive -------------------------

interface Spec {
  name: string;
  type?: LayerEntryType;
  data?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  major?: number;
  minor?: number;
  /** name -> hex value */
  xattrs?: Record<string, string>;
}

const PY_WRITE_TARS = `
import io, json, sys, tarfile
types = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE, 'hardlink': tarfile.LNKTYPE,
         'char': tarfile.CHRTYPE, 'block': tarfile.BLKTYPE, 'fifo': tarfile.FIFOTYPE}
for job in json.load(sys.stdin):
    with tarfile.open(job['out'], 'w', format=tarfile.PAX_FORMAT) as tf:
        for e in job['entries']:
            kind = e.get('type', 'file')
            ti = tarfile.TarInfo(e['name'])
            ti.type = types[kind]
            ti.mode = e.get('mode', 0o755 if kind == 'dir' else 0o644)
            ti.uid = e.get('uid', 0)
            ti.gid = e.get('gid', 0)
            ti.mtime = e.get('mtime', 1700000000)
            ti.linkname = e.get('linkname', '')
            ti.devmajor = e.get('major', 0)
            ti.devminor = e.get('minor', 0)
            ti.pax_headers = {'SCHILY.xattr.' + k: bytes.fromhex(v).decode('latin-1') for k, v in e.get('xattrs', {}).items()}
            data = e.get('data', '').encode()
            ti.size = len(data) if kind == 'file' else 0
            tf.addfile(ti, io.BytesIO(data))
`;

let tarCounter = 0;
/** One python run for all layers of a test: spawning it costs far more than writing the tars. */
function writeTars(dir: string, layers: Spec[][]): string[] {
  const jobs = layers.map((entries) => ({ out: join(dir, `layer-${++tarCounter}.tar`), entries }));
  const r = spawnSync('python3', ['-c', PY_WRITE_TARS], { input: JSON.stringify(jobs), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return jobs.map((j) => j.out);
}

function readTarFile(path: string): AsyncIterable<LayerEntry> {
  return readTar(createReadStream(path));
}

function unpackTar(root: string, tar: string, opts: Partial<UnpackOptions> = {}): Promise<UnpackStats> {
  return unpackLayer(root, readTarFile(tar), { ownership: 'preserve', ...opts });
}

interface Sandbox {
  base: string;
  /** The first root; `newRoot()` makes more beside it. */
  root: string;
  sentinel: string;
  newRoot(): string;
  tars(...layers: Spec[][]): string[];
  /** Writes a tar of `entries` and applies it to `root`. */
  apply(entries: Spec[], opts?: Partial<UnpackOptions>): Promise<UnpackStats>;
}

/**
 * base/{root-N, sentinel, tars}: hostile names are aimed at the sentinel, so any escape shows up
 * there (and never touches the host's real files).
 */
async function withSandbox(fn: (s: Sandbox) => Promise<void>): Promise<void> {
  const base = realpathSync(mkdtempSync(join(tmpdir(), 'gantry-unpack-')));
  try {
    const sentinel = join(base, 'sentinel');
    const tarDir = join(base, 'tars');
    for (const d of [sentinel, tarDir]) mkdirSync(d);
    writeFileSync(join(sentinel, 'secret'), 'host data');
    let roots = 0;
    const newRoot = () => {
      const root = join(base, `root-${roots++}`);
      mkdirSync(root);
      return root;
    };
    const root = newRoot();
    const tars = (...layers: Spec[][]) => writeTars(tarDir, layers);
    await fn({ base, root, sentinel, newRoot, tars, apply: (entries, opts) => unpackTar(root, tars(entries)[0]!, opts) });
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

function assertNothingEscaped(s: Sandbox): void {
  assert.deepEqual(readdirSync(s.base).filter((n) => !n.startsWith('root-')).sort(), ['sentinel', 'tars']);
  assert.deepEqual(readdirSync(s.sentinel), ['secret']);
  const st = lstatSync(join(s.sentinel, 'secret'));
  assert.equal(st.nlink, 1, 'sentinel was hard-linked');
  assert.equal(readFileSync(join(s.sentinel, 'secret'), 'utf8'), 'host data');
}

/** The tree under `dir` as sorted lines: `d/` dirs, `l -> target` symlinks, `f` files, `f=content` when asked. */
function tree(dir: string, withContent = false, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, prefix)).sort()) {
    const rel = prefix + name;
    const st = lstatSync(join(dir, rel));
    if (st.isDirectory()) out.push(rel + '/', ...tree(dir, withContent, rel + '/'));
    else if (st.isSymbolicLink()) out.push(`${rel} -> ${readlinkSync(join(dir, rel))}`);
    else out.push(withContent && st.isFile() ? `${rel}=${readFileSync(join(dir, rel), 'utf8')}` : rel);
  }
  return out;
}

async function rejectsWith(p: Promise<unknown>, code: string, entry: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof GantryError, String(err));
    assert.equal(err.code, code, err.message);
    assert.ok(err.message.includes(`entry "${entry}"`), err.message);
    assert.ok(err.message.startsWith('unpacking layer sha256:test'), err.message);
    assert.ok(err.hint, 'has a hint');
    return true;
  });
}

// ---- hostile archives ---------------------------------------------------------------------------

test('hostile archives never write outside the root', async () => {
  type Expect = { error: string; entry: string } | { contained: string; content: string };
  const cases: Array<[string, (s: Sandbox, abs: string, up: string) => Spec[], (abs: string) => Expect]> = [
    ['dot-dot name', () => [{ name: '../sentinel/evil', data: 'x' }], () => ({ error: 'UNSAFE_PATH', entry: '../sentinel/evil' })],
    ['absolute name climbing out', () => [{ name: '/abs/../../sentinel/evil' }], () => ({ error: 'UNSAFE_PATH', entry: '/abs/../../sentinel/evil' })],
    ['relative name climbing out', () => [{ name: 'a/../../sentinel/evil' }], () => ({ error: 'UNSAFE_PATH', entry: 'a/../../sentinel/evil' })],
    [
      'symlink to / then a path through it',
      (_s, abs) => [{ name: 'x', type: 'symlink', linkname: '/' }, { name: `x/${abs}/evil`, data: 'in' }],
      (abs) => ({ contained: `${abs}/evil`, content: 'in' }),
    ],
    [
      'relative symlink climbing above the root',
      (_s, abs, up) => [{ name: 'x', type: 'symlink', linkname: up }, { name: `x/${abs}/evil`, data: 'in' }],
      (abs) => ({ contained: `${abs}/evil`, content: 'in' }),
    ],
    [
      'symlinked directory pointing at a host path',
      (_s, abs) => [{ name: 'etc', type: 'symlink', linkname: `/${abs}` }, { name: 'etc/passwd', data: 'pw' }],
      (abs) => ({ contained: `${abs}/passwd`, content: 'pw' }),
    ],
    [
      'symlink as the last component is replaced, not written through',
      () => [{ name: 'f', type: 'symlink', linkname: '../sentinel/secret' }, { name: 'f', data: 'new' }],
      () => ({ contained: 'f', content: 'new' }),
    ],
    ['hard link to an absolute host path', (_s, abs) => [{ name: 'h', type: 'hardlink', linkname: `/${abs}/secret` }], () => ({ error: 'ARCHIVE_INVALID', entry: 'h' })],
    ['hard link climbing out', () => [{ name: 'h', type: 'hardlink', linkname: '../sentinel/secret' }], () => ({ error: 'UNSAFE_PATH', entry: 'h' })],
    [
      'hard link through a symlink to /',
      (_s, abs) => [{ name: 'x', type: 'symlink', linkname: '/' }, { name: 'h', type: 'hardlink', linkname: `x/${abs}/secret` }],
      () => ({ error: 'ARCHIVE_INVALID', entry: 'h' }),
    ],
    ['hard link to a missing entry', () => [{ name: 'h', type: 'hardlink', linkname: 'nope' }], () => ({ error: 'ARCHIVE_INVALID', entry: 'h' })],
    [
      'symlink loop',
      () => [{ name: 'a', type: 'symlink', linkname: 'b' }, { name: 'b', type: 'symlink', linkname: 'a' }, { name: 'a/x' }],
      () => ({ error: 'ARCHIVE_INVALID', entry: 'a/x' }),
    ],
    ['absurdly deep path', () => [{ name: 'd/'.repeat(2100) + 'x' }], () => ({ error: 'ARCHIVE_INVALID', entry: 'd/'.repeat(2100) + 'x' })],
    [
      'directory replaced by a symlink after entries were written below it',
      (_s, abs) => [{ name: 'd/', type: 'dir' }, { name: 'd/first', data: '1' }, { name: 'd', type: 'symlink', linkname: `/${abs}` }, { name: 'd/evil', data: 'in' }],
      (abs) => ({ contained: `${abs}/evil`, content: 'in' }),
    ],
  ];
  await withSandbox(async (s) => {
    const abs = s.sentinel.slice(1);
    const up = '../'.repeat(s.root.split('/').length + 2);
    const tars = s.tars(...cases.map(([, entries]) => entries(s, abs, up)));
    for (const [i, [what, , expect]] of cases.entries()) {
      const root = s.newRoot();
      const want = expect(abs);
      const run = unpackTar(root, tars[i]!, { layerName: 'sha256:test' });
      if ('error' in want) await rejectsWith(run, want.error, want.entry);
      else {
        await run;
        assert.equal(readFileSync(join(root, want.contained), 'utf8'), want.content, what);
        assert.ok(lstatSync(join(root, want.contained)).isFile(), what);
      }
      assertNothingEscaped(s);
    }
  });
});

test('ignored paths are neither written nor deleted, even through symlinks', async () => {
  await withSandbox(async (s) => {
    await s.apply([{ name: 'ign/', type: 'dir' }, { name: 'ign/keep', data: 'k' }, { name: 'var/', type: 'dir' }, { name: 'var/run/', type: 'dir' }]);
    const warnings: string[] = [];
    const stats = await s.apply(
      [
        { name: 'ign/new', data: 'n' },
        { name: 'x', type: 'symlink', linkname: '/ign' },
        { name: 'x/via-link', data: 'n' },
        { name: '.wh.ign' },
        { name: 'var', data: 'file replacing a dir with an ignored child' },
        { name: 'h', type: 'hardlink', linkname: 'ign/keep' },
      ],
      { ignorePaths: ['/ign', '/var/run'], onWarning: (m) => warnings.push(m) },
    );
    assert.deepEqual(tree(s.root), ['ign/', 'ign/keep', 'var/', 'var/run/', 'x -> /ign']);
    assert.equal(stats.skipped, 4);
    assert.equal(warnings.length, 2, warnings.join('\n'));
  });
});

// ---- whiteouts ----------------------------------------------------------------------------------

test('whiteouts delete from lower layers only', async () => {
  const cases: Array<[string, Spec[], Spec[], string[], Partial<UnpackOptions>?]> = [
    ['file deleted', [{ name: 'a/', type: 'dir' }, { name: 'a/f' }, { name: 'a/g' }], [{ name: 'a/.wh.f' }], ['a/', 'a/g']],
    [
      'directory deleted recursively',
      [{ name: 'a/', type: 'dir' }, { name: 'a/b/', type: 'dir' }, { name: 'a/b/c' }, { name: 'keep' }],
      [{ name: '.wh.a' }],
      ['keep'],
    ],
    [
      'opaque directory, marker first',
      [{ name: 'd/', type: 'dir' }, { name: 'd/old' }, { name: 'd/sub/', type: 'dir' }, { name: 'd/sub/old2' }, { name: 'other' }],
      [{ name: 'd/.wh..wh..opq' }, { name: 'd/new' }, { name: 'd/sub/', type: 'dir' }, { name: 'd/sub/new2' }],
      ['d/', 'd/new', 'd/sub/', 'd/sub/new2', 'other'],
    ],
    [
      'opaque directory, marker last, parents implicit',
      [{ name: 'd/', type: 'dir' }, { name: 'd/old' }, { name: 'd/sub/', type: 'dir' }, { name: 'd/sub/old2' }],
      [{ name: 'd/new' }, { name: 'd/sub/new2' }, { name: 'd/.wh..wh..opq' }],
      ['d/', 'd/new', 'd/sub/', 'd/sub/new2'],
    ],
    ['whiteout of a missing path', [{ name: 'a' }], [{ name: '.wh.nothing' }, { name: 'dir/.wh.gone' }, { name: 'b' }], ['a', 'b']],
    ['whiteout listed after the same layer recreated the path', [{ name: 'f' }], [{ name: 'f/', type: 'dir' }, { name: 'f/inner' }, { name: '.wh.f' }], ['f/', 'f/inner']],
    ['whiteout listed before the same layer recreates the path', [{ name: 'f/', type: 'dir' }, { name: 'f/old' }], [{ name: '.wh.f' }, { name: 'f' }], ['f']],
    [
      'aufs metadata is never materialised',
      [{ name: 'a' }],
      [{ name: '.wh..wh.plnk/', type: 'dir' }, { name: '.wh..wh.plnk/123.4' }, { name: '.wh..wh.aufs' }],
      ['a'],
    ],
    [
      'opaque root keeps ignored paths',
      [{ name: 'a' }, { name: 'ign/', type: 'dir' }, { name: 'ign/x' }],
      [{ name: '.wh..wh..opq' }],
      ['ign/', 'ign/x'],
      { ignorePaths: ['/ign'] },
    ],
    [
      'whiteout through a symlinked parent',
      [{ name: 'real/', type: 'dir' }, { name: 'real/f' }, { name: 'l', type: 'symlink', linkname: '/real' }],
      [{ name: 'l/.wh.f' }],
      ['l -> /real', 'real/'],
    ],
  ];
  await withSandbox(async (s) => {
    const tars = s.tars(...cases.flatMap(([, lower, upper]) => [lower, upper]));
    for (const [i, [what, , upper, want, opts]] of cases.entries()) {
      const root = s.newRoot();
      await unpackTar(root, tars[2 * i]!);
      const stats = await unpackTar(root, tars[2 * i + 1]!, opts);
      assert.deepEqual(tree(root), want, what);
      // `.wh.x` and `.wh..wh..opq` count; aufs `.wh..wh.*` metadata does not
      assert.equal(stats.whiteouts, upper.filter((e) => /(^|\/)\.wh\.(?!\.wh\.(?!\.opq))/.test(e.name)).length, what);
    }
  });
});

// ---- replacement --------------------------------------------------------------------------------

test('entries replace what lower layers had at their path', async () => {
  const cases: Array<[string, Spec[], Spec[], string[]]> = [
    ['file -> dir', [{ name: 'p', data: 'old' }], [{ name: 'p/', type: 'dir' }, { name: 'p/c', data: 'c' }], ['p/', 'p/c=c']],
    ['dir -> file', [{ name: 'p/', type: 'dir' }, { name: 'p/c' }, { name: 'p/d/e' }], [{ name: 'p', data: 'new' }], ['p=new']],
    [
      'symlink -> file',
      [{ name: 't', data: 'target' }, { name: 'p', type: 'symlink', linkname: 't' }],
      [{ name: 'p', data: 'new' }],
      ['p=new', 't=target'],
    ],
    ['file -> symlink', [{ name: 'p', data: 'old' }], [{ name: 'p', type: 'symlink', linkname: 'elsewhere' }], ['p -> elsewhere']],
    ['dir -> symlink', [{ name: 'p/', type: 'dir' }, { name: 'p/c' }], [{ name: 'p', type: 'symlink', linkname: '/x' }], ['p -> /x']],
    [
      'symlink to a dir -> dir',
      [{ name: 'real/', type: 'dir' }, { name: 'real/x', data: 'x' }, { name: 'p', type: 'symlink', linkname: 'real' }],
      [{ name: 'p/', type: 'dir' }],
      ['p/', 'real/', 'real/x=x'],
    ],
    [
      'symlinked ancestor replaced by a directory between two entries below it',
      [{ name: 'real/sub/', type: 'dir' }, { name: 'l', type: 'symlink', linkname: 'real' }],
      [{ name: 'l/sub/a', data: 'a' }, { name: 'l/', type: 'dir' }, { name: 'l/sub/b', data: 'b' }],
      ['l/', 'l/sub/', 'l/sub/b=b', 'real/', 'real/sub/', 'real/sub/a=a'],
    ],
    ['dir over dir keeps children', [{ name: 'p/', type: 'dir' }, { name: 'p/c', data: 'c' }], [{ name: 'p/', type: 'dir', mode: 0o700 }], ['p/', 'p/c=c']],
    ['file -> file', [{ name: 'p', data: 'old' }], [{ name: 'p', data: 'new' }], ['p=new']],
    [
      'hard link -> file leaves the other name alone',
      [{ name: 'a', data: 'orig' }, { name: 'b', type: 'hardlink', linkname: 'a' }],
      [{ name: 'b', data: 'new' }],
      ['a=orig', 'b=new'],
    ],
  ];
  await withSandbox(async (s) => {
    const tars = s.tars(...cases.flatMap(([, lower, upper]) => [lower, upper]));
    for (const [i, [what, , , want]] of cases.entries()) {
      const root = s.newRoot();
      await unpackTar(root, tars[2 * i]!);
      await unpackTar(root, tars[2 * i + 1]!);
      assert.deepEqual(tree(root, true), want, what);
    }
  });
});

// ---- metadata -----------------------------------------------------------------------------------

test('modes, owners, times, links and special files survive unpacking', async () => {
  await withSandbox(async (s) => {
    const stats = await s.apply([
      { name: 'bin/', type: 'dir', mtime: 1000000000 },
      { name: 'bin/suid', data: '#!/bin/sh\n', mode: 0o4755, uid: 1000, gid: 1000, mtime: 1234567890 },
      { name: 'bin/suid-link', type: 'hardlink', linkname: 'bin/suid' },
      { name: 'tmp/', type: 'dir', mode: 0o1777, mtime: 1111111111 },
      { name: 'tmp/deep/child', data: 'c' },
      { name: 'shared/', type: 'dir', mode: 0o2775, uid: 0, gid: 50 },
      { name: 'ro/', type: 'dir', mode: 0o555, mtime: 1200000000 },
      { name: 'ro/inside', data: 'i', mode: 0o400 },
      { name: 'big', data: 'b', uid: 3000000, gid: 3000001 },
      { name: 'lnk', type: 'symlink', linkname: 'big', uid: 7, gid: 8, mtime: 1222222222 },
      { name: 'pipe', type: 'fifo', mode: 0o640 },
      { name: 'dev/', type: 'dir' },
      { name: 'dev/null2', type: 'char', major: 1, minor: 3, mode: 0o666 },
      { name: './', type: 'dir', mode: 0o755, mtime: 1300000000 },
    ]);
    const st = (p: string) => lstatSync(join(s.root, p));
    const checks: Array<[string, () => void]> = [
      ['setuid file keeps its mode after chown', () => assert.deepEqual([st('bin/suid').mode & 0o7777, st('bin/suid').uid, st('bin/suid').gid], [0o4755, 1000, 1000])],
      ['file mtime', () => assert.equal(st('bin/suid').mtimeMs, 1234567890000)],
      ['hard link shares the inode', () => assert.deepEqual([st('bin/suid-link').ino, st('bin/suid').nlink], [st('bin/suid').ino, 2])],
      ['sticky dir', () => assert.equal(st('tmp').mode & 0o7777, 0o1777)],
      ['dir mtime restored after children were added', () => assert.equal(st('tmp').mtimeMs, 1111111111000)],
      ['setgid dir with owner', () => assert.deepEqual([st('shared').mode & 0o7777, st('shared').gid], [0o2775, 50])],
      ['read-only dir still received its children', () => assert.deepEqual([st('ro').mode & 0o7777, st('ro/inside').mode & 0o7777], [0o555, 0o400])],
      ['implicit parents are 0755', () => assert.equal(st('tmp/deep').mode & 0o7777, 0o755)],
      ['uid/gid above 2^21', () => assert.deepEqual([st('big').uid, st('big').gid], [3000000, 3000001])],
      ['symlink owner and mtime', () => assert.deepEqual([readlinkSync(join(s.root, 'lnk')), st('lnk').uid, st('lnk').gid, st('lnk').mtimeMs], ['big', 7, 8, 1222222222000])],
      ['fifo', () => assert.deepEqual([st('pipe').isFIFO(), st('pipe').mode & 0o7777], [true, 0o640])],
      ['char device', () => assert.deepEqual([st('dev/null2').isCharacterDevice(), st('dev/null2').rdev, st('dev/null2').mode & 0o7777], [true, (1 << 8) | 3, 0o666])],
      ['root entry applies to the root', () => assert.equal(st('').mtimeMs, 1300000000000)],
    ];
    for (const [what, check] of checks) {
      try {
        check();
      } catch (err) {
        (err as Error).message = `${what}: ${(err as Error).message}`;
        throw err;
      }
    }
    assert.deepEqual(stats, { files: 4, dirs: 6, symlinks: 1, hardlinks: 1, whiteouts: 0, devices: 1, fifos: 1, skipped: 0, bytes: 13 });
  });
});

test('squash ownership leaves everything owned by the current user', async () => {
  await withSandbox(async (s) => {
    await s.apply(
      [
        { name: 'd/', type: 'dir', uid: 1000, gid: 1000 },
        { name: 'd/f', uid: 1000, gid: 1000, mode: 0o4755 },
        { name: 'l', type: 'symlink', linkname: 'd', uid: 5, gid: 5 },
      ],
      { ownership: 'squash' },
    );
    for (const p of ['d', 'd/f', 'l']) {
      const st = lstatSync(join(s.root, p));
      assert.deepEqual([st.uid, st.gid], [process.getuid!(), process.getgid!()], p);
    }
    assert.equal(lstatSync(join(s.root, 'd/f')).mode & 0o7777, 0o4755);
  });
});

const UNPACK_CHILD = `
import { createReadStream } from 'node:fs';
const [unpackUrl, archiveUrl, root, ...tars] = process.argv.slice(1);
const { unpackLayer } = await import(unpackUrl);
const { readTar } = await import(archiveUrl);
const warnings = [];
const stats = [];
for (const tar of tars) stats.push(await unpackLayer(root, readTar(createReadStream(tar)), { ownership: 'squash', onWarning: (m) => warnings.push(m) }));
process.stdout.write(JSON.stringify({ stats, warnings }));
`;

test('unprivileged squash unpacking copes with read-only dirs and skips device nodes', async () => {
  await withSandbox(async (s) => {
    const tars = s.tars(
      [
        { name: 'ro/', type: 'dir', mode: 0o555 },
        { name: 'ro/old' },
        { name: 'ro/sub/', type: 'dir', mode: 0o555 },
        { name: 'ro/sub/deep' },
        { name: 'owned', uid: 1000, gid: 1000, mode: 0o4755 },
        { name: 'dev/zero', type: 'char', major: 1, minor: 5 },
        { name: 'pipe', type: 'fifo' },
      ],
      [{ name: 'ro/new', data: 'n' }, { name: 'ro/.wh.old' }, { name: 'ro/sub', data: 'file now' }],
    );
    const nobody = 65534;
    const asRoot = process.getuid!() === 0;
    if (asRoot) spawnSync('chown', ['-R', `${nobody}:${nobody}`, s.base]);
    const here = new URL('.', import.meta.url);
    const args = ['--input-type=module', '-e', UNPACK_CHILD, new URL('unpack-layer.js', here).href, new URL('../../archive/index.js', here).href, s.root, ...tars];
    const r = asRoot
      ? spawnSync('setpriv', [`--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', '--', process.execPath, ...args], { encoding: 'utf8' })
      : spawnSync(process.execPath, args, { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { stats: UnpackStats[]; warnings: string[] };
    assert.deepEqual(tree(s.root, true), ['dev/', 'owned=', 'pipe', 'ro/', 'ro/new=n', 'ro/sub=file now']);
    assert.equal(lstatSync(join(s.root, 'ro')).mode & 0o7777, 0o555);
    assert.equal(lstatSync(join(s.root, 'owned')).mode & 0o7777, 0o4755);
    assert.equal(lstatSync(join(s.root, 'owned')).uid, asRoot ? nobody : process.getuid!());
    assert.deepEqual([out.stats[0]!.devices, out.stats[0]!.skipped], [0, 1]);
    assert.equal(out.warnings.length, 1);
    assert.match(out.warnings[0]!, /skipped char device 1:5 at \/dev\/zero/);
  });
});

test('device policy "error" refuses layers with device nodes', async () => {
  await withSandbox(async (s) => {
    await rejectsWith(
      s.apply([{ name: 'dev/zero', type: 'char', major: 1, minor: 5 }], { layerName: 'sha256:test', devices: 'error' }),
      'UNSUPPORTED',
      'dev/zero',
    );
    assert.equal(existsSync(join(s.root, 'dev/zero')), false);
  });
});

// ---- bodies from producers other than readTar ----------------------------------------------------

function header(name: string, type: LayerEntryType, size: number): LayerEntry['header'] {
  return { name, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size, mtime: 1700000000 };
}

async function* entriesOf(...entries: Array<() => LayerEntry>): AsyncGenerator<LayerEntry> {
  for (const make of entries) yield make();
}

test('entry bodies from any Readable unpack, whether chunked, empty or already ended', async () => {
  await withSandbox(async (s) => {
    const ended = () => {
      const body = Readable.from([]);
      body.resume();
      return body;
    };
    const endedBody = ended();
    await new Promise((resolve) => endedBody.once('end', resolve));
    await unpackLayer(
      s.root,
      entriesOf(
        () => ({ header: header('d', 'dir', 0), body: Readable.from([]) }),
        () => ({ header: header('d/f', 'file', 6), body: Readable.from([Buffer.from('ab'), Buffer.from('cdef')]) }),
        () => ({ header: header('d/empty', 'file', 0), body: endedBody }),
      ),
      { ownership: 'preserve' },
    );
    assert.deepEqual(tree(s.root, true), ['d/', 'd/empty=', 'd/f=abcdef']);
  });
});

test('a body that fails or stops mid-file fails its entry', async () => {
  const cases: Array<[string, (body: Readable) => void, RegExp]> = [
    ['source error', (body) => body.destroy(new Error('connection reset')), /entry "f": connection reset/],
    ['closed without an error', (body) => body.destroy(), /entry "f": entry body closed before its end/],
  ];
  await withSandbox(async (s) => {
    for (const [what, stop, message] of cases) {
      let started = false;
      const body = new Readable({
        read() {
          if (started) return;
          started = true;
          this.push(Buffer.from('xy'));
          setImmediate(() => stop(this));
        },
      });
      await assert.rejects(
        unpackLayer(s.newRoot(), entriesOf(() => ({ header: header('f', 'file', 10), body })), { ownership: 'preserve', layerName: 'sha256:test' }),
        (err: unknown) => err instanceof GantryError && message.test(err.message),
        what,
      );
    }
  });
});

test('cancelling stops unpacking with ABORTED', async () => {
  await withSandbox(async (s) => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(s.apply([{ name: 'a' }], { signal: ac.signal }), (err: unknown) => err instanceof GantryError && err.code === 'ABORTED');
    assert.deepEqual(readdirSync(s.root), []);
  });
});

// ---- xattrs -------------------------------------------------------------------------------------

// cap_net_bind_service=ep as a VFS_CAP_REVISION_2 value
const CAPABILITY = '0100000200040000000000000000000000000000';
const XATTR_LAYER: Spec[] = [{ name: 'ping', data: 'x', uid: 1000, xattrs: { 'user.test': Buffer.from('hello').toString('hex'), 'security.capability': CAPABILITY } }];

test('a layer with xattrs fails with an install hint when setfattr is missing', async () => {
  await withSandbox(async (s) => {
    const [withXattrs, without] = s.tars(XATTR_LAYER, [{ name: 'plain' }]);
    const savedPath = process.env.PATH;
    process.env.PATH = join(s.base, 'tars');
    try {
      const run = unpackTar(s.root, withXattrs!, { layerName: 'sha256:test' });
      await assert.rejects(run, (err: unknown) => {
        assert.ok(err instanceof GantryError);
        assert.equal(err.code, 'UNSUPPORTED');
        assert.match(err.message, /entry "ping".*setfattr/);
        assert.match(err.hint ?? '', /apt-get install attr/);
        return true;
      });
      // the same layer without xattrs needs no tool
      await unpackTar(s.root, without!);
      assert.ok(existsSync(join(s.root, 'plain')));
    } finally {
      process.env.PATH = savedPath;
    }
  });
});

test('user and security.capability xattrs round-trip when setfattr is installed', async () => {
  await withSandbox(async (s) => {
    if (!findExecutable('setfattr')) {
      // This machine has no `attr` package: the layer must fail loudly rather than drop capabilities.
      await assert.rejects(s.apply(XATTR_LAYER), (err: unknown) => err instanceof GantryError && err.code === 'UNSUPPORTED');
      return;
    }
    await s.apply(XATTR_LAYER);
    const read = (name: string) =>
      spawnSync('python3', ['-c', 'import os,sys; sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2]).hex())', join(s.root, 'ping'), name], {
        encoding: 'utf8',
      }).stdout;
    assert.equal(read('user.test'), Buffer.from('hello').toString('hex'));
    assert.equal(read('security.capability'), CAPABILITY);
    assert.equal(lstatSync(join(s.root, 'ping')).uid, 1000);
  });
});
