import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { access, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { tempDir } from '../testing/tmp.js';
import { isGantryError } from '../util/errors.js';
import { digestLayerFile, writeLayer, type LayerEntry } from './layer.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const base = { mode: 0o644, uid: 0, gid: 0, mtime: 1700000000 } as const;

function entries(): LayerEntry[] {
  const big = randomBytes(1500000);
  return [
    { header: { ...base, name: 'app', type: 'dir', mode: 0o755 } },
    { header: { ...base, name: 'app/big.bin', type: 'file', size: big.length }, body: Readable.from([big.subarray(0, 700000), big.subarray(700000)]) },
    { header: { ...base, name: 'app/conf', type: 'file', size: 6 }, body: Buffer.from('a=1\nb\n') },
    { header: { ...base, name: 'app/.wh.old', type: 'file' } },
  ];
}

async function* slowly(list: LayerEntry[]): AsyncGenerator<LayerEntry> {
  for (const e of list) {
    await new Promise((r) => setImmediate(r));
    yield e;
  }
}

describe('writeLayer', () => {
  const table: Array<{ name: string; compression: 'gzip' | 'none'; parallel?: boolean; mediaType: string }> = [
    { name: 'gzip single stream', compression: 'gzip', parallel: false, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' },
    { name: 'gzip parallel', compression: 'gzip', parallel: true, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' },
    { name: 'uncompressed', compression: 'none', mediaType: 'application/vnd.oci.image.layer.v1.tar' },
  ];
  for (const c of table) {
    it(`${c.name}: diffID is the sha256 of the tar, digest and size those of the file`, async (t) => {
      const dir = await tempDir('layer');
      t.after(() => dir.cleanup());
      const file = join(dir.path, 'layer');
      const res = await writeLayer(slowly(entries()), file, { compression: c.compression, parallel: c.parallel });
      const written = await readFile(file);
      const tar = c.compression === 'gzip' ? zlib.gunzipSync(written) : written;
      assert.equal(res.digest, sha(written));
      assert.equal(res.size, written.length);
      assert.equal(res.diffId, sha(tar));
      assert.equal(res.uncompressedSize, tar.length);
      assert.equal(res.mediaType, c.mediaType);
      assert.deepEqual(await digestLayerFile(file), {
        diffId: res.diffId,
        digest: res.digest,
        size: res.size,
        uncompressedSize: res.uncompressedSize,
        compression: c.compression,
      });
    });
  }

  it('gives the same diffID in every mode and the same digest on every run', async () => {
    const fixed = (): LayerEntry[] => [{ header: { ...base, name: 'f', type: 'file', size: 3 }, body: Buffer.from('abc') }];
    const sink = async (s: Readable) => {
      for await (const _ of s) void _;
    };
    const a = await writeLayer(fixed(), sink, { compression: 'gzip', parallel: true });
    const b = await writeLayer(fixed(), sink, { compression: 'gzip', parallel: true });
    const c = await writeLayer(fixed(), sink, { compression: 'none' });
    assert.equal(a.digest, b.digest);
    assert.equal(a.diffId, c.diffId);
  });

  it('streams into a sink function', async () => {
    const chunks: Buffer[] = [];
    const res = await writeLayer(entries(), async (s) => {
      for await (const c of s) chunks.push(c as Buffer);
    }, { compression: 'gzip' });
    const got = Buffer.concat(chunks);
    assert.equal(res.digest, sha(got));
    assert.equal(res.diffId, sha(zlib.gunzipSync(got)));
  });

  it('a failing entry body rejects, names the entry and removes the partial file', async (t) => {
    const dir = await tempDir('layer-fail');
    t.after(() => dir.cleanup());
    const file = join(dir.path, 'layer');
    const broken = new Readable({ read() { this.push(Buffer.alloc(1000)); this.destroy(new Error('EIO: disk read failed')); } });
    await assert.rejects(
      writeLayer([{ header: { ...base, name: 'app/data', type: 'file', size: 5000 }, body: broken }], file, { compression: 'gzip' }),
      (err: unknown) => {
        assert.ok(isGantryError(err), String(err));
        assert.match(err.message, /^writing layer: writing tar entry "app\/data": EIO: disk read failed/);
        return true;
      },
    );
    await assert.rejects(access(file), /ENOENT/);
  });

  it('a failing sink rejects with its error and stops the producer', async () => {
    let produced = 0;
    async function* many(): AsyncGenerator<LayerEntry> {
      for (let i = 0; i < 1000; i++) {
        produced++;
        yield { header: { ...base, name: `f${i}`, type: 'file', size: 100000 }, body: randomBytes(100000) };
      }
    }
    await assert.rejects(
      writeLayer(many(), async (s) => {
        for await (const _ of s) throw new Error('upload refused: 413');
      }, { compression: 'gzip', parallel: false }),
      /upload refused: 413/,
    );
    assert.ok(produced < 1000, `producer ran to ${produced}`);
  });
});

describe('writeLayer sink contract', () => {
  it('a sink that returns without reading everything fails instead of hanging', async () => {
    await assert.rejects(
      writeLayer(entries(), async () => undefined, { compression: 'gzip' }),
      (err: unknown) => isGantryError(err, 'INTERNAL') && /returned before reading the whole layer/.test(err.message),
    );
  });
});

describe('digestLayerFile', () => {
  it('a truncated gzip layer fails clearly', async (t) => {
    const dir = await tempDir('layer-trunc');
    t.after(() => dir.cleanup());
    const file = join(dir.path, 'layer.tgz');
    const good = zlib.gzipSync(randomBytes(100000));
    await writeFile(file, good.subarray(0, good.length - 50));
    await assert.rejects(digestLayerFile(file), (err: unknown) => {
      assert.ok(isGantryError(err, 'ARCHIVE_INVALID'), String(err));
      assert.match(err.message, /^digesting layer file .*layer\.tgz: gzip decompression: the compressed data is truncated/);
      return true;
    });
  });

  it('a missing file is an IO error naming the path', async () => {
    await assert.rejects(digestLayerFile('/nonexistent/layer'), (err: unknown) => isGantryError(err, 'IO') && /\/nonexistent\/layer/.test(err.message));
  });
});
