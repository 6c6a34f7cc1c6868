import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../testing/tmp.js';
import { isGantryError } from '../util/errors.js';
import { copyImage } from './copy.js';
import { MemoryStore } from './memory.js';
import { randomImage } from './random.js';
import { openLocalReader, openLocalWriter, parseLocalReference } from './transports.js';

test('local references split at the first colon after the transport', () => {
  const table: Array<[string, ReturnType<typeof parseLocalReference>]> = [
    ['oci:out', { transport: 'oci', path: 'out' }],
    ['oci:/tmp/x:latest', { transport: 'oci', path: '/tmp/x', ref: 'latest' }],
    ['docker-archive:img.tar', { transport: 'docker-archive', path: 'img.tar' }],
    ['docker-archive:img.tar:app:1.0', { transport: 'docker-archive', path: 'img.tar', ref: 'app:1.0' }],
    ['docker-archive:img.tar:@1', { transport: 'docker-archive', path: 'img.tar', ref: '@1' }],
    ['docker://alpine', undefined],
    ['alpine:3', undefined],
  ];
  for (const [spec, want] of table) assert.deepEqual(parseLocalReference(spec), want, spec);
  for (const bad of ['oci:', 'oci::tag', 'docker-archive:f.tar:']) {
    assert.throws(() => parseLocalReference(bad), (e) => isGantryError(e, 'REFERENCE_INVALID'), bad);
  }
});

test('a local reference opens as a writer that names the image, then as a reader that finds it', async () => {
  const tmp = await tempDir('transports');
  try {
    const mem = new MemoryStore();
    const img = await randomImage(mem, {}, 'x');
    for (const spec of [`oci:${join(tmp.path, 'layout')}:v1`, `docker-archive:${join(tmp.path, 'a.tar')}:app:v1`]) {
      const ref = parseLocalReference(spec)!;
      const { writer, tags } = await openLocalWriter(ref);
      await copyImage(mem, 'x', writer, { tags });
      await writer.commit!();
      const reader = await openLocalReader(ref);
      assert.equal((await reader.getManifest()).digest, img.raw.digest, spec);
    }
  } finally {
    await tmp.cleanup();
  }
});
