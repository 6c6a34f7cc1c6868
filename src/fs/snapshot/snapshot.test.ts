import assert from 'node:assert/strict';
import { chmodSync, chownSync, linkSync, mkdirSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { run } from '../../testing/exec.js';
import { tempDir, type TempDir } from '../../testing/tmp.js';
import type { LayerEntry } from '../../archive/index.js';
import { diffSnapshots, comparePaths, type Change } from './diff.js';
import { inplaceIgnorePaths } from './ignore.js';
import { snapshotLayerEntries } from './layer.js';
import { mountPointsUnder, parseMountinfo } from './mountinfo.js';
import { takeSnapshot, type SnapshotMode } from './walk.js';

let tmp: TempDir;
let seq = 0;
before(async () => {
  tmp = await tempDir('snapshot');
});
after(async () => {
  await tmp?.cleanup();
});

const FIXED_TIME = 1_000_000_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A small tree: dirs, files, a symlink. Returns its root. */
function makeTree(): string {
  const root = join(tmp.path, `root-${++seq}`);
  mkdirSync(join(root, 'etc/app'), { recursive: true });
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  mkdirSync(join(root, 'var/cache/x/y'), { recursive: true });
  mkdirSync(join(root, 'proc'), { recursive: true });
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  // Whole seconds, so a test can put the mtime back exactly.
  utimesSync(join(root, 'etc/passwd'), FIXED_TIME, FIXED_TIME);
  writeFileSync(join(root, 'etc/app/conf'), 'a=1\n');
  writeFileSync(join(root, 'usr/bin/tool'), 'ELF');
  writeFileSync(join(root, 'var/cache/x/y/z'), 'zz');
  writeFileSync(join(root, 'proc/status'), 'kernel');
  symlinkSync('tool', join(root, 'usr/bin/alias'));
  return root;
}

function changesFor(root: string, mode: SnapshotMode, act: (root: string) => void, ignore: string[] = []): Change[] {
  const b = takeSnapshot(root, { mode, ignore });
  act(root);
  return diffSnapshots(b, takeSnapshot(root, { mode, ignore, previous: b }));
}

const fmt = (cs: Change[]) => cs.map((c) => `${c.kind} ${c.path}`);

async function collect(entries: AsyncIterable<LayerEntry>): Promise<Array<{ name: string; type: string; linkname?: string; body?: string; mode: number; uid: number }>> {
  const out = [];
  for await (const e of entries) {
    let body: string | undefined;
    if (e.body) {
      if (Buffer.isBuffer(e.body)) body = e.body.toString();
      else {
        const chunks: Buffer[] = [];
        for await (const c of e.body as Readable) chunks.push(c as Buffer);
        body = Buffer.concat(chunks).toString();
      }
    }
    out.push({ name: e.header.name, type: e.header.type, mode: e.header.mode, uid: e.header.uid, ...(e.header.linkname !== undefined ? { linkname: e.header.linkname } : {}), ...(body !== undefined ? { body } : {}) });
  }
  return out;
}

describe('diffSnapshots (redo mode)', () => {
  const cases: Array<{ name: string; act: (r: string) => void; want: string[] }> = [
    { name: 'nothing done, nothing changed', act: () => {}, want: [] },
    { name: 'added file and directory', act: (r) => { mkdirSync(join(r, 'opt')); writeFileSync(join(r, 'opt/new'), 'n'); }, want: ['added /opt', 'added /opt/new'] },
    { name: 'appended content', act: (r) => writeFileSync(join(r, 'etc/passwd'), 'x', { flag: 'a' }), want: ['changed /etc/passwd'] },
    { name: 'deleted file: its parent changed too', act: (r) => unlinkSync(join(r, 'etc/app/conf')), want: ['changed /etc/app', 'deleted /etc/app/conf'] },
    { name: 'deleted tree: one deletion, not one per child', act: (r) => rmSync(join(r, 'var/cache/x'), { recursive: true }), want: ['changed /var/cache', 'deleted /var/cache/x'] },
    { name: 'symlink retargeted', act: (r) => { unlinkSync(join(r, 'usr/bin/alias')); symlinkSync('other', join(r, 'usr/bin/alias')); }, want: ['changed /usr/bin', 'changed /usr/bin/alias'] },
    { name: 'chmod', act: (r) => chmodSync(join(r, 'usr/bin/tool'), 0o755), want: ['changed /usr/bin/tool'] },
    { name: 'chown', act: (r) => chownSync(join(r, 'usr/bin/tool'), 1000, 1000), want: ['changed /usr/bin/tool'] },
    { name: 'hard link: both names share the changed inode', act: (r) => linkSync(join(r, 'usr/bin/tool'), join(r, 'usr/bin/tool2')), want: ['changed /usr/bin', 'changed /usr/bin/tool', 'added /usr/bin/tool2'] },
    {
      name: 'directory replaced by a file: its old children need no whiteouts',
      act: (r) => { rmSync(join(r, 'var/cache/x'), { recursive: true }); writeFileSync(join(r, 'var/cache/x'), 'now a file'); },
      want: ['changed /var/cache', 'changed /var/cache/x'],
    },
    {
      name: 'directory removed and recreated: deleted children are listed',
      act: (r) => { rmSync(join(r, 'etc/app'), { recursive: true }); mkdirSync(join(r, 'etc/app')); },
      want: ['changed /etc', 'changed /etc/app', 'deleted /etc/app/conf'],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(fmt(changesFor(makeTree(), 'redo', c.act)), c.want);
    });
  }

  test('ignored paths are neither walked nor reported', () => {
    const root = makeTree();
    const got = changesFor(root, 'redo', (r) => { writeFileSync(join(r, 'proc/status'), 'changed!'); writeFileSync(join(r, 'var/cache/x/new'), '1'); rmSync(join(r, 'etc/app'), { recursive: true }); }, ['/proc', '/var/cache/x', '/etc/app']);
    assert.deepEqual(fmt(got), ['changed /etc']);
    const snap = takeSnapshot(root, { ignore: ['/proc', '/var/cache/x'] });
    assert.ok(!snap.files.has('/proc') && !snap.files.has('/proc/status') && !snap.files.has('/var/cache/x/y'));
    assert.ok(snap.files.has('/var/cache') && snap.files.has('/usr/bin/alias'));
  });
});

describe('snapshot modes', () => {
  /** Rewrites a file with same-size content and puts its mtime back: only ctime and content differ. */
  const rewriteKeepingMtime = (r: string) => {
    const p = join(r, 'etc/passwd');
    assert.equal(statSync(p).mtimeMs, FIXED_TIME * 1000);
    writeFileSync(p, 'ROOT:x:0:0::/root:/bin/sh\n');
    utimesSync(p, FIXED_TIME, FIXED_TIME);
  };
  const cases: Array<{ mode: SnapshotMode; act: (r: string) => void; want: string[]; why: string }> = [
    { mode: 'time', act: rewriteKeepingMtime, want: [], why: 'time mode compares mtime only (Kaniko documents it may miss changes)' },
    { mode: 'redo', act: rewriteKeepingMtime, want: ['changed /etc/passwd'], why: 'ctime moves on any write' },
    { mode: 'full', act: rewriteKeepingMtime, want: ['changed /etc/passwd'], why: 'full mode hashes the content' },
    { mode: 'time', act: (r) => chmodSync(join(r, 'usr/bin/tool'), 0o700), want: [], why: 'chmod leaves the mtime alone' },
    { mode: 'full', act: (r) => chmodSync(join(r, 'usr/bin/tool'), 0o700), want: ['changed /usr/bin/tool'], why: 'mode is compared' },
    { mode: 'time', act: (r) => writeFileSync(join(r, 'new'), ''), want: ['added /new'], why: 'new paths are always found' },
    { mode: 'time', act: (r) => unlinkSync(join(r, 'etc/passwd')), want: ['changed /etc', 'deleted /etc/passwd'], why: 'deletions are always found' },
  ];
  for (const c of cases) {
    test(`${c.mode}: ${c.why}`, () => {
      assert.deepEqual(fmt(changesFor(makeTree(), c.mode, c.act)), c.want);
    });
  }

  test('full mode: identical metadata with a different content hash is a change', () => {
    const root = makeTree();
    const b = takeSnapshot(root, { mode: 'full' });
    const a = takeSnapshot(root, { mode: 'full' });
    assert.deepEqual(diffSnapshots(b, a), []);
    const meta = a.files.get('/etc/passwd')!;
    assert.match(meta.hash!, /^[0-9a-f]{64}$/);
    a.files.set('/etc/passwd', { ...meta, hash: '0'.repeat(64) });
    assert.deepEqual(fmt(diffSnapshots(b, a)), ['changed /etc/passwd']);
  });

  test('redo mode hashes only files changed within the racy window of the walk', async () => {
    const root = makeTree();
    await sleep(60);
    writeFileSync(join(root, 'fresh'), 'f');
    const s = takeSnapshot(root, { mode: 'redo' });
    assert.equal(s.files.get('/etc/passwd')!.hash, undefined);
    assert.match(s.files.get('/fresh')!.hash!, /^[0-9a-f]{64}$/);
    // A later walk re-hashes it while its metadata is unchanged, so a same-tick rewrite is caught.
    const later = takeSnapshot(root, { mode: 'redo', previous: s });
    assert.equal(later.files.get('/fresh')!.hash, s.files.get('/fresh')!.hash);
  });
});

describe('snapshotLayerEntries', () => {
  test('added, changed, deleted, hard-linked and symlinked paths with their ancestors, sorted', async () => {
    const root = makeTree();
    const b = takeSnapshot(root);
    mkdirSync(join(root, 'opt/a'), { recursive: true });
    writeFileSync(join(root, 'opt/a/f'), 'hello');
    linkSync(join(root, 'opt/a/f'), join(root, 'opt/a.link'));
    rmSync(join(root, 'var/cache/x'), { recursive: true });
    unlinkSync(join(root, 'usr/bin/alias'));
    symlinkSync('/elsewhere', join(root, 'usr/bin/alias'));
    chmodSync(join(root, 'etc/app/conf'), 0o600);
    const changes = diffSnapshots(b, takeSnapshot(root, { previous: b }));
    const got = await collect(snapshotLayerEntries(root, changes));
    assert.deepEqual(got.map((e) => `${e.type} ${e.name}${e.linkname ? ' -> ' + e.linkname : ''}${e.body !== undefined ? ' = ' + e.body : ''}`), [
      'dir etc',
      'dir etc/app',
      'file etc/app/conf = a=1\n',
      'dir opt',
      'dir opt/a',
      'file opt/a/f = hello',
      'hardlink opt/a.link -> opt/a/f',
      'dir usr',
      'dir usr/bin',
      'symlink usr/bin/alias -> /elsewhere',
      'dir var',
      'dir var/cache',
      'file var/cache/.wh.x',
    ]);
    assert.equal(got.find((e) => e.name === 'etc/app/conf')!.mode, 0o600);
    const names = got.map((e) => e.name);
    assert.deepEqual([...names].sort(comparePaths), names);
  });

  test('file capabilities set in the step are kept (security.capability only)', async () => {
    const root = makeTree();
    const b = takeSnapshot(root);
    writeFileSync(join(root, 'usr/bin/ping'), 'ELF');
    await run('setcap', ['cap_net_raw+ep', join(root, 'usr/bin/ping')], { check: true });
    await run('setfattr', ['-n', 'user.note', '-v', 'x', join(root, 'usr/bin/ping')], { check: true });
    const changes = diffSnapshots(b, takeSnapshot(root));
    const entry = async (xattrs?: false) => {
      for await (const e of snapshotLayerEntries(root, changes, xattrs === false ? { xattrs } : {})) if (e.header.name === 'usr/bin/ping') return e.header;
      throw new Error('usr/bin/ping not in the layer');
    };
    const header = await entry();
    assert.deepEqual(Object.keys(header.xattrs ?? {}), ['security.capability']);
    // VFS_CAP_REVISION_2 with the effective bit, then CAP_NET_RAW (13) in the permitted set.
    assert.equal(Buffer.from(header.xattrs!['security.capability']!).toString('hex').slice(0, 16), '0100000200200000');
    assert.equal((await entry(false)).xattrs, undefined);
  });

  test('a root-level deletion is a top-level whiteout', async () => {
    const root = makeTree();
    const b = takeSnapshot(root);
    rmSync(join(root, 'usr'), { recursive: true });
    const got = await collect(snapshotLayerEntries(root, diffSnapshots(b, takeSnapshot(root))));
    assert.deepEqual(got.map((e) => `${e.type} ${e.name} ${e.mode}`), ['file .wh.usr 0']);
  });
});

describe('ignore list', () => {
  test('mountinfo: mount points strictly below the root, octal escapes decoded', () => {
    const text = [
      '22 1 0:21 / / rw,relatime - overlay overlay rw',
      '23 22 0:22 / /proc rw - proc proc rw',
      '24 22 0:5 / /dev rw - tmpfs tmpfs rw',
      '25 22 8:1 /x /etc/resolv.conf ro - ext4 /dev/sda1 rw',
      '26 22 8:1 /y /work\\040space rw - ext4 /dev/sda1 rw',
      '27 22 8:1 /y /srv/root/data rw - ext4 /dev/sda1 rw',
      '',
    ].join('\n');
    assert.deepEqual(parseMountinfo(text), ['/', '/proc', '/dev', '/etc/resolv.conf', '/work space', '/srv/root/data']);
    assert.deepEqual(mountPointsUnder('/', text), ['/proc', '/dev', '/etc/resolv.conf', '/work space', '/srv/root/data']);
    assert.deepEqual(mountPointsUnder('/srv/root', text), ['/data']);
    assert.deepEqual(mountPointsUnder('/srv/root/data', text), []);
  });

  test('inplaceIgnorePaths: system, builder, /var/run unless disabled, extra paths, mount points', () => {
    const base = inplaceIgnorePaths('/', { mountPoints: ['/etc/hosts'], extra: ['/workspace/', 'cache//x'] });
    for (const p of ['/proc', '/sys', '/dev', '/gantry', '/kaniko', '/busybox', '/var/run', '/etc/hosts', '/workspace', '/cache/x']) assert.ok(base.includes(p), p);
    assert.ok(!inplaceIgnorePaths('/', { mountPoints: [], ignoreVarRun: false }).includes('/var/run'));
    assert.ok(!base.includes('/'));
  });
});
