import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GantryError } from '../../util/errors.js';
import { ShellLex, envFromList, envFromMap, envFromRecord, type ShellLexOptions } from './index.js';

interface WordCase {
  name: string;
  input: string;
  expected: string;
  escape?: '\\' | '`';
  options?: ShellLexOptions;
  env?: Record<string, string>;
}

const wordCases: WordCase[] = [
  { name: 'skipUnsetEnv keeps unset references as written', input: '$X ${Y} ${Z:-d} ${W/a/b} $SET', expected: '$X ${Y} ${Z:-d} ${W/a/b} v', options: { skipUnsetEnv: true }, env: { SET: 'v' } },
  { name: 'rawQuotes keeps quotes', input: `'a b' "c$SET"`, expected: `'a b' "cv"`, options: { rawQuotes: true }, env: { SET: 'v' } },
  { name: 'rawEscapes keeps escapes', input: 'a\\ b\\$SET', expected: 'a\\ b\\$SET', options: { rawEscapes: true }, env: { SET: 'v' } },
  { name: 'skipProcessQuotes leaves quotes to the script', input: `echo '$A' "$B"`, expected: `echo 'x' "y"`, options: { skipProcessQuotes: true }, env: { A: 'x', B: 'y' } },
  { name: 'backtick escape', input: 'a`$b c:\\dir', expected: 'a$b c:\\dir', escape: '`' },
  { name: 'backtick escape in double quotes', input: '"a`"b"', expected: 'a"b', escape: '`' },
  { name: 'replace all: an empty match right after a match is skipped', input: '${A//*/x}', expected: 'x', env: { A: 'abc' } },
  { name: 'replace all: empty pattern inserts everywhere', input: '${A///-}', expected: '-a-b-', env: { A: 'ab' } },
  { name: 'replace all: $$ in the replacement is one dollar', input: '${A//b/\\$\\$}', expected: 'a\\$\\$c', env: { A: 'abc' } },
  { name: 'suffix removal with a multi-byte value', input: '${A%é*}', expected: 'abéc', env: { A: 'abécé' } },
  { name: 'longest suffix removal', input: '${A%%é*}', expected: 'ab', env: { A: 'abécé' } },
  { name: 'digits after $ form one positional name', input: '$10x', expected: 'x' },
  { name: 'unicode letters are part of names', input: '$été!', expected: 'summer!', env: { 'été': 'summer' } },
];

describe('ShellLex options and details', () => {
  for (const c of wordCases) {
    test(c.name, () => {
      const lex = new ShellLex(c.escape ?? '\\', c.options);
      assert.equal(lex.processWord(c.input, envFromRecord(c.env ?? {})).result, c.expected);
    });
  }

  test('processWords splits expanded values and reports variables', () => {
    const lex = new ShellLex();
    const got = lex.processWords('a$V "b $V" $NONE', envFromRecord({ V: 'x y' }));
    assert.deepEqual(got.words, ['ax', 'y', 'b x y']);
    assert.deepEqual([...got.matched], ['V']);
    assert.deepEqual([...got.unmatched], ['NONE']);
  });

  test('processWords keeps blanks after << in the heredoc word', () => {
    assert.deepEqual(new ShellLex().processWords('cat <<  EOF > x', envFromRecord({})).words, ['cat', '<<  EOF', '>', 'x']);
  });

  test('syntax errors are DOCKERFILE_INVALID with the word quoted like BuildKit', () => {
    assert.throws(
      () => new ShellLex().processWord('a${b', envFromRecord({})),
      (err: unknown) =>
        err instanceof GantryError &&
        err.code === 'DOCKERFILE_INVALID' &&
        err.message === `failed to process "a\${b": syntax error: missing '}'` &&
        err.details.word === 'a${b' &&
        typeof err.hint === 'string',
    );
  });

  test('required variables fail as BUILD_ARG naming the variable', () => {
    assert.throws(
      () => new ShellLex().processWord('${TAG:?set a tag}', envFromRecord({ TAG: '' })),
      (err: unknown) =>
        err instanceof GantryError &&
        err.code === 'BUILD_ARG' &&
        err.message === 'failed to process "${TAG:?set a tag}": TAG: set a tag' &&
        err.details.variable === 'TAG',
    );
  });

  test('invalid pattern escapes are reported', () => {
    assert.throws(
      () => new ShellLex().processWord('${A#\\x}', envFromRecord({ A: 'a' })),
      (err: unknown) => err instanceof GantryError && err.message.includes("invalid pattern (\\x) in substitution: invalid escape '\\x'"),
    );
  });

  test('environment helpers', () => {
    const fromMap = envFromMap(new Map([['A', '1']]));
    assert.equal(fromMap.get('A'), '1');
    assert.equal(fromMap.get('B'), undefined);
    const fromList = envFromList(['A=1', 'B=x=y', 'A=2', 'C']);
    assert.equal(fromList.get('A'), '2');
    assert.equal(fromList.get('B'), 'x=y');
    assert.equal(fromList.get('C'), '');
    assert.deepEqual(fromList.keys(), ['A', 'B', 'C']);
    const rec = envFromRecord({ A: '' });
    assert.equal(rec.get('A'), '');
    assert.equal(rec.get('toString'), undefined, 'prototype names are not variables');
  });
});
