import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IgnoreList } from './ignore-list.js';

test('ignored paths cover themselves and everything below them', () => {
  const list = new IgnoreList(['/proc', 'var/run/', '/dev/../sys']);
  const cases: Array<[string, boolean, boolean]> = [
    // path, covers, hasIgnoredBelow
    ['/proc', true, false],
    ['/proc/1/status', true, false],
    ['/procfs', false, false],
    ['/var/run', true, false],
    ['/var', false, true],
    ['/sys/x', true, false],
    ['/dev', false, false],
    ['/', false, true],
    ['/usr', false, false],
  ];
  for (const [path, covers, below] of cases) {
    assert.equal(list.covers(path), covers, `covers ${path}`);
    assert.equal(list.hasIgnoredBelow(path), below, `below ${path}`);
  }
  assert.equal(new IgnoreList().empty, true);
});
