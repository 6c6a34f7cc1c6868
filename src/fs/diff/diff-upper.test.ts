import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { chmodSync, linkSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeLayer, type LayerEntry } from '../../archive/index.js';
import { tempDir, type TempDir } from '../../testing/tmp.js';
import { run } from '../../testing/exec.js';
import { deviceNumbers, diffUpperDir } from './diff-upper.js';
import { parseGetfattrDump } from './getfattr.js';

const CAP = Buffer.from('0100000200200000000000000000000000000000', 'hex');

async function collect(upper: string, ignore?: (p: string) => boolean): Promise<LayerEntry[]> {
  const out: LayerEntry[] = [];
  for await (const e of diffUpperDir(upper, { ignore })) out.push(e);
  return out;
}

async function sh(cmd: string, args: string[]): Promise<void> {
  await run(cmd, args, { check: true });
}

describe('diffUpperDir', () => {
  let tmp: TempDir;
  let upper: string;

  before(async () => {
    tmp = await tempDir('diff-upper');
    upper = join(tmp.path, 'upper');
    // An upperdir as overlayfs leaves it: whiteouts, an opaque directory, copied-up parents.
    mkdirSync(join(upper, 'bin'), { recursive: true });
    await sh('mknod', [join(upper, 'bin', 'ls'), 'c', '0', '0']);
    mkdirSync(join(upper, 'etc'));
    await sh('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(upper, 'etc')]);
    await sh('setfattr', ['-n', 'trusted.overlay.origin', '-v', '0xfb00', join(upper, 'bin')]);
    writeFileSync(join(upper, 'etc', 'y'), 'x\n');
    writeFileSync(join(upper, 'f1'), 'data');
    linkSync(join(upper, 'f1'), join(upper, 'f2'));
    writeFileSync(join(upper, 'suid'), '#!/bin/sh\n');
    chmodSync(join(upper, 'suid'), 0o4755);
    writeFileSync(join(upper, 'ping'), 'elf');
    await sh('setfattr', ['-n', 'security.capability', '-v', '0x' + CAP.toString('hex'), join(upper, 'ping')]);
    symlinkSync('../etc/y', join(upper, 'bin', 'link'));
    await sh('mknod', [join(upper, 'null'), 'c', '1', '3']);
    await sh('mkfifo', [join(upper, 'pipe')]);
    mkdirSync(join(upper, 'skipme'));
    writeFileSync(join(upper, 'skipme', 'x'), '');
    utimesSync(join(upper, 'f1'), 1_700_000_000, 1_700_000_000);
  });
  after(() => tmp.cleanup());

  it('lists the changes depth first with whiteouts, opaque markers, hard links and devices', async () => {
    const entries = await collect(upper, (p) => p === '/skipme');
    const names = entries.map((e) => `${e.header.type} ${e.header.name}${e.header.linkname ? ' -> ' + e.header.linkname : ''}`);
    assert.deepEqual(names, [
      'dir bin',
      'file bin/.wh.ls',
      'symlink bin/link -> ../etc/y',
      'dir etc',
      'file etc/.wh..wh..opq',
      'file etc/y',
      'file f1',
      'hardlink f2 -> f1',
      'char null',
      'file ping',
      'fifo pipe',
      'file suid',
    ]);
    const byName = new Map(entries.map((e) => [e.header.name, e.header]));
    assert.equal(byName.get('suid')!.mode, 0o4755);
    assert.deepEqual(byName.get('ping')!.xattrs, { 'security.capability': CAP });
    assert.equal(byName.get('bin')!.xattrs, undefined, 'overlay bookkeeping xattrs are dropped');
    assert.equal(byName.get('etc')!.xattrs, undefined);
    assert.deepEqual([byName.get('null')!.devmajor, byName.get('null')!.devminor], [1, 3]);
    assert.equal(byName.get('f1')!.size, 4);
    assert.equal(byName.get('f1')!.mtime, 1_700_000_000);
    assert.equal(byName.get('bin/.wh.ls')!.size, 0);
  });

  it('produces a layer that tar lists with the expected entries', async () => {
    const layer = join(tmp.path, 'layer.tar');
    const result = await writeLayer(diffUpperDir(upper), layer, { compression: 'none' });
    assert.match(result.diffId, /^sha256:[0-9a-f]{64}$/);
    const listing = await run('tar', ['--numeric-owner', '-tvf', layer], { check: true });
    const lines = listing.stdout.trim().split('\n');
    const perms = new Map(lines.map((l) => {
      const cols = l.split(/\s+/);
      const name = cols.slice(5).join(' ');
      return [name.replace(/ (->|link to) .*$/, ''), cols[0]];
    }));
    assert.deepEqual([...perms.keys()], [
      'bin/', 'bin/.wh.ls', 'bin/link', 'etc/', 'etc/.wh..wh..opq', 'etc/y', 'f1', 'f2', 'null', 'ping', 'pipe', 'skipme/', 'skipme/x', 'suid',
    ]);
    assert.equal(perms.get('suid'), '-rwsr-xr-x');
    assert.equal(perms.get('null'), 'crw-r--r--');
    assert.equal(perms.get('pipe')![0], 'p');
    assert.equal(perms.get('f2')![0], 'h');
    assert.ok(lines.some((l) => /f2 link to f1$/.test(l)), lines.join('\n'));
    // The capability survives into the archive as a PAX xattr record.
    const xattrs = await run('tar', ['--xattrs', '--xattrs-include=*', '-tvvf', layer], { check: true });
    assert.match(xattrs.stdout, /x: \d+ security\.capability/);
  });
});

describe('deviceNumbers', () => {
  const cases: Array<[number, number, number]> = [
    [0x0103, 1, 3],
    [0x0500, 5, 0],
    [(259 << 8) | 1, 259, 1],
    [(8 << 8) | 0x12 | (0x345 << 20), 8, 0x34512],
  ];
  for (const [rdev, major, minor] of cases) {
    it(`splits ${rdev.toString(16)} into ${major}:${minor}`, () => assert.deepEqual(deviceNumbers(rdev), { major, minor }));
  }
});

describe('parseGetfattrDump', () => {
  it('decodes escaped names and hex values', () => {
    const dump = '# file: /u/sp\\040ace\n# file: /u/a\\134b\ntrusted.overlay.opaque=0x79\nuser.t="text"\n\n';
    const map = parseGetfattrDump(dump);
    assert.deepEqual([...map.keys()], ['/u/sp ace', '/u/a\\b']);
    assert.deepEqual(map.get('/u/a\\b'), { 'trusted.overlay.opaque': Buffer.from('y'), 'user.t': Buffer.from('text') });
  });
});
