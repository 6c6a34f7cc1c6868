import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { GantryError } from '../../util/errors.js';
import { unpackLayerStream } from './unpack-layer-stream.js';

function tarOf(dir: string): Buffer {
  const r = spawnSync('tar', ['-C', dir, '--numeric-owner', '-cf', '-', '.'], { maxBuffer: 1 << 20 });
  assert.equal(r.status, 0, String(r.stderr));
  return r.stdout;
}

/** Delivers the blob in small pieces so the compression sniffing has to collect its first bytes. */
function trickle(buf: Buffer, size = 3): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
    })(),
  );
}

test('layer blobs unpack from a stream whatever their compression', async () => {
  const base = mkdtempSync(join(tmpdir(), 'gantry-unpack-stream-'));
  try {
    const src = join(base, 'src');
    mkdirSync(join(src, 'etc'), { recursive: true });
    spawnSync('sh', ['-c', `printf hello > ${src}/etc/greeting && ln -s etc/greeting ${src}/link`]);
    const tar = tarOf(src);
    const cases: Array<[string, Buffer]> = [
      ['plain tar', tar],
      ['gzip', gzipSync(tar)],
    ];
    for (const [what, blob] of cases) {
      const root = join(base, what.replace(/\W/g, '-'));
      mkdirSync(root);
      const stats = await unpackLayerStream(root, trickle(blob), { ownership: 'preserve' });
      assert.equal(readFileSync(join(root, 'link'), 'utf8'), 'hello', what);
      assert.deepEqual([stats.files, stats.symlinks, stats.bytes], [1, 1, 5], what);
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('a truncated compressed layer fails naming the layer', async () => {
  const base = mkdtempSync(join(tmpdir(), 'gantry-unpack-stream-'));
  try {
    mkdirSync(join(base, 'src'));
    spawnSync('sh', ['-c', `head -c 200000 /dev/urandom > ${base}/src/big`]);
    const blob = gzipSync(tarOf(join(base, 'src')));
    mkdirSync(join(base, 'root'));
    await assert.rejects(
      unpackLayerStream(join(base, 'root'), trickle(blob.subarray(0, blob.length / 2), 4096), { ownership: 'preserve', layerName: 'sha256:cut' }),
      (err: unknown) => err instanceof GantryError && err.code === 'ARCHIVE_INVALID' && err.message.startsWith('unpacking layer sha256:cut'),
    );
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
