import assert from 'node:assert/strict';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { run } from '../testing/exec.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { isGantryError } from '../util/errors.js';
import { encodePaxRecords } from './pax.js';
import { encodeHeader, type TarHeader } from './tar-header.js';
import { readTar, type ReadTarHeader } from './tar-reader.js';

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function readAll(input: Buffer | Readable): Promise<Array<{ header: ReadTarHeader; body: Buffer }>> {
  const out = [];
  const src = Buffer.isBuffer(input) ? Readable.from([input]) : input;
  for await (const e of readTar(src)) out.push({ header: e.header, body: await collect(e.body) });
  return out;
}

/** Builds a raw archive from header blocks and bodies without TarWriter's checks. */
function raw(parts: Array<{ header: TarHeader; body?: Buffer }>, end = true): Buffer {
  const out: Buffer[] = [];
  for (const p of parts) {
    out.push(encodeHeader(p.header));
    if (p.body) out.push(p.body, Buffer.alloc((512 - (p.body.length % 512)) % 512));
  }
  if (end) out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

const base = { mode: 0o644, uid: 0, gid: 0, mtime: 1700000000 } as const;
const cap = Buffer.from('0100000200200000000000000000000000000080', 'hex');

describe('readTar on archives made by GNU tar and Python', () => {
  let dir: TempDir;
  const deep = 'd'.repeat(60) + '/' + 'e'.repeat(62); // 123-char directory
  const target = '/' + 't'.repeat(149); // 150-char symlink target
  const archives = new Map<string, Buffer>();

  before(async () => {
    dir = await tempDir('tar-reader');
    const src = join(dir.path, 'src');
    await mkdir(join(src, deep), { recursive: true });
    await writeFile(join(src, 'owned'), 'data');
    await symlink(target, join(src, 'link'));
    for (const format of ['pax', 'gnu']) {
      const f = join(dir.path, `${format}.tar`);
      await run('tar', [`--format=${format}`, '--owner=0', '--group=0', '--numeric-owner', '-C', src, '-cf', f, 'owned', 'link', deep], { check: true });
      archives.set(format, await readFile(f));
      const g = join(dir.path, `${format}-ids.tar`);
      // tar's NAME:ID owner override: no chown (and no root) needed for a large uid.
      await run('tar', [`--format=${format}`, '--owner=u:1000680000', '--group=g:1000680001', '-C', src, '-cf', g, 'owned'], { check: true });
      archives.set(`${format}-ids`, await readFile(g));
    }
    // Python writes PAX xattr records (setfattr is not installed here), including binary ones.
    const py = join(dir.path, 'py.tar');
    const script = [
      'import tarfile, io, sys',
      'cap = bytes.fromhex(sys.argv[2]).decode("utf-8", "surrogateescape")',
      'with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:',
      '  i = tarfile.TarInfo("usr/bin/ping"); i.size = 4; i.mode = 0o4755; i.uid = 3000000; i.mtime = 1700000000.5',
      '  i.pax_headers = {"SCHILY.xattr.security.capability": cap, "SCHILY.xattr.user.note": "a\\nb"}',
      '  t.addfile(i, io.BytesIO(b"ping"))',
    ].join('\n');
    await run('python3', ['-c', script, py, cap.toString('hex')], { check: true });
    archives.set('python', await readFile(py));
  });
  after(() => dir?.cleanup());

  for (const format of ['pax', 'gnu']) {
    it(`${format} format: long directory name and long symlink target`, async () => {
      const entries = await readAll(archives.get(format)!);
      const byName = new Map(entries.map((e) => [e.header.name, e.header]));
      assert.equal(byName.get('owned')?.size, 4);
      assert.deepEqual(entries.find((e) => e.header.name === 'owned')?.body, Buffer.from('data'));
      assert.equal(byName.get('link')?.type, 'symlink');
      assert.equal(byName.get('link')?.linkname, target);
      assert.equal(byName.get(deep + '/')?.type, 'dir');
    });
    it(`${format} format: uid/gid above 2097151 (${format === 'pax' ? 'PAX records' : 'base-256'})`, async () => {
      const [e] = await readAll(archives.get(`${format}-ids`)!);
      assert.equal(e!.header.uid, 1000680000);
      assert.equal(e!.header.gid, 1000680001);
    });
  }

  it('Python PAX archive: binary xattrs, fractional mtime, uid record', async () => {
    const [e] = await readAll(archives.get('python')!);
    const h = e!.header;
    assert.deepEqual(h.xattrs['security.capability'], cap);
    assert.deepEqual(h.xattrs['user.note'], Buffer.from('a\nb'));
    assert.equal(h.uid, 3000000);
    assert.equal(h.mtime, 1700000000.5);
    assert.equal(h.mode, 0o4755);
    assert.deepEqual(e!.body, Buffer.from('ping'));
  });
});

describe('readTar normalisation', () => {
  it('applies PAX uid, gid, mtime, uname, gname that tar-stream leaves aside', async () => {
    const [e] = await readAll(raw([{ header: { ...base, name: 'f', type: 'file', uid: 5000000, gid: 6000000, uname: 'ü'.repeat(20), gname: 'g', mtime: -5 } }]));
    assert.equal(e!.header.uid, 5000000);
    assert.equal(e!.header.gid, 6000000);
    assert.equal(e!.header.mtime, -5);
    assert.equal(e!.header.uname, 'ü'.repeat(20));
  });

  it('applies a global PAX header to following entries and local records over it', async () => {
    const global = encodePaxRecords([['uid', Buffer.from('4000000')], ['SCHILY.xattr.user.g', Buffer.from('1')]]);
    const gHeader = Buffer.alloc(512);
    gHeader.write('GlobalHead', 0);
    gHeader.write('0000644\0', 100);
    gHeader.write(global.length.toString(8).padStart(11, '0') + '\0', 124);
    gHeader[156] = 0x67; // 'g'
    gHeader.write('ustar\x0000', 257, 'latin1');
    gHeader.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of gHeader) sum += b;
    gHeader.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    const body = Buffer.concat([global, Buffer.alloc(512 - global.length)]);
    const entries = raw([{ header: { ...base, name: 'a', type: 'file' } }, { header: { ...base, name: 'b', type: 'file', uid: 7000000 } }]);
    const all = await readAll(Buffer.concat([gHeader, body, entries]));
    assert.deepEqual(all.map((e) => [e.header.name, e.header.uid, e.header.xattrs['user.g']?.toString()]), [
      ['a', 4000000, '1'],
      ['b', 7000000, '1'],
    ]);
  });

  it('maps types and keeps raw unsafe names for the fs layer to judge', async () => {
    const all = await readAll(raw([
      { header: { ...base, name: '../../etc/passwd', type: 'file' } },
      { header: { ...base, name: '/abs', type: 'hardlink', linkname: '/etc/shadow' } },
    ]));
    assert.deepEqual(all.map((e) => [e.header.name, e.header.type, e.header.linkname]), [
      ['../../etc/passwd', 'file', undefined],
      ['/abs', 'hardlink', '/etc/shadow'],
    ]);
  });

  it('skips bodies the consumer does not read, and partially read ones', async () => {
    const buf = raw([
      { header: { ...base, name: 'a', type: 'file', size: 100000 }, body: Buffer.alloc(100000, 1) },
      { header: { ...base, name: 'b', type: 'file', size: 70000 }, body: Buffer.alloc(70000, 2) },
      { header: { ...base, name: 'c', type: 'file', size: 3 }, body: Buffer.from('ccc') },
    ]);
    const names: string[] = [];
    let last: Buffer = Buffer.alloc(0);
    for await (const e of readTar(Readable.from([buf]))) {
      names.push(e.header.name);
      if (e.header.name === 'b') {
        for await (const chunk of e.body) {
          assert.equal((chunk as Buffer)[0], 2);
          break;
        }
      }
      if (e.header.name === 'c') last = await collect(e.body);
    }
    assert.deepEqual(names, ['a', 'b', 'c']);
    assert.deepEqual(last, Buffer.from('ccc'));
  });
});

describe('readTar on hostile input', () => {
  const good = raw([
    { header: { ...base, name: 'etc/passwd', type: 'file', size: 2000 }, body: Buffer.alloc(2000, 0x61) },
    { header: { ...base, name: 'etc/group', type: 'file', size: 10 }, body: Buffer.alloc(10, 0x62) },
  ]);
  const badPaxSize = (() => {
    const rec = encodePaxRecords([['size', Buffer.from('99999999999999999999999')]]);
    const hdr = Buffer.from(encodeHeader({ ...base, name: 'x'.repeat(200), type: 'file' }));
    // Splice a size record into the PAX data of a header that already has one (the long path).
    const paxLen = parseInt(hdr.toString('latin1', 124, 135), 8);
    const data = Buffer.concat([hdr.subarray(512, 512 + paxLen), rec]);
    const head = Buffer.from(hdr.subarray(0, 512));
    head.write(data.length.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
    head.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of head) sum += b;
    head.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    return Buffer.concat([head, data, Buffer.alloc(1024 - data.length), hdr.subarray(hdr.length - 512), Buffer.alloc(1024)]);
  })();
  const absurdBase256 = (() => {
    const h = Buffer.from(encodeHeader({ ...base, name: 'huge', type: 'file' }));
    h[124] = 0x80;
    h.fill(0xff, 125, 136); // 2^88 - 1 bytes
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    return Buffer.concat([h, Buffer.alloc(4096)]);
  })();
  const table: Array<{ name: string; input: Buffer; code: string; message: RegExp; readBodies: boolean }> = [
    { name: 'absurd base-256 size', input: absurdBase256, code: 'ARCHIVE_INVALID', message: /reading tar entry "huge": size .* is out of range/, readBodies: true },
    { name: 'archive cut inside a body (body read)', input: good.subarray(0, 1200), code: 'ARCHIVE_INVALID', message: /reading tar entry "etc\/passwd": archive is truncated/, readBodies: true },
    { name: 'archive cut inside a body (body skipped)', input: good.subarray(0, 1200), code: 'ARCHIVE_INVALID', message: /reading tar entry "etc\/passwd": archive is truncated/, readBodies: false },
    { name: 'archive cut inside a header', input: good.subarray(0, 512 + 2048 + 100), code: 'ARCHIVE_INVALID', message: /after "etc\/passwd": archive is truncated/, readBodies: true },
    { name: 'not a tar stream', input: Buffer.from('this is not a tar archive\n'.repeat(40)), code: 'ARCHIVE_INVALID', message: /at the start of the archive: not a tar archive/, readBodies: true },
    { name: 'gzip data fed as tar', input: Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(1020, 7)]), code: 'ARCHIVE_INVALID', message: /not a tar archive/, readBodies: true },
    { name: 'absurd PAX size', input: badPaxSize, code: 'ARCHIVE_INVALID', message: /reading tar entry "x{200}": PAX size .* is not a valid number/, readBodies: true },
    { name: 'malformed PAX record', input: Buffer.concat([(() => { const h = Buffer.from(encodeHeader({ ...base, name: 'é', type: 'file' })); h.write('99', 512, 'latin1'); return h; })(), Buffer.alloc(1024)]), code: 'ARCHIVE_INVALID', message: /malformed PAX record/, readBodies: true },
  ];
  for (const c of table) {
    it(`fails on ${c.name} with ${c.code} naming the entry`, async () => {
      await assert.rejects(
        (async () => {
          for await (const e of readTar(Readable.from([c.input]))) if (c.readBodies) await collect(e.body);
        })(),
        (err: unknown) => {
          assert.ok(isGantryError(err), String(err));
          assert.equal(err.code, c.code);
          assert.match(err.message, c.message);
          return true;
        },
      );
    });
  }

  it('reports an unsupported entry type (GNU sparse) as UNSUPPORTED', async () => {
    const h = Buffer.from(encodeHeader({ ...base, name: 'sparse', type: 'file' }));
    h[156] = 0x53; // 'S'
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    await assert.rejects(readAll(Buffer.concat([h, Buffer.alloc(1024)])), (err: unknown) => isGantryError(err, 'UNSUPPORTED') && /"sparse"/.test(err.message));
  });

  it('passes through errors of the input stream', async () => {
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    const input = new Readable({ read() { this.destroy(reset); } });
    await assert.rejects(readAll(input), (err: unknown) => {
      assert.ok(isGantryError(err, 'IO'), String(err));
      assert.equal(err.message, 'reading tar entry at the start of the archive: read ECONNRESET');
      return true;
    });
  });
});
