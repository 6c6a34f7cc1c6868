import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LayerIndexStore, listLayerIndexes, pruneLayerIndexes, type LayerIndexPruneOptions } from './layer-index-store.js';

const NOW = new Date('2026-01-10T12:00:00Z');
const hoursAgo = (h: number) => new Date(NOW.getTime() - h * 3600_000);

describe('pruneLayerIndexes', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'gantry-layer-index-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** Three 100-byte indexes used 30, 20 and 10 hours ago, a save in progress and one abandoned. */
  async function populated(): Promise<string> {
    const dir = await mkdtemp(join(root, 'store-'));
    const files: Array<[string, number]> = [['a.json', 30], ['b.json', 20], ['c.json', 10], ['c.json.1.x.tmp', 0.1], ['d.json.2.y.tmp', 3]];
    for (const [name, age] of files) {
      await writeFile(join(dir, name), Buffer.alloc(100));
      await utimes(join(dir, name), hoursAgo(age), hoursAgo(age));
    }
    await writeFile(join(dir, 'README'), 'not an index');
    return dir;
  }

  const cases: Array<{ name: string; opts: LayerIndexPruneOptions; left: string[] }> = [
    { name: 'all removes every index and temporary file', opts: { all: true }, left: ['README'] },
    { name: 'nothing asked removes only abandoned temporary files', opts: {}, left: ['README', 'a.json', 'b.json', 'c.json', 'c.json.1.x.tmp'] },
    { name: 'olderThanMs removes the indexes unused for that long', opts: { olderThanMs: 15 * 3600_000 }, left: ['README', 'c.json', 'c.json.1.x.tmp'] },
    { name: 'maxBytes removes least recently used ones until the rest fits', opts: { maxBytes: 350 }, left: ['README', 'c.json', 'c.json.1.x.tmp'] },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const dir = await populated();
      const before = (await listLayerIndexes(dir)).length;
      const r = await pruneLayerIndexes(dir, { ...c.opts, now: NOW });
      assert.deepEqual((await readdir(dir)).sort(), c.left);
      assert.equal(r.removed.length, before - (c.left.length - 1));
      assert.equal(r.freedBytes, 100 * r.removed.length);
    });
  }

  it('treats a missing directory as empty', async () => {
    assert.deepEqual(await pruneLayerIndexes(join(root, 'missing'), { all: true }), { removed: [], freedBytes: 0 });
  });

  it('marks an index read from disk as used, so pruning by age keeps it', async () => {
    const dir = await mkdtemp(join(root, 'touch-'));
    const writer = new LayerIndexStore(dir);
    const diffId = `sha256:${'e'.repeat(64)}`;
    writer.put(diffId, { entries: [{ name: 'etc', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0 }] });
    await writer.flush();
    const file = join(dir, `${'e'.repeat(64)}.json`);
    const old = new Date(Date.now() - 48 * 3600_000);
    await utimes(file, old, old);
    assert.ok(new LayerIndexStore(dir).get(diffId));
    // The touch runs in the background.
    for (let i = 0; i < 100 && (await stat(file)).mtimeMs === old.getTime(); i++) await new Promise((r) => setTimeout(r, 5));
    const r = await pruneLayerIndexes(dir, { olderThanMs: 3600_000 });
    assert.deepEqual(r.removed, []);
  });
});
