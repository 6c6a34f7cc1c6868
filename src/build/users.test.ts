import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { needsLookup, resolveOwner } from './users.js';

describe('resolveOwner reads the image own passwd and group files', () => {
  let root: string;
  before(async () => {
    root = join(tmpdir(), `gantry-users-${process.pid}`);
    await mkdir(join(root, 'etc'), { recursive: true });
    await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\n');
    await writeFile(join(root, 'etc/group'), 'root:x:0:\nstaff:x:50:\napp:x:1001:\n');
  });
  after(() => rm(root, { recursive: true, force: true }));

  const cases: Array<[string, { uid: number; gid: number }]> = [
    ['app', { uid: 1000, gid: 1001 }],
    ['app:staff', { uid: 1000, gid: 50 }],
    ['app:7', { uid: 1000, gid: 7 }],
    ['42', { uid: 42, gid: 42 }],
    ['42:staff', { uid: 42, gid: 50 }],
    ['42:43', { uid: 42, gid: 43 }],
    ['root', { uid: 0, gid: 0 }],
  ];
  for (const [spec, want] of cases) it(spec, async () => assert.deepEqual(await resolveOwner(spec, root), want));

  it('rejects unknown names', async () => {
    await assert.rejects(resolveOwner('nobody', root), /unable to find user nobody/);
    await assert.rejects(resolveOwner('app:wheel', root), /unable to find group wheel/);
  });
  it('numeric ids need no files', async () => {
    assert.equal(needsLookup('1:2'), false);
    assert.equal(needsLookup('app'), true);
    assert.deepEqual(await resolveOwner('5:6', undefined), { uid: 5, gid: 6 });
    await assert.rejects(resolveOwner('app', undefined), (err: { hint?: string }) => /no \/etc\/passwd/.test(err.hint ?? ''));
  });
});
