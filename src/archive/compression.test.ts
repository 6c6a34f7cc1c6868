import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { isGantryError } from '../util/errors.js';
import { ChildCodec } from './child-codec.js';
import { compressStream, decompressAuto, decompressStream, detectCompression, zstdSupport, type Compression } from './compression.js';

async function through(input: Buffer, stream: NodeJS.ReadWriteStream, chunk = 7000): Promise<Buffer> {
  const parts: Buffer[] = [];
  const pieces = [];
  for (let i = 0; i < input.length; i += chunk) pieces.push(input.subarray(i, i + chunk));
  await pipeline(Readable.from(pieces), stream, new Writable({ write: (c: Buffer, _e, cb) => { parts.push(c); cb(); } }));
  return Buffer.concat(parts);
}

/** Compresses with a system program (the reference implementation for each format). */
async function systemCompress(cmd: string, data: Buffer): Promise<Buffer> {
  const { spawn } = await import('node:child_process');
  const child = spawn(cmd, ['-c'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const out: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stdin.end(data);
  await new Promise((r) => child.on('close', r));
  return Buffer.concat(out);
}

// Text-like and random content: compressible and incompressible paths of each codec.
const sample = Buffer.concat([Buffer.from('gantry layer '.repeat(20000)), randomBytes(200000)]);

describe('detectCompression', () => {
  const table: Array<[string, number[], Compression]> = [
    ['gzip', [0x1f, 0x8b, 0x08, 0, 0, 0], 'gzip'],
    ['zstd', [0x28, 0xb5, 0x2f, 0xfd, 0x04, 0], 'zstd'],
    ['bzip2', [0x42, 0x5a, 0x68, 0x39, 0x31, 0x41], 'bzip2'],
    ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz'],
    ['a tar header', [...Buffer.from('etc/pa')], 'none'],
    ['too few bytes of xz', [0xfd, 0x37, 0x7a], 'none'],
    ['empty input', [], 'none'],
  ];
  for (const [name, bytes, want] of table) {
    it(`detects ${name} as ${want}`, () => assert.equal(detectCompression(Uint8Array.from(bytes)), want));
  }
  it('agrees with what the codecs write', async () => {
    assert.equal(detectCompression(zlib.gzipSync(sample)), 'gzip');
    assert.equal(detectCompression(await systemCompress('bzip2', sample)), 'bzip2');
    assert.equal(detectCompression(await systemCompress('xz', sample)), 'xz');
    assert.equal(detectCompression(await systemCompress('zstd', sample)), 'zstd');
  });
});

describe('compression round trips', () => {
  const table: Array<{ name: string; kind: 'gzip' | 'none'; parallel?: boolean; level?: number }> = [
    { name: 'gzip single stream', kind: 'gzip', parallel: false },
    { name: 'gzip single stream level 1', kind: 'gzip', parallel: false, level: 1 },
    { name: 'gzip parallel members', kind: 'gzip', parallel: true },
    { name: 'none', kind: 'none' },
  ];
  for (const c of table) {
    it(`${c.name}: decompresses to the same bytes`, async () => {
      const packed = await through(sample, await compressStream(c.kind, { parallel: c.parallel, level: c.level }));
      assert.equal(detectCompression(packed), c.kind);
      assert.deepEqual(await through(packed, await decompressStream(c.kind)), sample);
      if (c.kind === 'gzip') assert.deepEqual(zlib.gunzipSync(packed), sample);
    });
  }

  for (const kind of ['bzip2', 'xz'] as const) {
    it(`${kind}: decompresses what the ${kind} program wrote`, async () => {
      const packed = await systemCompress(kind, sample);
      assert.deepEqual(await through(packed, await decompressStream(kind)), sample);
    });
    it(`${kind}: corrupt input fails with ARCHIVE_INVALID`, async () => {
      const packed = await systemCompress(kind, sample);
      const broken = Buffer.concat([packed.subarray(0, 100), Buffer.alloc(500, 0x55)]);
      await assert.rejects(through(broken, await decompressStream(kind)), (err: unknown) => {
        assert.ok(isGantryError(err, 'ARCHIVE_INVALID'), String(err));
        assert.match(err.message, new RegExp(`${kind} decompression failed`));
        return true;
      });
    });
  }

  it('zstd: round trip when available, otherwise UNSUPPORTED naming both options', async () => {
    const support = await zstdSupport();
    if (support) {
      const packed = await through(sample, await compressStream('zstd', { level: 3 }));
      assert.equal(detectCompression(packed), 'zstd');
      assert.deepEqual(await through(packed, await decompressStream('zstd')), sample);
      const fromCli = await systemCompress('zstd', sample);
      assert.deepEqual(await through(fromCli, await decompressStream('zstd')), sample);
    } else {
      await assert.rejects(compressStream('zstd'), (err: unknown) => {
        assert.ok(isGantryError(err, 'UNSUPPORTED'));
        assert.equal(err.message, 'zstd compression needs Node >= 22.15 or the optional package zstd-napi (npm install zstd-napi)');
        return true;
      });
      await assert.rejects(decompressStream('zstd'), (err: unknown) => isGantryError(err, 'UNSUPPORTED') && /zstd-napi/.test(err.message));
    }
  });

  it('a truncated gzip fails clearly', async () => {
    const packed = zlib.gzipSync(sample);
    await assert.rejects(through(packed.subarray(0, packed.length - 100), await decompressStream('gzip')), (err: unknown) => {
      assert.ok(isGantryError(err, 'ARCHIVE_INVALID'), String(err));
      assert.equal(err.message, 'gzip decompression: the compressed data is truncated (unexpected end of file)');
      return true;
    });
  });

  it('corrupt gzip data fails with ARCHIVE_INVALID', async () => {
    const packed = Buffer.from(zlib.gzipSync(sample));
    packed.fill(0xaa, 20, 60);
    await assert.rejects(through(packed, await decompressStream('gzip')), (err: unknown) => isGantryError(err, 'ARCHIVE_INVALID') && /corrupt/.test(err.message));
  });

  it('GNU gzip accepts parallel output', async () => {
    const packed = await through(sample, await compressStream('gzip', { parallel: true }));
    assert.deepEqual(execFileSync('gzip', ['-dc'], { input: packed, maxBuffer: 64 << 20 }), sample);
  });

  it('rejects out-of-range levels', async () => {
    await assert.rejects(compressStream('gzip', { level: 0 }), (err: unknown) => isGantryError(err, 'INVALID_ARGUMENT'));
    await assert.rejects(compressStream('gzip', { level: 10 }), (err: unknown) => isGantryError(err, 'INVALID_ARGUMENT'));
  });
});

describe('decompressAuto', () => {
  const table: Array<{ name: string; make: () => Promise<Buffer> | Buffer; want: Compression; chunk: number }> = [
    { name: 'gzip in 3-byte pieces', make: () => zlib.gzipSync(sample), want: 'gzip', chunk: 3 },
    { name: 'xz', make: () => systemCompress('xz', sample), want: 'xz', chunk: 65536 },
    { name: 'plain data', make: () => sample, want: 'none', chunk: 65536 },
    { name: 'input shorter than the magic', make: () => Buffer.from('ab'), want: 'none', chunk: 1 },
    { name: 'empty input', make: () => Buffer.alloc(0), want: 'none', chunk: 1 },
  ];
  for (const c of table) {
    it(`recognises and decompresses ${c.name}`, async () => {
      const data = await c.make();
      const pieces = [];
      for (let i = 0; i < data.length; i += c.chunk) pieces.push(data.subarray(i, i + c.chunk));
      const { compression, output } = await decompressAuto(Readable.from(pieces));
      assert.equal(compression, c.want);
      const out: Buffer[] = [];
      for await (const b of output) out.push(b as Buffer);
      const plain = c.want === 'none' ? data : sample;
      assert.deepEqual(Buffer.concat(out), plain);
    });
  }

  it('reports a truncated stream on the output', async () => {
    const packed = zlib.gzipSync(sample);
    const { output } = await decompressAuto(Readable.from([packed.subarray(0, 5000)]));
    await assert.rejects((async () => { for await (const _ of output) void _; })(), (err: unknown) => isGantryError(err, 'ARCHIVE_INVALID'));
  });
});

describe('external codec programs', () => {
  it('a missing program is UNSUPPORTED with an install hint', async () => {
    const codec = new ChildCodec({ command: 'gantry-no-such-program', args: [], what: 'lzip decompression', installHint: 'install lzip' });
    await assert.rejects(through(Buffer.from('x'), codec), (err: unknown) => {
      assert.ok(isGantryError(err, 'UNSUPPORTED'), String(err));
      assert.match(err.message, /lzip decompression needs the "gantry-no-such-program" program/);
      assert.equal(err.hint, 'install lzip');
      return true;
    });
  });
});
