import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { conformanceDir } from '../../testing/paths.js';
import { isGantryError } from '../../util/errors.js';
import { ShellLex, envFromRecord } from './index.js';

const dir = join(conformanceDir, 'shell-lex');
const have = existsSync(join(dir, 'envVarTest'));

interface JsonCase {
  id: string;
  input: string;
  env: Record<string, string>;
  expected?: string;
  expectError?: boolean;
  errorContains?: string;
  matched?: string[];
  unmatched?: string[];
}

describe('shell lexer conformance (BuildKit data files)', { skip: !have && 'conformance data not found' }, () => {
  test('envVarTest: every A/U line expands as one word', (t) => {
    const env = envFromRecord({ PWD: '/home', SHELL: 'bash', KOREAN: '한국어', NULL: '' });
    const lex = new ShellLex('\\');
    let run = 0;
    const failures: string[] = [];
    for (const raw of readFileSync(join(dir, 'envVarTest'), 'utf8').split('\n')) {
      if (raw.startsWith('#')) continue;
      const line = raw.trim();
      if (!line) continue;
      const [plat, input, expected] = line.split('|').map((s) => s.trim()) as [string, string, string];
      if (plat === 'W') continue;
      run++;
      let got: string;
      try {
        got = lex.processWord(input, env).result;
      } catch (err) {
        if (!isGantryError(err)) throw err;
        got = 'error';
      }
      if (got !== expected) failures.push(`${input}: want ${JSON.stringify(expected)}, got ${JSON.stringify(got)}`);
    }
    t.diagnostic(`envVarTest: ${run - failures.length}/${run} lines`);
    assert.deepEqual(failures, []);
    assert.equal(run, 228);
  });

  test('wordsTest: every line expands and splits into words', (t) => {
    const vars: Record<string, string> = {};
    const lex = new ShellLex('\\');
    let run = 0;
    const failures: string[] = [];
    for (const line of readFileSync(join(dir, 'wordsTest'), 'utf8').split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      if (line.startsWith('ENV ')) {
        const kv = line.slice(3).replace(/^ +/, '');
        const i = kv.indexOf('=');
        vars[kv.slice(0, i)] = kv.slice(i + 1);
        continue;
      }
      const bar = line.indexOf('|');
      const input = line.slice(0, bar).trim();
      const expected = line.slice(bar + 1).replace(/^ +/, '').split(',');
      run++;
      let got: string[];
      try {
        got = lex.processWords(input, envFromRecord({ ...vars })).words;
      } catch (err) {
        if (!isGantryError(err)) throw err;
        got = ['error'];
      }
      if (JSON.stringify(got) !== JSON.stringify(expected)) {
        failures.push(`${input}: want ${JSON.stringify(expected)}, got ${JSON.stringify(got)}`);
      }
    }
    t.diagnostic(`wordsTest: ${run - failures.length}/${run} lines`);
    assert.deepEqual(failures, []);
    assert.equal(run, 24);
  });

  const cases = have
    ? (JSON.parse(readFileSync(join(dir, 'process-word-cases.json'), 'utf8')) as Record<string, JsonCase[]>)
    : {};
  for (const section of ['processWordWithMatches', 'requiredVariable', 'platformArgs']) {
    describe(section, () => {
      for (const c of cases[section] ?? []) {
        test(`${c.id}: ${c.input}`, () => {
          const lex = new ShellLex('\\');
          const env = envFromRecord(c.env);
          if (c.expectError) {
            assert.throws(
              () => lex.processWord(c.input, env),
              (err: unknown) => {
                assert.ok(isGantryError(err), 'a GantryError');
                if (c.errorContains) assert.ok(err.message.includes(c.errorContains), err.message);
                return true;
              },
            );
            return;
          }
          const got = lex.processWord(c.input, env);
          assert.equal(got.result, c.expected);
          if (c.matched) assert.deepEqual([...got.matched].sort(), [...c.matched].sort(), 'matched');
          if (c.unmatched) assert.deepEqual([...got.unmatched].sort(), [...c.unmatched].sort(), 'unmatched');
        });
      }
    });
  }

  test('process-word-cases.json has the documented number of cases', (t) => {
    const counts = Object.fromEntries(
      ['processWordWithMatches', 'requiredVariable', 'platformArgs'].map((s) => [s, cases[s]?.length ?? 0]),
    );
    t.diagnostic(`process-word-cases: ${JSON.stringify(counts)}`);
    assert.deepEqual(counts, { processWordWithMatches: 47, requiredVariable: 6, platformArgs: 3 });
  });
});
