import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isGantryError } from '../util/errors.js';
import { familiarString, fullString, parseTaggedName, sameTaggedName } from './dockerref.js';

test('archive tags have a full and a familiar form, like docker save writes them', () => {
  const table: Array<[string, string, string]> = [
    ['alpine', 'docker.io/library/alpine:latest', 'alpine:latest'],
    ['alpine:3.20', 'docker.io/library/alpine:3.20', 'alpine:3.20'],
    ['docker.io/library/alpine:3', 'docker.io/library/alpine:3', 'alpine:3'],
    ['index.docker.io/o/app:1', 'docker.io/o/app:1', 'o/app:1'],
    ['o/app:1', 'docker.io/o/app:1', 'o/app:1'],
    ['ghcr.io/o/app:1', 'ghcr.io/o/app:1', 'ghcr.io/o/app:1'],
    ['localhost:5000/app:dev', 'localhost:5000/app:dev', 'localhost:5000/app:dev'],
    ['localhost/app', 'localhost/app:latest', 'localhost/app:latest'],
  ];
  for (const [input, full, familiar] of table) {
    const t = parseTaggedName(input);
    assert.equal(fullString(t), full, input);
    assert.equal(familiarString(t), familiar, input);
  }
  for (const bad of ['Alpine:1', 'app@sha256:' + 'a'.repeat(64), 'app:-x', 'app:', 'a//b:1']) {
    assert.throws(() => parseTaggedName(bad), (e) => isGantryError(e, 'REFERENCE_INVALID'), bad);
  }
  assert.ok(sameTaggedName('alpine', 'docker.io/library/alpine:latest'));
  assert.ok(!sameTaggedName('alpine:3', 'alpine:4'));
});
