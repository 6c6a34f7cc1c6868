import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../testing/tmp.js';
import { detectSandbox } from './detect.js';

test('detection probes the rootless sandbox only where ns does not work', async () => {
  const tmp = await tempDir('detect');
  try {
    const d = await detectSandbox({ stateDir: tmp.path });
    const ns = d.checks.find((c) => c.kind === 'ns')!;
    const rootless = d.checks.find((c) => c.kind === 'rootless')!;
    assert.deepEqual(d.checks.map((c) => c.kind), ['ns', 'rootless', 'inplace']);
    if (ns.usable) {
      // Root with CAP_SYS_ADMIN: a rootless probe would only cost its child processes.
      assert.equal(d.kind, 'ns');
      assert.equal(rootless.usable, false);
      assert.match(rootless.reason, /not probed/);
    } else {
      assert.doesNotMatch(rootless.reason, /not probed/, 'probed when ns is not usable');
    }
  } finally {
    await tmp.cleanup();
  }
});
