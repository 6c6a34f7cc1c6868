import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { conformanceDir } from '../../testing/paths.js';
import { isGantryError } from '../../util/errors.js';
import {
  chompHeredocContent,
  dumpInstruction,
  dumpParsed,
  heredocsFromLine,
  parseDockerfile,
  parseHeredocWord,
  parseJSONArray,
  parseWords,
} from './index.js';

const dir = join(conformanceDir, 'dockerfile-parser');
const have = existsSync(join(dir, 'extra-cases.json'));

function readCase(...parts: string[]): string {
  return readFileSync(join(dir, ...parts), 'utf8');
}

function isSyntaxError(err: unknown): boolean {
  return isGantryError(err, 'DOCKERFILE_SYNTAX');
}

interface HeredocExpect {
  name: string;
  content: string;
  expand: boolean;
  chomp: boolean;
  fileDescriptor: number;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
const extra: any = have ? JSON.parse(readCase('extra-cases.json')) : {};

describe('dockerfile parser conformance (BuildKit testfiles)', { skip: !have && 'conformance data not found' }, () => {
  const positive = have ? readdirSync(join(dir, 'testfiles')).sort() : [];
  const negative = have ? readdirSync(join(dir, 'testfiles-negative')).sort() : [];
  const tally = { positive: 0, negative: 0, extra: 0 };

  describe('testfiles: dump matches result byte for byte', () => {
    for (const name of positive) {
      test(name, () => {
        const input = readCase('testfiles', name, 'Dockerfile');
        const want = readCase('testfiles', name, 'result');
        assert.equal(dumpParsed(parseDockerfile(input, { file: `${name}/Dockerfile` })), want);
        tally.positive++;
      });
    }
  });

  describe('testfiles-negative: rejected', () => {
    for (const name of negative) {
      test(name, () => {
        const input = readCase('testfiles-negative', name, 'Dockerfile');
        assert.throws(() => parseDockerfile(input), isSyntaxError);
        tally.negative++;
      });
    }
  });

  describe('extra-cases.json', () => {
    test('lineNumbers: testfile-line ranges', () => {
      const c = extra.lineNumbers;
      const p = parseDockerfile(readCase(c.file));
      assert.equal(p.instructions.length, c.childCount);
      assert.deepEqual(
        p.instructions.map((n) => [n.range.startLine, n.range.endLine]),
        c.children,
      );
      assert.equal(p.instructions[0]!.range.startLine, c.rootStartLine);
      assert.equal(p.instructions.at(-1)!.range.endLine, c.rootEndLine);
      tally.extra++;
    });

    test('heredocs: bodies, names, expand, chomp, fd', () => {
      const c = extra.heredocs;
      const p = parseDockerfile(c.dockerfile);
      for (const child of c.children as Array<{ childIndex: number; originalLine: string; dump: string; heredocs: HeredocExpect[] | null }>) {
        const node = p.instructions[child.childIndex]!;
        assert.equal(node.original, child.originalLine, `child ${child.childIndex} original`);
        assert.equal(dumpInstruction(node), child.dump.slice(1, -1), `child ${child.childIndex} dump`);
        const got = node.heredocs.map((h) => ({ ...h }));
        assert.deepEqual(got, child.heredocs ?? [], `child ${child.childIndex} heredocs`);
        tally.extra++;
      }
    });

    test('jsonFormHasNoHeredoc', () => {
      const c = extra.jsonFormHasNoHeredoc;
      const p = parseDockerfile(c.dockerfile);
      for (const idx of c.childrenWithoutHeredocs as number[]) {
        assert.deepEqual(p.instructions[idx]!.heredocs, [], `child ${idx}`);
        assert.equal(p.instructions[idx]!.json, true);
        tally.extra++;
      }
    });

    test('chomp', () => {
      for (const c of extra.chomp as Array<{ input: string; expected: string }>) {
        assert.equal(chompHeredocContent(c.input), c.expected);
        tally.extra++;
      }
    });

    test('heredocWord: valid, invalid, not a heredoc', () => {
      const c = extra.heredocWord;
      for (const w of c.valid as string[]) {
        assert.equal(parseHeredocWord(w)?.name, 'EOF', w);
        tally.extra++;
      }
      for (const w of c.invalid as string[]) {
        assert.throws(() => parseHeredocWord(w), Error, w);
        tally.extra++;
      }
      for (const w of c.notHeredoc as string[]) {
        assert.equal(parseHeredocWord(w), null, w);
        tally.extra++;
      }
    });

    test('heredocNamesFromLine', () => {
      for (const c of extra.heredocNamesFromLine.cases as Array<{ line: string; names: string[] }>) {
        assert.deepEqual(heredocsFromLine(c.line).map((h) => h.name), c.names, c.line);
        tally.extra++;
      }
    });

    test('words', () => {
      for (const c of extra.words.cases as Array<{ input: string; expected: string[] }>) {
        assert.deepEqual(parseWords(c.input, '\\'), c.expected, c.input);
        tally.extra++;
      }
    });

    test('emptyContinuationLineWarnings', () => {
      const c = extra.emptyContinuationLineWarnings;
      const p = parseDockerfile(c.dockerfile);
      assert.equal(p.warnings.length, c.expectedWarningCount);
      c.warnings.forEach((w: { contains: string[] }, i: number) => {
        for (const s of w.contains) assert.ok(p.warnings[i]!.message.includes(s), `${p.warnings[i]!.message} has ${s}`);
        assert.equal(p.warnings[i]!.rule, 'NoEmptyContinuation');
      });
      tally.extra++;
    });

    test('maxLineLength', () => {
      const c = extra.maxLineLength;
      const text = '\n\t\tFROM image\n\t\tLABEL test=' + 'a'.repeat(65536) + '\n';
      assert.throws(
        () => parseDockerfile(text),
        (err: unknown) => isSyntaxError(err) && (err as Error).message.includes(c.expectedError),
      );
      // the limit itself is allowed: 65535 bytes of line content
      const longest = 'FROM image\nLABEL test=' + 'a'.repeat(65535 - 'LABEL test='.length) + '\n';
      assert.equal(parseDockerfile(longest).instructions.length, 2);
      tally.extra++;
    });

    test('jsonArrays: valid and not-string arrays', () => {
      const c = extra.jsonArrays;
      for (const v of c.valid as Array<{ input: string; expected: string[] }>) {
        assert.deepEqual(parseJSONArray(v.input), v.expected, v.input);
        tally.extra++;
      }
      for (const input of c.notStringArray as string[]) {
        assert.throws(() => parseJSONArray(input), Error, input);
        assert.throws(() => parseDockerfile(`FROM x\nCMD ${input}\n`), isSyntaxError, input);
        tally.extra++;
      }
    });

    test('nameValue', () => {
      for (const c of extra.nameValue.cases as Array<{ instruction: string; args: string; expectedNodes?: string[]; expectError?: string }>) {
        const text = `FROM x\n${c.instruction} ${c.args}\n`;
        if (c.expectError) {
          assert.throws(() => parseDockerfile(text), (err: unknown) => isSyntaxError(err) && (err as Error).message.includes(c.expectError!));
        } else {
          assert.deepEqual(parseDockerfile(text).instructions[1]!.args, c.expectedNodes);
        }
        tally.extra++;
      }
    });
  });

  test('counts', (t) => {
    const msg = `parser conformance: ${tally.positive}/${positive.length} positive, ${tally.negative}/${negative.length} negative, ${tally.extra} extra`;
    t.diagnostic(msg);
    console.log(msg);
    assert.equal(tally.positive, positive.length);
    assert.equal(tally.negative, negative.length);
    assert.equal(positive.length, 33);
    assert.equal(negative.length, 4);
    assert.equal(tally.extra, 91);
  });
});
