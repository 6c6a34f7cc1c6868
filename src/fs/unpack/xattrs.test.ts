import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodeRestoreRecord, findExecutable, keptXattrs } from './xattrs.js';

test('restore records escape names byte-exactly and hex-encode values', () => {
  const cases: Array<[string, Record<string, Buffer>, string]> = [
    ['/r/plain', { 'user.test': Buffer.from('hi') }, '# file: /r/plain\nuser.test=0x6869\n\n'],
    ['/r/a b\\c', { 'user.x=y': Buffer.from([0, 1, 0xff]) }, '# file: /r/a\\040b\\134c\nuser.x\\075y=0x0001ff\n\n'],
    ['/r/\u00e9\n', { 'security.capability': Buffer.alloc(0) }, '# file: /r/\\303\\251\\012\nsecurity.capability=0x\n\n'],
  ];
  for (const [path, attrs, want] of cases) assert.equal(encodeRestoreRecord(path, attrs), want, path);
});

test('overlayfs bookkeeping xattrs are dropped, others kept', () => {
  const cases: Array<[Record<string, Buffer> | undefined, string[] | undefined]> = [
    [undefined, undefined],
    [{}, undefined],
    [{ 'trusted.overlay.opaque': Buffer.from('y') }, undefined],
    [{ 'user.overlay.origin': Buffer.from('x'), 'security.capability': Buffer.from([1]) }, ['security.capability']],
    [{ 'user.test': Buffer.from('v') }, ['user.test']],
  ];
  for (const [attrs, want] of cases) {
    const kept = keptXattrs(attrs);
    assert.deepEqual(kept === undefined ? undefined : Object.keys(kept), want);
  }
});

test('executables are found on PATH like which does', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-which-'));
  try {
    writeFileSync(join(dir, 'tool'), '#!/bin/sh\n');
    chmodSync(join(dir, 'tool'), 0o755);
    writeFileSync(join(dir, 'notexec'), '');
    assert.equal(findExecutable('tool', `/nonexistent:${dir}`), join(dir, 'tool'));
    assert.equal(findExecutable('tool', ''), undefined);
    // as root X_OK passes for any file with an x bit; a mode-0644 file has none
    chmodSync(join(dir, 'notexec'), 0o644);
    assert.equal(findExecutable('notexec', dir), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
