import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../parser/index.js';
import { envFromRecord, ShellLex } from '../shell/index.js';
import { expandInstruction, parseInstruction, type Instruction } from './index.js';

const ENV = envFromRecord({ V: '1.2', DIR: '/opt/app', USERNAME: 'app', EMPTY: '', PORTS: '80 443/tcp', SIG: 'SIGTERM', ID: 'pip' });
const lex = new ShellLex('\\');

function expand(line: string): { inst: Record<string, unknown>; unmatched: string[] } {
  const parsed = parseDockerfile(line + '\n', { file: 'Dockerfile' });
  const inst = parseInstruction(parsed.instructions[parsed.instructions.length - 1]!);
  const r = expandInstruction(inst, ENV, lex);
  const { node: _n, ...rest } = r.instruction as Instruction & Record<string, unknown>;
  return { inst: rest, unmatched: [...r.unmatched].sort() };
}

const CASES: Array<[string, Record<string, unknown>, string[]?]> = [
  ['FROM --platform=$BUILDPLATFORM golang:${V}-alpine AS b', { image: 'golang:1.2-alpine', platform: '' }, ['BUILDPLATFORM']],
  ['ENV A=$V B="x ${DIR}" C=\'$V\'', { pairs: [{ key: 'A', value: '1.2', legacy: false }, { key: 'B', value: 'x /opt/app', legacy: false }, { key: 'C', value: '$V', legacy: false }] }],
  ['ENV OLD $V and "quoted"', { pairs: [{ key: 'OLD', value: '1.2 and quoted', legacy: true }] }],
  ['LABEL "version"=$V', { pairs: [{ key: 'version', value: '1.2', legacy: false }] }],
  ['ARG X=${V}-${MISSING:-d} Y', { args: [{ key: 'X', value: '1.2-d' }, { key: 'Y' }] }, ['MISSING']],
  ['WORKDIR ${DIR}/src', { path: '/opt/app/src' }],
  ['USER ${USERNAME}:${GROUP}', { user: 'app:' }, ['GROUP']],
  ['VOLUME $DIR/data', { volumes: ['/opt/app/data'] }],
  ['STOPSIGNAL $SIG', { signal: 'SIGTERM' }],
  ['EXPOSE $PORTS 8080', { ports: ['80', '443/tcp', '8080'] }],
  ['COPY --chown=${USERNAME} --chmod=0${EMPTY}755 --from=build --exclude=*.$V src/$V "$DIR/x" $DIR/', {
    sources: ['src/1.2', '/opt/app/x'], contents: [], dest: '/opt/app/', from: 'build', chown: 'app', chmod: '0755',
    link: false, parents: false, excludes: ['*.1.2'],
  }],
  ['ADD --checksum=sha256:$V https://example.com/$V.tgz /x/', {
    sources: ['https://example.com/1.2.tgz'], contents: [], dest: '/x/', checksum: 'sha256:1.2', link: false, excludes: [],
  }],
];

test('instruction values are expanded like BuildKit does', () => {
  for (const [line, want, unmatched] of CASES) {
    const r = expand(line);
    for (const [k, v] of Object.entries(want)) assert.deepEqual(r.inst[k], v, `${line}: ${k}`);
    assert.deepEqual(r.unmatched, unmatched ?? [], `${line}: unmatched`);
  }
});

test('command text, SHELL, HEALTHCHECK, ONBUILD are never expanded', () => {
  for (const line of ['RUN echo $V', 'CMD ["echo", "$V"]', 'ENTRYPOINT echo $V', 'SHELL ["/bin/$V"]', 'HEALTHCHECK CMD check $V', 'ONBUILD RUN echo $V']) {
    const parsed = parseDockerfile(line + '\n', { file: 'Dockerfile' });
    const inst = parseInstruction(parsed.instructions[0]!);
    const r = expandInstruction(inst, ENV, lex);
    assert.deepEqual(r.instruction, inst, line);
    assert.equal(r.unmatched.size, 0, line);
  }
});

test('RUN --mount values are expanded and validated after expansion', () => {
  const parsed = parseDockerfile('RUN --mount=type=cache,id=$ID,target=${DIR}/cache,uid=${UID:-1000} x\n', { file: 'Dockerfile' });
  const inst = parseInstruction(parsed.instructions[0]!);
  assert.equal(inst.kind, 'run');
  const r = expandInstruction(inst, ENV, lex);
  assert.deepEqual(r.instruction.kind === 'run' && r.instruction.mounts, [
    { type: 'cache', id: 'pip', target: '/opt/app/cache', uid: 1000, readOnly: false, required: false, sharing: 'shared' },
  ]);
  const bad = parseInstruction(parseDockerfile('RUN --mount=type=cache,target=/c,uid=$USERNAME x\n').instructions[0]!);
  assert.throws(() => expandInstruction(bad, ENV, lex), (e: any) => e.message.split('\n')[0] === 'Dockerfile:1:1: invalid value app for uid');
});

test('heredoc COPY sources expand variables but keep quotes', () => {
  const parsed = parseDockerfile('COPY <<EOF <<"RAW" /x/\necho "$V" \'${DIR}\'\nEOF\nkeep $V\nRAW\n', { file: 'Dockerfile' });
  const r = expandInstruction(parseInstruction(parsed.instructions[0]!), ENV, lex);
  assert.equal(r.instruction.kind, 'copy');
  if (r.instruction.kind !== 'copy') return;
  assert.equal(r.instruction.contents[0]!.data, 'echo "1.2" \'/opt/app\'\n');
  assert.equal(r.instruction.contents[1]!.data, 'keep $V\n');
});

test('expansion errors are located at the instruction', () => {
  const cases: Array<[string, RegExp]> = [
    ['WORKDIR ${NOPE:?must be set}', /^Dockerfile:1:1: .*NOPE: must be set/],
    ['FROM ${EMPTY}', /^Dockerfile:1:1: base name \(\$\{EMPTY\}\) should not be blank/],
    ['EXPOSE ${V}', /invalid containerPort: 1.2/],
    ['STOPSIGNAL ${V}', /invalid signal: 1.2/],
  ];
  for (const [line, re] of cases) {
    const inst = parseInstruction(parseDockerfile(line + '\n', { file: 'Dockerfile' }).instructions[0]!);
    assert.throws(() => expandInstruction(inst, ENV, lex), (e: any) => re.test(e.message) && e.details.range?.startLine === 1, line);
  }
});
