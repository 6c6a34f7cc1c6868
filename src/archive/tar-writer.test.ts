import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeFile } from 'node:fs/promises';
import { run } from '../testing/exec.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { isGantryError } from '../util/errors.js';
import { encodeHeader, splitUstarPath, type TarHeader } from './tar-header.js';
import { readTar, type TarEntry } from './tar-reader.js';
import { TarWriter, type TarWriterOptions } from './tar-writer.js';

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function archive(entries: Array<{ header: TarHeader; body?: Buffer }>, opts?: TarWriterOptions): Promise<Buffer> {
  const w = new TarWriter(opts);
  const out = collect(w);
  for (const e of entries) await w.add(e.header, e.body);
  await w.finish();
  return out;
}

async function readAll(buf: Buffer): Promise<Array<{ header: TarEntry['header']; body: Buffer }>> {
  const out = [];
  for await (const e of readTar(Readable.from([buf]))) out.push({ header: e.header, body: await collect(e.body) });
  return out;
}

const base = { mode: 0o644, uid: 0, gid: 0, mtime: 1700000000 } as const;
const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80]);
const long150 = 'a'.repeat(49) + '/' + 'b'.repeat(50) + '/' + 'c'.repeat(49); // 150 chars, prefix split
const long300 = ('d'.repeat(99) + '/').repeat(3).slice(0, 299) + 'e'; // no split fits -> PAX path

interface Case {
  name: string;
  header: TarHeader;
  body?: Buffer;
  /** Whether a PAX header must (true) or must not (false) precede the entry. */
  pax: boolean;
  /** Substring GNU tar's verbose listing shows for the entry. */
  gnuList: string;
  /** Expected fields as Python's tarfile reports them. */
  py: Record<string, unknown>;
  /** Written with these writer options. */
  opts?: TarWriterOptions;
}

const cases: Case[] = [
  { name: 'regular file', header: { ...base, name: 'etc/hosts', type: 'file', size: 5 }, body: Buffer.from('hello'), pax: false, gnuList: '-rw-r--r-- 0/0               5 2023-11-14 22:13 etc/hosts', py: { name: 'etc/hosts', type: '0', mode: 0o644, size: 5 } },
  { name: 'directory gets a trailing slash', header: { ...base, name: 'usr/lib', type: 'dir', mode: 0o755 }, pax: false, gnuList: 'drwxr-xr-x 0/0               0 2023-11-14 22:13 usr/lib/', py: { name: 'usr/lib', type: '5', mode: 0o755 } },
  { name: 'setuid, setgid and sticky bits', header: { ...base, name: 'bin/su', type: 'file', mode: 0o7755 }, pax: false, gnuList: '-rwsr-sr-t 0/0               0', py: { mode: 0o7755 } },
  { name: 'symlink', header: { ...base, name: 'lib', type: 'symlink', mode: 0o777, linkname: 'usr/lib' }, pax: false, gnuList: 'lib -> usr/lib', py: { type: '2', linkname: 'usr/lib' } },
  { name: 'hard link', header: { ...base, name: 'bin/sh', type: 'hardlink', linkname: 'bin/dash' }, pax: false, gnuList: 'bin/sh link to bin/dash', py: { type: '1', linkname: 'bin/dash' } },
  { name: 'character device', header: { ...base, name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 }, pax: false, gnuList: 'crw-rw-rw- 0/0             1,3', py: { type: '3', devmajor: 1, devminor: 3 } },
  { name: 'block device', header: { ...base, name: 'dev/sda', type: 'block', mode: 0o660, devmajor: 8, devminor: 0 }, pax: false, gnuList: 'brw-rw---- 0/0             8,0', py: { type: '4', devmajor: 8, devminor: 0 } },
  { name: 'fifo', header: { ...base, name: 'run/fifo', type: 'fifo' }, pax: false, gnuList: 'prw-r--r--', py: { type: '6' } },
  { name: 'user and group names', header: { ...base, name: 'home/u', type: 'dir', uid: 1000, gid: 1000, uname: 'user', gname: 'staff' }, pax: false, gnuList: 'user/staff', py: { uname: 'user', gname: 'staff', uid: 1000 } },
  { name: 'name of 150 characters uses the USTAR prefix', header: { ...base, name: long150, type: 'file' }, pax: false, gnuList: long150, py: { name: long150 } },
  { name: 'name of exactly 100 characters fills the USTAR field', header: { ...base, name: 'n'.repeat(100), type: 'file' }, pax: false, gnuList: 'n'.repeat(100), py: { name: 'n'.repeat(100) } },
  { name: 'name of 101 characters without a slash uses a PAX path', header: { ...base, name: 'm'.repeat(101), type: 'file' }, pax: true, gnuList: 'm'.repeat(101), py: { name: 'm'.repeat(101) } },
  { name: 'name of 300 characters uses a PAX path', header: { ...base, name: long300, type: 'file' }, pax: true, gnuList: long300, py: { name: long300 } },
  { name: 'non-ASCII name uses a PAX path', header: { ...base, name: 'usr/share/héllo-世界', type: 'file' }, pax: true, gnuList: 'usr/share/héllo-世界', py: { name: 'usr/share/héllo-世界' } },
  { name: 'symlink target of 150 characters uses a PAX linkpath', header: { ...base, name: 'l', type: 'symlink', linkname: 't'.repeat(150) }, pax: true, gnuList: 'l -> ' + 't'.repeat(150), py: { linkname: 't'.repeat(150) } },
  { name: 'uid between 262143 and 2097151 stays in USTAR (no tar-stream clamp)', header: { ...base, name: 'mid', type: 'file', uid: 300000, gid: 2097151 }, pax: false, gnuList: '300000/2097151', py: { uid: 300000, gid: 2097151 } },
  { name: 'uid and gid above 2097151 use PAX records', header: { ...base, name: 'big', type: 'file', uid: 1000680000, gid: 3000000 }, pax: true, gnuList: '1000680000/3000000', py: { uid: 1000680000, gid: 3000000 } },
  { name: 'binary and text xattrs as SCHILY.xattr records', header: { ...base, name: 'usr/bin/ping', type: 'file', mode: 0o755, xattrs: { 'security.capability': cap, 'user.note': 'line1\nline2' } }, pax: true, gnuList: '-rwxr-xr-x*', py: { xattrs: { 'security.capability': cap.toString('hex'), 'user.note': Buffer.from('line1\nline2').toString('hex') } } },
  { name: 'fractional mtime dropped by default', header: { ...base, name: 'frac0', type: 'file', mtime: 1700000000.75 }, pax: false, gnuList: 'frac0', py: { mtime: 1700000000 } },
  { name: 'fractional mtime kept when requested', header: { ...base, name: 'frac1', type: 'file', mtime: 1700000000.25 }, opts: { subsecondMtime: true }, pax: true, gnuList: 'frac1', py: { mtime: 1700000000.25 } },
  { name: 'mtime clamped to SOURCE_DATE_EPOCH', header: { ...base, name: 'clamped', type: 'file', mtime: new Date('2030-01-01T00:00:00Z') }, opts: { clampMtime: 1600000000 }, pax: false, gnuList: '2020-09-13', py: { mtime: 1600000000 } },
  { name: 'pre-1970 mtime uses a PAX record', header: { ...base, name: 'old', type: 'file', mtime: -86400 }, pax: true, gnuList: '1969-12-31', py: { mtime: -86400 } },
];

describe('TarWriter header cases', () => {
  let dir: TempDir;
  const files = new Map<string, string>();
  const gnu = new Map<string, string>();
  const py = new Map<string, Record<string, unknown>>();

  before(async () => {
    dir = await tempDir('tar-writer');
    // One archive per case, then one GNU tar and one Python run over all of them: spawning per case is slow.
    for (const [i, c] of cases.entries()) {
      const f = join(dir.path, `${i}.tar`);
      await writeFile(f, await archive([{ header: c.header, body: c.body }], c.opts));
      files.set(c.name, f);
    }
    const script = [
      'import sys, tarfile, json',
      'out = {}',
      'for f in sys.argv[1:]:',
      '  with tarfile.open(f) as t:',
      '    m = t.getmembers()[0]',
      '    x = {k[13:]: v.encode("utf-8", "surrogateescape").hex() for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}',
      '    out[f] = dict(name=m.name, type=m.type.decode(), mode=m.mode, uid=m.uid, gid=m.gid, size=m.size, mtime=m.mtime, linkname=m.linkname, uname=m.uname, gname=m.gname, devmajor=m.devmajor, devminor=m.devminor, xattrs=x)',
      'print(json.dumps(out))',
    ].join('\n');
    const res = await run('python3', ['-c', script, ...files.values()], { check: true });
    const parsed = JSON.parse(res.stdout) as Record<string, Record<string, unknown>>;
    for (const [name, f] of files) {
      py.set(name, parsed[f]!);
      const list = await run('tar', ['--xattrs', '--utc', '-tvf', f], { check: true });
      gnu.set(name, list.stdout.replace(/ +/g, ' '));
    }
  });
  after(() => dir?.cleanup());

  for (const c of cases) {
    it(`${c.name}: round-trips through readTar`, async () => {
      const [e, ...rest] = await readAll(await archive([{ header: c.header, body: c.body }], c.opts));
      assert.equal(rest.length, 0);
      const h = e!.header;
      const wantName = c.header.type === 'dir' ? c.header.name + '/' : c.header.name;
      assert.equal(h.name, wantName);
      assert.equal(h.type, c.header.type);
      assert.equal(h.mode, c.header.mode);
      assert.equal(h.uid, c.header.uid);
      assert.equal(h.gid, c.header.gid);
      assert.equal(h.size, c.header.size ?? 0);
      assert.equal(h.linkname, c.header.linkname);
      assert.equal(h.devmajor, c.header.devmajor ?? 0);
      assert.equal(h.devminor, c.header.devminor ?? 0);
      assert.equal(h.mtime, c.py['mtime'] ?? c.header.mtime);
      assert.deepEqual(e!.body, c.body ?? Buffer.alloc(0));
      for (const [k, v] of Object.entries(c.header.xattrs ?? {})) assert.deepEqual(h.xattrs[k], Buffer.from(v));
      assert.equal(Object.keys(h.pax).length > 0, c.pax, 'PAX header presence');
    });
    it(`${c.name}: GNU tar lists it`, () => {
      assert.ok(gnu.get(c.name)!.includes(c.gnuList.replace(/ +/g, ' ')), `${gnu.get(c.name)} lacks ${c.gnuList}`);
    });
    it(`${c.name}: Python tarfile reads it`, () => {
      const got = py.get(c.name)!;
      for (const [k, v] of Object.entries(c.py)) assert.deepEqual(got[k], v, k);
    });
  }
});

// Runs as root, as everywhere this project builds (developers' machines and CI): restoring
// owners and security.* xattrs needs it.
describe('TarWriter extraction by GNU tar as root', () => {
  it('restores modes, owners, xattrs and links', async (t) => {
    const dir = await tempDir('tar-extract');
    t.after(() => dir.cleanup());
    const buf = await archive([
      { header: { ...base, name: 'bin', type: 'dir', mode: 0o755 } },
      { header: { ...base, name: 'bin/ping', type: 'file', mode: 0o4755, uid: 1000680000, gid: 3000000, size: 4, xattrs: { 'security.capability': cap, 'user.note': 'x' } }, body: Buffer.from('ping') },
      { header: { ...base, name: 'bin/tmp', type: 'dir', mode: 0o1777, uid: 300000, gid: 300001 } },
      { header: { ...base, name: 'bin/link', type: 'symlink', mode: 0o777, linkname: 'l'.repeat(150) } },
      { header: { ...base, name: 'bin/hard', type: 'hardlink', linkname: 'bin/ping' } },
    ]);
    const file = join(dir.path, 'a.tar');
    await writeFile(file, buf);
    const root = join(dir.path, 'root');
    await run('mkdir', [root], { check: true });
    await run('tar', ['--xattrs', "--xattrs-include=*", '--numeric-owner', '-xpf', file, '-C', root], { check: true });
    const ping = await lstat(join(root, 'bin/ping'));
    assert.equal(ping.mode & 0o7777, 0o4755);
    assert.equal(ping.uid, 1000680000);
    assert.equal(ping.gid, 3000000);
    assert.equal(ping.nlink, 2);
    const tmp = await lstat(join(root, 'bin/tmp'));
    assert.equal(tmp.mode & 0o7777, 0o1777);
    assert.equal(tmp.uid, 300000);
    assert.equal(await readlink(join(root, 'bin/link')), 'l'.repeat(150));
    const x = await run('python3', ['-c', 'import os,sys; print(os.getxattr(sys.argv[1], "security.capability").hex(), os.getxattr(sys.argv[1], "user.note").hex())', join(root, 'bin/ping')], { check: true });
    assert.equal(x.stdout.trim(), `${cap.toString('hex')} ${Buffer.from('x').toString('hex')}`);
  });
});

describe('TarWriter determinism', () => {
  const golden = fileURLToPath(new URL('../../../src/archive/testdata/golden.tar', import.meta.url));
  const entries = (): Array<{ header: TarHeader; body?: Buffer }> => [
    { header: { ...base, name: 'etc', type: 'dir', mode: 0o755 } },
    { header: { ...base, name: 'etc/motd', type: 'file', size: 3, uname: 'root', gname: 'root' }, body: Buffer.from('hi\n') },
    { header: { ...base, name: 'usr/bin/ping', type: 'file', mode: 0o4755, uid: 1000680000, gid: 0, xattrs: { 'security.capability': cap } } },
    { header: { ...base, name: 'lib', type: 'symlink', mode: 0o777, linkname: 'usr/' + 'x'.repeat(120) } },
    { header: { ...base, name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 } },
  ];

  it('writes the golden archive byte for byte', async () => {
    const buf = await archive(entries());
    if (process.env.GANTRY_UPDATE_GOLDEN) await writeFile(golden, buf);
    assert.deepEqual(buf, await readFile(golden));
    assert.equal(createHash('sha256').update(buf).digest('hex'), 'f4d09794b67e4a84738dbd122616bf58c984c0138ad3f68fe4f6bb85c2753bdb');
  });

  it('names every PAX header "PaxHeader" with mtime 0 and ends with two zero blocks', async () => {
    const buf = await archive(entries());
    for (let off = 0; off + 512 <= buf.length; off += 512) {
      if (buf[off + 156] === 0x78) {
        assert.equal(buf.toString('latin1', off, off + 9), 'PaxHeader');
        assert.equal(buf[off + 9], 0);
        assert.equal(buf.toString('latin1', off + 136, off + 148), '00000000000\0');
      }
    }
    assert.ok(buf.subarray(buf.length - 1024).every((b) => b === 0));
    assert.equal(buf.length % 512, 0);
  });

  it('writes ustar magic and version 00 in every header', async () => {
    const buf = await archive([{ header: { ...base, name: 'a', type: 'file' } }]);
    assert.equal(buf.toString('latin1', 257, 265), 'ustar\x0000');
  });
});

describe('TarWriter input checks', () => {
  const table: Array<{ name: string; header: TarHeader; body?: Buffer | Readable; code: string }> = [
    { name: 'body shorter than size', header: { ...base, name: 'f', type: 'file', size: 10 }, body: Buffer.from('abc'), code: 'SIZE_MISMATCH' },
    { name: 'stream body longer than size', header: { ...base, name: 'f', type: 'file', size: 2 }, body: Readable.from([Buffer.from('abc')]), code: 'SIZE_MISMATCH' },
    { name: 'stream body shorter than size', header: { ...base, name: 'f', type: 'file', size: 9 }, body: Readable.from([Buffer.from('abc')]), code: 'SIZE_MISMATCH' },
    { name: 'symlink without target', header: { ...base, name: 'l', type: 'symlink' }, code: 'INVALID_ARGUMENT' },
    { name: 'directory with a size', header: { ...base, name: 'd', type: 'dir', size: 3 }, code: 'INVALID_ARGUMENT' },
    { name: 'negative uid', header: { ...base, name: 'f', type: 'file', uid: -1 }, code: 'INVALID_ARGUMENT' },
    { name: 'empty name', header: { ...base, name: '', type: 'file' }, code: 'INVALID_ARGUMENT' },
    { name: 'xattr name with "="', header: { ...base, name: 'f', type: 'file', xattrs: { 'user.a=b': 'x' } }, code: 'INVALID_ARGUMENT' },
  ];
  for (const c of table) {
    it(`rejects ${c.name} naming the entry`, async () => {
      const w = new TarWriter();
      w.on('error', () => undefined);
      w.resume();
      await assert.rejects(w.add(c.header, c.body), (err: unknown) => {
        assert.ok(isGantryError(err), String(err));
        assert.equal(err.code, c.code);
        assert.match(err.message, new RegExp(`writing tar entry "${c.header.name}`));
        return true;
      });
      assert.ok(w.destroyed);
    });
  }

  it('puts sizes of 8 GiB and more in a PAX record that readers apply', async () => {
    const size = 2 ** 33 + 5;
    const block = encodeHeader({ ...base, name: 'huge.img', type: 'file', size });
    assert.match(block.toString('latin1', 512, 1024), /^\d+ size=8589934597\n/);
    // Header only: the reader yields the entry as soon as its header is parsed.
    for await (const e of readTar(Readable.from([block]))) {
      assert.equal(e.header.size, size);
      assert.equal(e.header.name, 'huge.img');
      break;
    }
    const list = await run('tar', ['-tvf', '-'], { input: Buffer.concat([block, Buffer.alloc(1024)]) });
    assert.match(list.stdout, /8589934597 .* huge\.img/);
  });

  it('splits long paths like USTAR readers expect', () => {
    assert.deepEqual(splitUstarPath(long150), { prefix: 'a'.repeat(49) + '/' + 'b'.repeat(50), name: 'c'.repeat(49) });
    assert.equal(splitUstarPath('x'.repeat(101)), undefined);
    assert.equal(splitUstarPath('short'), undefined);
    assert.equal(encodeHeader({ ...base, name: long150, type: 'file' }).length, 512);
  });
});

describe('TarWriter backpressure', () => {
  it('does not buffer a large body while nobody reads', async () => {
    const w = new TarWriter();
    const size = 16 * 1024 * 1024;
    const chunks = (function* () {
      for (let i = 0; i < 256; i++) yield Buffer.alloc(64 * 1024, i);
    })();
    let settled = false;
    const adding = w.add({ ...base, name: 'big', type: 'file', size }, Readable.from(chunks)).then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(settled, false);
    assert.ok(w.readableLength <= 1024 * 1024, `buffered ${w.readableLength}`);
    const done = collect(w);
    await adding;
    await w.finish();
    assert.equal((await done).length, 512 + size + 1024);
  });
});
