import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { conformanceDir } from '../../testing/paths.js';
import { IgnoreMatcher, legacyMatches, parseDockerignore } from './index.js';

const file = join(conformanceDir, 'dockerignore', 'patternmatcher-cases.json');
const have = existsSync(file);

interface MatchCase {
  id: string;
  function: 'Matches' | 'MatchesOrParentMatches';
  patterns: string[];
  path: string;
  expected: boolean;
  expectError?: boolean;
}

function run(c: MatchCase): boolean {
  if (c.function === 'Matches') return legacyMatches(c.path, c.patterns);
  return new IgnoreMatcher(c.patterns).matches(c.path);
}

test('dockerignore matcher agrees with every patternmatcher case', { skip: !have && 'no conformance data' }, () => {
  const data = JSON.parse(readFileSync(file, 'utf8')) as { matchCases: MatchCase[] };
  const failures: string[] = [];
  for (const c of data.matchCases) {
    let got: boolean | 'error';
    try {
      got = run(c);
    } catch {
      got = 'error';
    }
    const want = c.expectError ? 'error' : c.expected;
    if (got !== want) failures.push(`${c.id}: ${JSON.stringify(c.patterns)} ${JSON.stringify(c.path)} want ${want} got ${got}`);
  }
  console.log(`dockerignore: ${data.matchCases.length - failures.length}/${data.matchCases.length} match cases`);
  assert.deepEqual(failures, []);
});

test('dockerignore matcher incremental answers equal the whole-path answers', { skip: !have && 'no conformance data' }, () => {
  const data = JSON.parse(readFileSync(file, 'utf8')) as { matchCases: MatchCase[] };
  let n = 0;
  for (const c of data.matchCases) {
    if (c.function !== 'MatchesOrParentMatches' || c.expectError) continue;
    const m = new IgnoreMatcher(c.patterns);
    assert.equal(m.matchesWithParent(c.path, undefined).excluded, c.expected, c.id);
    // The same answer when walking down from the root, one segment at a time.
    const segs = c.path.split('/').filter((s) => s !== '');
    if (segs.length === 0 || c.path.startsWith('/') || c.path.endsWith('/')) continue;
    let info;
    let excluded = false;
    for (let i = 1; i <= segs.length; i++) {
      ({ excluded, info } = m.matchesWithParent(segs.slice(0, i).join('/'), info));
    }
    assert.equal(excluded, c.expected, c.id + ' (walked)');
    n++;
  }
  assert.ok(n > 50, `only ${n} cases checked`);
});

test('dockerignore pattern lists: counts, exceptions and errors', { skip: !have && 'no conformance data' }, () => {
  const data = JSON.parse(readFileSync(file, 'utf8')) as {
    patternListCases: Array<{
      id: string;
      patterns: string[];
      expectedPatternCount?: number;
      expectedHasExclusions?: boolean;
      expectError?: boolean;
      thenMatch?: { path: string; expectError: boolean };
    }>;
  };
  for (const c of data.patternListCases) {
    if (c.expectError) {
      assert.throws(() => new IgnoreMatcher(c.patterns), { code: 'DOCKERIGNORE_INVALID' }, c.id);
      continue;
    }
    const m = new IgnoreMatcher(c.patterns);
    if (c.expectedPatternCount !== undefined) assert.equal(m.patterns.length, c.expectedPatternCount, c.id);
    if (c.expectedHasExclusions !== undefined) assert.equal(m.hasExceptions, c.expectedHasExclusions, c.id);
    if (c.thenMatch?.expectError) {
      assert.throws(() => m.matches(c.thenMatch!.path), { code: 'DOCKERIGNORE_INVALID' }, c.id);
      assert.throws(() => m.matches(c.thenMatch!.path), { code: 'DOCKERIGNORE_INVALID' }, c.id + ' (repeat)');
    }
  }
  console.log(`dockerignore: ${data.patternListCases.length} pattern-list cases`);
});

test('dockerignore files are read into the expected pattern lists', { skip: !have && 'no conformance data' }, () => {
  const data = JSON.parse(readFileSync(file, 'utf8')) as {
    ignoreFileCases: Array<{ id: string; content: string | null; expected: string[] }>;
  };
  for (const c of data.ignoreFileCases) assert.deepEqual(parseDockerignore(c.content), c.expected, c.id);
});
