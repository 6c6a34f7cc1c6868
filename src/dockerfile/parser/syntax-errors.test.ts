import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GantryError } from '../../util/errors.js';
import { parseDockerfile } from './index.js';

interface ErrorCase {
  name: string;
  text: string;
  /** the message's first line, exactly */
  head: string;
  /** the quoted source line, if any */
  snippet?: string;
  line: number;
  column: number;
}

const cases: ErrorCase[] = [
  { name: 'empty file', text: '', head: 'Dockerfile:1:1: file with no instructions', line: 1, column: 1 },
  {
    name: 'only comments',
    text: '# one\n# two\n\n',
    head: 'Dockerfile:3:1: file with no instructions',
    line: 3,
    column: 1,
  },
  {
    name: 'ENV without a value',
    text: 'FROM busybox\n\n  ENV PATH\n',
    head: 'Dockerfile:3:3: ENV must have two arguments',
    snippet: '  3 |   ENV PATH',
    line: 3,
    column: 3,
  },
  {
    name: 'LABEL pair without =',
    text: 'FROM busybox\nLABEL a=b c\n',
    head: `Dockerfile:2:1: Syntax error - can't find = in "c". Must be of the form: name=value`,
    snippet: '  2 | LABEL a=b c',
    line: 2,
    column: 1,
  },
  {
    name: 'JSON array holding a non-string',
    text: 'FROM busybox\nCMD ["echo", 1]\n',
    head: 'Dockerfile:2:1: when using JSON array syntax, arrays must be comprised of strings only',
    snippet: '  2 | CMD ["echo", 1]',
    line: 2,
    column: 1,
  },
  {
    name: 'error in a continued instruction points at its first line',
    text: 'FROM busybox\nENV \\\n  PATH\n',
    head: 'Dockerfile:2:1: ENV must have two arguments',
    snippet: '  2 | ENV \\',
    line: 2,
    column: 1,
  },
  {
    name: 'unterminated heredoc',
    text: 'FROM busybox\nRUN <<EOF\necho hi\n',
    head: 'Dockerfile:2:1: unterminated heredoc EOF',
    snippet: '  2 | RUN <<EOF',
    line: 2,
    column: 1,
  },
  {
    name: 'repeated directive',
    text: '# escape=`\n# escape=\\\nFROM busybox\n',
    head: 'Dockerfile:2:1: only one escape parser directive can be used',
    snippet: '  2 | # escape=\\',
    line: 2,
    column: 1,
  },
  {
    name: 'invalid escape token',
    text: '# escape=x\nFROM busybox\n',
    head: "Dockerfile:1:1: invalid escape token 'x' does not match ` or \\",
    snippet: '  1 | # escape=x',
    line: 1,
    column: 1,
  },
  {
    name: 'line over the BuildKit limit',
    text: 'FROM busybox\nLABEL a=' + 'é'.repeat(40000) + '\n',
    head: 'Dockerfile:2:1: dockerfile line greater than max allowed size of 65535',
    line: 2,
    column: 1,
  },
];

describe('syntax errors carry file:line:col and the offending line', () => {
  for (const c of cases) {
    test(c.name, () => {
      assert.throws(
        () => parseDockerfile(c.text),
        (err: unknown) => {
          assert.ok(err instanceof GantryError);
          assert.equal(err.code, 'DOCKERFILE_SYNTAX');
          const [head, snippet] = err.message.split('\n');
          assert.equal(head, c.head);
          if (c.snippet !== undefined) assert.equal(snippet, c.snippet);
          assert.equal(err.details.file, 'Dockerfile');
          assert.equal(err.details.line, c.line);
          assert.equal(err.details.column, c.column);
          assert.equal(typeof err.hint, 'string', 'every syntax error says what to do');
          return true;
        },
      );
    });
  }

  test('the file name given by the caller is used', () => {
    assert.throws(
      () => parseDockerfile('FROM x\nENV A\n', { file: 'build/Dockerfile.prod' }),
      (err: unknown) => err instanceof GantryError && err.message.startsWith('build/Dockerfile.prod:2:1: ') && err.details.file === 'build/Dockerfile.prod',
    );
  });

  test('long offending lines are shortened in the message', () => {
    assert.throws(
      () => parseDockerfile('FROM x\nLABEL a=' + 'b'.repeat(70000) + '\n'),
      (err: unknown) => err instanceof GantryError && err.message.length < 400 && err.message.endsWith('…'),
    );
  });
});
