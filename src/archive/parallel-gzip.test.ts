import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { isGantryError } from '../util/errors.js';
import { ParallelGzip } from './parallel-gzip.js';

async function gz(input: Buffer, chunk: number, opts: ConstructorParameters<typeof ParallelGzip>[0]): Promise<Buffer> {
  const pieces = [];
  for (let i = 0; i < input.length; i += chunk) pieces.push(input.subarray(i, i + chunk));
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces), new ParallelGzip(opts), new Writable({ write: (c: Buffer, _e, cb) => { out.push(c); cb(); } }));
  return Buffer.concat(out);
}

const text = Buffer.from(Array.from({ length: 60000 }, (_, i) => `line ${i} of a config file\n`).join(''));
const input = Buffer.concat([text, randomBytes(300000), text.subarray(0, 123457)]);
const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('ParallelGzip', () => {
  it('writes one gzip member per member-size slice of the input, in order', async () => {
    const memberSize = 256 * 1024;
    const out = await gz(input, 65536, { memberSize, workers: 2 });
    const expected = [];
    for (let i = 0; i < input.length; i += memberSize) expected.push(zlib.gzipSync(input.subarray(i, i + memberSize), { level: 6 }));
    assert.ok(expected.length > 2);
    assert.deepEqual(out, Buffer.concat(expected));
    assert.deepEqual(zlib.gunzipSync(out), input);
  });

  const variants: Array<{ name: string; chunk: number; workers: number }> = [
    { name: 'no worker threads (single CPU), 64 KiB writes', chunk: 65536, workers: 0 },
    { name: '1 worker, 64 KiB writes', chunk: 65536, workers: 1 },
    { name: '2 workers, 1000-byte writes', chunk: 1000, workers: 2 },
    { name: '3 workers, one write', chunk: input.length, workers: 3 },
  ];
  it('is deterministic for a fixed member size whatever the chunking and worker count', async () => {
    const outs = [];
    for (const v of variants) outs.push(digest(await gz(input, v.chunk, { memberSize: 200000, workers: v.workers })));
    assert.equal(new Set(outs).size, 1, JSON.stringify(outs));
  });

  it('changes with the member size (so the size must stay fixed)', async () => {
    const a = await gz(input, 65536, { memberSize: 200000, workers: 2 });
    const b = await gz(input, 65536, { memberSize: 300000, workers: 2 });
    assert.notEqual(digest(a), digest(b));
    assert.deepEqual(zlib.gunzipSync(b), input);
  });

  const edges: Array<{ name: string; data: Buffer }> = [
    { name: 'empty input', data: Buffer.alloc(0) },
    { name: 'smaller than one member (no threads started)', data: Buffer.from('tiny') },
    { name: 'exactly two members', data: Buffer.alloc(2 * 4096, 7) },
  ];
  for (const e of edges) {
    it(`${e.name}: produces valid gzip`, async () => {
      const out = await gz(e.data, 1000, { memberSize: 4096, workers: 2 });
      assert.deepEqual(zlib.gunzipSync(out), e.data);
      assert.equal(out[0], 0x1f);
    });
  }

  it('a single member equals zlib.gzipSync output (same zlib, same bytes)', async () => {
    const out = await gz(text.subarray(0, 100000), 4096, { memberSize: 1024 * 1024, level: 6 });
    assert.deepEqual(out, zlib.gzipSync(text.subarray(0, 100000), { level: 6 }));
  });

  it('reuses member buffers without carrying bytes of an earlier stream into a short last member', async () => {
    const memberSize = 4096;
    await gz(randomBytes(5 * memberSize), 1000, { memberSize, workers: 2 });
    const data = Buffer.alloc(2 * memberSize + 100, 'a');
    const out = await gz(data, 1000, { memberSize, workers: 2 });
    const slices = [0, memberSize, 2 * memberSize].map((i) => zlib.gzipSync(data.subarray(i, i + memberSize), { level: 6 }));
    assert.deepEqual(out, Buffer.concat(slices));
  });

  it('rejects a member size below 1 KiB', () => {
    assert.throws(() => new ParallelGzip({ memberSize: 10 }), (err: unknown) => isGantryError(err, 'INVALID_ARGUMENT'));
  });

  it('stops its workers when destroyed mid-stream', async () => {
    const z = new ParallelGzip({ memberSize: 4096, workers: 2 });
    z.write(Buffer.alloc(50000, 1));
    await new Promise((r) => setTimeout(r, 20));
    z.destroy();
    await new Promise((r) => z.on('close', r));
    assert.ok(z.destroyed);
  });
});
