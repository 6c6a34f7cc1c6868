import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, readlink, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { isGantryError } from '../util/errors.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { openContext } from './open.js';

interface Entry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  body?: string;
  linkname?: string;
  mode?: number;
}

/** Raw tar bytes with exactly the names given (no normalisation), so hostile archives can be made. */
async function makeTar(entries: Entry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((resolve) => pack.on('end', () => resolve()));
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header: tarStream.Header = {
      name: e.name,
      type,
      size: type === 'file' ? Buffer.byteLength(e.body ?? '') : 0,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      mtime: new Date(1_700_000_000_000),
    } as tarStream.Header;
    if (e.linkname !== undefined) header.linkname = e.linkname;
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      pack.entry(header, type === 'file' ? (e.body ?? '') : '', cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

let tmp: TempDir;
let work: string;
const cleanups: Array<() => Promise<void>> = [];

before(async () => {
  tmp = await tempDir('context-open');
  work = join(tmp.path, 'work');
  const src = join(tmp.path, 'src');
  await mkdir(join(src, 'app', 'nested'), { recursive: true });
  await writeFile(join(src, 'Dockerfile'), 'FROM scratch\n');
  await writeFile(join(src, 'app', 'nested', 'x.txt'), 'x\n');
  await symlink('/etc', join(src, 'out'));
  await symlink('app/nested', join(src, 'in'));
});

after(async () => {
  for (const c of cleanups) await c();
  await tmp.cleanup();
});

const goodTar: Entry[] = [
  { name: './', type: 'directory' },
  { name: './Dockerfile', body: 'FROM scratch\nCOPY . /\n' },
  { name: './bin/', type: 'directory', mode: 0o750 },
  { name: './bin/run.sh', body: '#!/bin/sh\n', mode: 0o755 },
  { name: './bin/link', type: 'symlink', linkname: 'run.sh' },
  { name: './bin/hard', type: 'link', linkname: 'bin/run.sh' },
  { name: 'deep/er/file.txt', body: 'implied parents\n' },
  { name: './Dockerfile', body: 'FROM scratch\n# replaced by a later entry\n' },
];

async function checkGoodTree(dir: string): Promise<void> {
  assert.equal(await readFile(join(dir, 'Dockerfile'), 'utf8'), 'FROM scratch\n# replaced by a later entry\n');
  assert.equal((await stat(join(dir, 'bin', 'run.sh'))).mode & 0o777, 0o755);
  assert.equal((await stat(join(dir, 'bin'))).mode & 0o777, 0o750);
  assert.equal(await readlink(join(dir, 'bin', 'link')), 'run.sh');
  assert.equal((await stat(join(dir, 'bin', 'hard'))).ino, (await stat(join(dir, 'bin', 'run.sh'))).ino);
  assert.equal(await readFile(join(dir, 'deep', 'er', 'file.txt'), 'utf8'), 'implied parents\n');
  assert.equal((await stat(join(dir, 'bin', 'run.sh'))).mtimeMs, 1_700_000_000_000);
}

test('open: a plain directory is used in place and cleanup leaves it alone', async () => {
  const src = join(tmp.path, 'src');
  const ctx = await openContext(src);
  assert.equal(ctx.dir, src);
  assert.equal(ctx.source, src);
  await ctx.cleanup();
  assert.ok(existsSync(join(src, 'Dockerfile')));
});

test('open: dir:// is the same as a plain path', async () => {
  const ctx = await openContext(`dir://${join(tmp.path, 'src')}`);
  assert.equal(ctx.dir, join(tmp.path, 'src'));
});

const missing: Array<{ name: string; location: () => string; mentions: string }> = [
  { name: 'missing directory', location: () => join(tmp.path, 'nope'), mentions: 'does not exist' },
  { name: 'missing dir://', location: () => `dir://${join(tmp.path, 'nope')}`, mentions: 'does not exist' },
  { name: 'a file given as a directory', location: () => join(tmp.path, 'src', 'Dockerfile'), mentions: 'is not a directory' },
  { name: 'missing tarball', location: () => `tar://${join(tmp.path, 'nope.tar')}`, mentions: 'does not exist' },
];

for (const m of missing) {
  test(`open: ${m.name} is CONTEXT_INVALID`, async () => {
    await assert.rejects(openContext(m.location()), (err: unknown) => isGantryError(err, 'CONTEXT_INVALID') && err.message.includes(m.mentions) && err.message.includes('nope') === m.location().includes('nope'));
  });
}

const subPaths: Array<{ name: string; sub: string; want?: string; code?: string }> = [
  { name: 'nested directory', sub: 'app/nested', want: 'app/nested' },
  { name: 'leading slash is relative to the context', sub: '/app', want: 'app' },
  { name: 'symlink inside the context', sub: 'in', want: 'app/nested' },
  { name: '.. escape', sub: '../work', code: 'UNSAFE_PATH' },
  { name: 'symlink out of the context', sub: 'out', code: 'UNSAFE_PATH' },
  { name: 'missing sub-path', sub: 'nope', code: 'CONTEXT_INVALID' },
  { name: 'file as sub-path', sub: 'Dockerfile', code: 'CONTEXT_INVALID' },
];

for (const s of subPaths) {
  test(`open: subPath ${s.name}`, async () => {
    const src = join(tmp.path, 'src');
    if (s.want) {
      const ctx = await openContext(src, { subPath: s.sub });
      assert.equal(ctx.dir, join(src, s.want));
    } else {
      await assert.rejects(openContext(src, { subPath: s.sub }), (err: unknown) => isGantryError(err, s.code as never) && err.message.includes(s.sub));
    }
  });
}

for (const variant of ['tar', 'tar.gz'] as const) {
  test(`open: tar://file.${variant} is extracted into the work dir and removed by cleanup`, async () => {
    const raw = await makeTar(goodTar);
    const file = join(tmp.path, `ctx.${variant}`);
    await writeFile(file, variant === 'tar.gz' ? gzipSync(raw) : raw);
    const ctx = await openContext(`tar://${file}`, { workDir: work });
    cleanups.push(ctx.cleanup);
    assert.ok(ctx.dir.startsWith(work), `${ctx.dir} under ${work}`);
    assert.equal(ctx.source, `tar://${file}`);
    await checkGoodTree(ctx.dir);
    await ctx.cleanup();
    assert.equal(existsSync(ctx.dir), false);
  });
}

test('open: tar://stdin reads a gzipped tar from the given stream, with subPath', async () => {
  const gz = gzipSync(await makeTar(goodTar));
  // Small chunks: compression detection must not lose or reorder the first bytes.
  const chunks = [gz.subarray(0, 3), gz.subarray(3, 10), gz.subarray(10)];
  const ctx = await openContext('tar://stdin', { stdin: Readable.from(chunks), workDir: work, subPath: 'bin' });
  cleanups.push(ctx.cleanup);
  assert.equal(ctx.source, 'tar://stdin');
  assert.equal(await readlink(join(ctx.dir, 'link')), 'run.sh');
  await ctx.cleanup();
});

test('open: an empty stdin is an archive error, and the temp dir is removed', async () => {
  await assert.rejects(openContext('-', { stdin: Readable.from([]), workDir: join(tmp.path, 'empty-work') }), (err: unknown) => isGantryError(err));
  assert.deepEqual(await readdir(join(tmp.path, 'empty-work')), []);
});

const hostile: Array<{ name: string; entries: Entry[]; entry: string; code: string }> = [
  { name: 'parent escape', entries: [{ name: '../x', body: 'evil' }], entry: '../x', code: 'UNSAFE_PATH' },
  { name: 'escape in the middle', entries: [{ name: 'a/../../x', body: 'evil' }], entry: 'a/../../x', code: 'UNSAFE_PATH' },
  { name: 'absolute name', entries: [{ name: '/etc/evil', body: 'evil' }], entry: '/etc/evil', code: 'UNSAFE_PATH' },
  {
    name: 'write through a symlink',
    entries: [
      { name: 'link', type: 'symlink', linkname: '/tmp' },
      { name: 'link/evil', body: 'evil' },
    ],
    entry: 'link/evil',
    code: 'UNSAFE_PATH',
  },
  { name: 'hard link out of the root', entries: [{ name: 'h', type: 'link', linkname: '../../etc/passwd' }], entry: 'h', code: 'UNSAFE_PATH' },
  {
    name: 'hard link through a symlink',
    entries: [
      { name: 'l', type: 'symlink', linkname: '/etc' },
      { name: 'h', type: 'link', linkname: 'l/passwd' },
    ],
    entry: 'h',
    code: 'UNSAFE_PATH',
  },
];

for (const h of hostile) {
  test(`open: hostile tar context rejected (${h.name}) naming the entry`, async () => {
    const file = join(tmp.path, `hostile-${h.name.replace(/\W+/g, '-')}.tar.gz`);
    await writeFile(file, gzipSync(await makeTar(h.entries)));
    const hostileWork = join(tmp.path, `hw-${h.name.replace(/\W+/g, '-')}`);
    await assert.rejects(openContext(`tar://${file}`, { workDir: hostileWork }), (err: unknown) => {
      assert.ok(isGantryError(err), String(err));
      assert.equal(err.code, h.code, err.message);
      assert.ok(err.message.includes(`"${h.entry}"`), err.message);
      return true;
    });
    assert.deepEqual(await readdir(hostileWork), [], 'the temp dir is removed on failure');
    assert.equal(existsSync(join(tmp.path, 'x')), false);
    // Nothing was written next to the work dir or through the symlink.
    await assert.rejects(lstat('/tmp/evil'));
  });
}

test('open: an http URL that is not a git repository is a remote tarball (Kaniko), 404 is NOT_FOUND', async () => {
  const gz = gzipSync(await makeTar(goodTar));
  const server = createServer((req, res) => {
    if (req.url === '/ctx.tar.gz') {
      res.writeHead(200, { 'content-type': 'application/gzip' });
      res.end(gz);
    } else if (req.url === '/moved') {
      res.writeHead(302, { location: '/ctx.tar.gz' });
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    for (const path of ['/ctx.tar.gz', '/moved']) {
      const ctx = await openContext(`${base}${path}`, { workDir: work });
      cleanups.push(ctx.cleanup);
      await checkGoodTree(ctx.dir);
      await ctx.cleanup();
    }
    await assert.rejects(openContext(`${base}/nope.tar.gz`, { workDir: work }), (err: unknown) => isGantryError(err, 'NOT_FOUND') && err.message.includes('404'));
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
