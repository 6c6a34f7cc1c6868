import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { comparePaths, withParents } from './layers.js';
import { addEnv, formatTime, normalizeWorkdir, omitEmpty, scratchConfig } from './metadata.js';

describe('WORKDIR normalisation (BuildKit NormalizeWorkdir)', () => {
  const cases: Array<[string | undefined, string, string]> = [
    ['/', '/app', '/app'],
    ['/app', 'src', '/app/src'],
    ['/app', '../etc/', '/etc'],
    [undefined, 'rel', '/rel'],
    ['/a', '/b/./c/', '/b/c'],
    ['/a', '/', '/'],
  ];
  for (const [cur, p, want] of cases) it(`${cur ?? '(unset)'} + ${p} = ${want}`, () => assert.equal(normalizeWorkdir(cur, p), want));
});

describe('config helpers', () => {
  it('addEnv replaces in place and appends new keys', () => {
    assert.deepEqual(addEnv(['PATH=/bin', 'A=1'], 'A', '2'), ['PATH=/bin', 'A=2']);
    assert.deepEqual(addEnv(['PATH=/bin'], 'B', 'x=y'), ['PATH=/bin', 'B=x=y']);
  });
  it('formats times like Go for whole seconds', () => {
    assert.equal(formatTime(new Date(0)), '1970-01-01T00:00:00Z');
    assert.equal(formatTime(new Date(1500)), '1970-01-01T00:00:01.500Z');
  });
  it('omits what Go omitempty omits', () => {
    const cfg = scratchConfig({ os: 'linux', architecture: 'amd64' });
    cfg.config = { ...cfg.config, Entrypoint: [], Labels: {}, ArgsEscaped: false, User: '', Healthcheck: { Test: ['NONE'] } };
    assert.deepEqual(omitEmpty(cfg).config, { Env: cfg.config.Env, WorkingDir: '/', Healthcheck: { Test: ['NONE'] } });
  });
});

describe('layer path order', () => {
  it('puts parents before children, component by component', () => {
    assert.deepEqual(['a.b', 'a/b', 'a', 'a/b/c', 'B'].sort(comparePaths), ['B', 'a', 'a/b', 'a/b/c', 'a.b']);
  });
  it('adds every ancestor of the written paths', () => {
    assert.deepEqual(withParents(['x/y/z', 'x/a', 'q']), ['q', 'x', 'x/a', 'x/y', 'x/y/z']);
    assert.deepEqual(withParents([]), []);
  });
});
