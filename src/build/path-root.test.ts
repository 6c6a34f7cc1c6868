import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { indexLayerBlob } from './path-root.js';
import type { ImageLayer } from './layers.js';

async function tarBytes(): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name: 'etc/', type: 'directory', mode: 0o755 });
  pack.entry({ name: 'etc/passwd', mode: 0o644 }, 'root:x:0:0::/root:/bin/sh\n');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function layer(plain: Buffer, diffId: string): ImageLayer {
  const blob = gzipSync(plain);
  return {
    descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${createHash('sha256').update(blob).digest('hex')}`, size: blob.length },
    diffId,
    open: async () => Readable.from([blob]),
  };
}

describe('indexing a layer from its blob', () => {
  it('gives the entries, with the kept content, when the tar is the diffID the config names', async () => {
    const plain = await tarBytes();
    const index = await indexLayerBlob(layer(plain, `sha256:${createHash('sha256').update(plain).digest('hex')}`));
    assert.deepEqual(index.entries.map((e) => [e.name, e.type]), [['etc/', 'dir'], ['etc/passwd', 'file']]);
    assert.equal(index.entries[1]!.content?.toString(), 'root:x:0:0::/root:/bin/sh\n');
  });

  it('refuses a tar that is not the diffID the config claims (its index would be filed under another layer)', async () => {
    const plain = await tarBytes();
    await assert.rejects(indexLayerBlob(layer(plain, `sha256:${'0'.repeat(64)}`)), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'DIGEST_MISMATCH');
      assert.match(err.message, /not sha256:0{64}/);
      return true;
    });
  });
});
