import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { dumpParsed, parseDockerfile } from './index.js';

interface DumpCase {
  name: string;
  text: string;
  dump: string;
}

// Behaviour the BuildKit golden files do not pin down, checked through the dump format.
const dumpCases: DumpCase[] = [
  { name: 'UTF-8 BOM on the first line is ignored', text: '\ufeffFROM x\n', dump: '(from "x")\n' },
  { name: 'CRLF line endings', text: 'FROM x\r\nRUN a \\\r\n  b\r\n', dump: '(from "x")\n(run "a   b")\n' },
  { name: 'backtick escape continues lines', text: '# escape=`\nFROM x\nRUN a `\n b\n', dump: '(from "x")\n(run "a  b")\n' },
  { name: 'backslash is literal with the backtick escape', text: '# escape=`\nFROM x\nRUN dir c:\\\n', dump: '(from "x")\n(run "dir c:\\\\")\n' },
  { name: 'escape directive after a blank line is a comment', text: '\n# escape=`\nFROM x\nRUN a `\n', dump: '(from "x")\n(run "a `")\n' },
  { name: 'directive keys are case-insensitive, spaces around =', text: '#  ESCAPE = `\nFROM x\nRUN a `\n b\n', dump: '(from "x")\n(run "a  b")\n' },
  { name: 'continuation at end of file ends the instruction', text: 'FROM x\nRUN a \\', dump: '(from "x")\n(run "a")\n' },
  { name: 'escaped escape does not continue', text: 'FROM x\nRUN a \\\\\nRUN b\n', dump: '(from "x")\n(run "a \\\\\\\\")\n(run "b")\n' },
  { name: 'quoted flag values lose their quotes', text: 'FROM x\nCOPY --chown="a b" --from=\'s\' src dst\n', dump: '(from "x")\n(copy ["--chown=a b" "--from=s"] "src" "dst")\n' },
  { name: 'unknown instructions are kept', text: 'FROM x\nFROBNICATE a b\n', dump: '(from "x")\n(frobnicate "")\n' },
  { name: 'ONBUILD with flags on the inner instruction', text: 'FROM x\nONBUILD COPY --from=a b c\n', dump: '(from "x")\n(onbuild (copy ["--from=a"] "b" "c"))\n' },
  { name: 'empty ONBUILD', text: 'FROM x\nONBUILD\n', dump: '(from "x")\n(onbuild)\n' },
  { name: 'ENV old form keeps the rest of the line', text: 'FROM x\nENV A  b  c \n', dump: '(from "x")\n(env "A" "b  c" "")\n' },
  { name: 'ARG keeps quotes', text: 'FROM x\nARG a="1 2" b\n', dump: '(from "x")\n(arg "a=\\"1 2\\"" "b")\n' },
  { name: 'heredoc bodies are not arguments', text: 'FROM x\nRUN <<EOF\nRUN not an instruction\nEOF\nUSER me\n', dump: '(from "x")\n(run "<<EOF")\n(user "me")\n' },
  { name: 'SHELL exec form', text: 'FROM x\nSHELL ["pwsh", "-c"]\n', dump: '(from "x")\n(shell "pwsh" "-c")\n' },
  { name: 'control characters are quoted like Go', text: 'FROM x\nCMD ["\\u0007\\u001b\\u00a0\\u200b\\ud83d\\ude00"]\n', dump: '(from "x")\n(cmd "\\a\\x1b\\u00a0\\u200b😀")\n' },
];

describe('parser behaviour (dump)', () => {
  for (const c of dumpCases) {
    test(c.name, () => {
      assert.equal(dumpParsed(parseDockerfile(c.text)), c.dump);
    });
  }
});

describe('parser behaviour (tree)', () => {
  test('directives are recorded and not kept as comments', () => {
    const p = parseDockerfile('# syntax=docker/dockerfile:1\n# check=skip=all\n# about x\nFROM x\n');
    assert.deepEqual(p.directives, { syntax: 'docker/dockerfile:1', check: 'skip=all' });
    assert.equal(p.escapeToken, '\\');
    assert.deepEqual(p.instructions[0]!.comments, ['about x']);
  });

  test('escape directive sets the escape token', () => {
    assert.equal(parseDockerfile('# escape=`\nFROM x\n').escapeToken, '`');
  });

  test('an empty comment line resets the collected comments', () => {
    const p = parseDockerfile('# a\n#\n# b\nFROM x\n');
    assert.deepEqual(p.instructions[0]!.comments, ['b']);
  });

  test('ranges: start at the keyword, end after the last consumed line', () => {
    const p = parseDockerfile('FROM x\n  RUN a \\\n    b\nCOPY <<EOF /f\nbody\nEOF\n');
    const ranges = p.instructions.map((n) => n.range);
    assert.deepEqual(ranges[0], { file: 'Dockerfile', startLine: 1, startColumn: 1, endLine: 1, endColumn: 7 });
    assert.deepEqual(ranges[1], { file: 'Dockerfile', startLine: 2, startColumn: 3, endLine: 3, endColumn: 6 });
    assert.deepEqual(ranges[2], { file: 'Dockerfile', startLine: 4, startColumn: 1, endLine: 6, endColumn: 4 });
  });

  test('original is the joined instruction text', () => {
    const p = parseDockerfile('FROM x\nRUN a \\\n  # dropped\n  b\n');
    assert.equal(p.instructions[1]!.original, 'RUN a   b');
  });

  test('heredoc body keeps CRLF and tabs; chomp only affects the terminator', () => {
    const p = parseDockerfile('FROM x\r\nRUN <<-EOF\r\n\techo a\r\n\tEOF\r\n');
    assert.deepEqual(p.instructions[1]!.heredocs, [
      { name: 'EOF', content: '\techo a\r\n', expand: true, chomp: true, fileDescriptor: 0 },
    ]);
  });

  test('ONBUILD heredocs are attached to the outer and inner node', () => {
    const p = parseDockerfile('FROM x\nONBUILD RUN <<EOF\necho hi\nEOF\n');
    const node = p.instructions[1]!;
    assert.equal(node.heredocs.length, 1);
    assert.equal(node.heredocs[0]!.content, 'echo hi\n');
    assert.equal(node.inner!.heredocs, node.heredocs);
  });

  test('heredocs are not read for other instructions or the exec form', () => {
    const p = parseDockerfile('FROM x\nCMD <<EOF\nRUN ["<<EOF"]\nEOF\n');
    assert.deepEqual(p.instructions.map((n) => n.keyword), ['from', 'cmd', 'run', 'eof']);
    assert.ok(p.instructions.every((n) => n.heredocs.length === 0));
  });

  test('empty continuation line warning names the rule and the line', () => {
    const p = parseDockerfile('FROM x\nRUN a \\\n\n  b\n');
    assert.equal(p.warnings.length, 1);
    const w = p.warnings[0]!;
    assert.equal(w.rule, 'NoEmptyContinuation');
    assert.equal(w.message, 'Empty continuation line found in: RUN a   b');
    assert.equal(w.range.startLine, 4);
  });

  test('exec form is flagged as json', () => {
    const p = parseDockerfile('FROM x\nCMD ["a"]\nCMD a\nHEALTHCHECK CMD ["b"]\n');
    assert.deepEqual(p.instructions.map((n) => n.json), [false, true, false, true]);
  });

  test('lines are kept for snippets without line endings', () => {
    const p = parseDockerfile('FROM x\r\nRUN y\n');
    assert.deepEqual(p.lines, ['FROM x', 'RUN y']);
  });
});
