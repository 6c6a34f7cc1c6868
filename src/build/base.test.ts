import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyImage } from '../oci/copy.js';
import { DockerArchiveWriter } from '../oci/dockerarchive-writer.js';
import { OciLayoutWriter } from '../oci/layout.js';
import { MemoryStore } from '../oci/memory.js';
import { randomImage, randomIndex } from '../oci/random.js';
import { RegistryClient } from '../registry/index.js';
import { resolveImage, splitTransport } from './base.js';

describe('resolveImage from local transports', () => {
  let dir: string;
  const client = new RegistryClient({ env: {} });
  const store = new MemoryStore();
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gantry-base-'));
    await randomIndex(store, [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }], {}, 'multi');
    const layout = await OciLayoutWriter.create(join(dir, 'layout'));
    await copyImage(store, 'multi', layout, { tags: ['multi'] });
    await layout.commit();
  });
  after(async () => {
    await client.close();
    await rm(dir, { recursive: true, force: true });
  });

  const platforms = ['amd64', 'arm64'];
  for (const arch of platforms) {
    it(`oci:<dir>:<tag> picks ${arch} from an index`, async () => {
      const img = await resolveImage(`oci:${join(dir, 'layout')}:multi`, { os: 'linux', architecture: arch }, client);
      assert.equal(img.config.architecture, arch);
      assert.equal(img.manifest.layers.length, img.config.rootfs.diff_ids.length);
      assert.equal(img.repository, undefined);
    });
  }

  it('reports a missing platform', async () => {
    await assert.rejects(resolveImage(`oci:${join(dir, 'layout')}:multi`, { os: 'linux', architecture: 's390x' }, client), /resolving base image .*no manifest for linux\/s390x/);
  });

  it('docker-archive:<file>', async () => {
    const single = new MemoryStore();
    const img = await randomImage(single, { family: 'docker' }, 'one');
    const file = join(dir, 'image.tar');
    const w = await DockerArchiveWriter.create(file);
    await copyImage(single, 'one', w, { tags: ['example.com/app:1'] });
    await w.commit();
    for (const name of [`docker-archive:${file}`, `docker-archive:${file}:example.com/app:1`]) {
      const got = await resolveImage(name, { os: 'linux', architecture: 'amd64' }, client);
      assert.deepEqual(got.config.rootfs.diff_ids, img.config.rootfs.diff_ids);
    }
    assert.deepEqual(splitTransport(`${file}:example.com/app:1`), { path: file, ref: 'example.com/app:1' });
    assert.deepEqual(splitTransport(`${join(dir, 'layout')}:multi`), { path: join(dir, 'layout'), ref: 'multi' });
  });
});
