import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../parser/index.js';
import { parseInstruction, splitCsvRecord, type Instruction } from './index.js';

/** Parses a one-instruction Dockerfile (after a FROM when needed) and returns the typed last one. */
function one(line: string): Instruction {
  const parsed = parseDockerfile(line + '\n', { file: 'Dockerfile' });
  return parseInstruction(parsed.instructions[parsed.instructions.length - 1]!);
}

function strip(i: Instruction): Record<string, unknown> {
  const { node: _node, ...rest } = i as Instruction & Record<string, unknown>;
  if (rest.kind === "onbuild") (rest as Record<string, unknown>).trigger = strip(rest.trigger as Instruction);
  if ('heredocs' in rest && (rest.heredocs as unknown[]).length === 0) delete rest.heredocs;
  return rest;
}

const VALID: Array<[string, Record<string, unknown>]> = [
  ['FROM busybox', { kind: 'from', image: 'busybox' }],
  ['FROM --platform=$BUILDPLATFORM golang:1.22 AS Build', {
    kind: 'from', image: 'golang:1.22', platform: '$BUILDPLATFORM', stageName: 'build', stageNameAsWritten: 'Build', asKeyword: 'AS',
  }],
  ['ARG A B=2 C="x y"', { kind: 'arg', args: [{ key: 'A' }, { key: 'B', value: '2' }, { key: 'C', value: '"x y"' }] }],
  ['ENV a=b c="d e"', { kind: 'env', pairs: [{ key: 'a', value: 'b', legacy: false }, { key: 'c', value: '"d e"', legacy: false }] }],
  ['ENV PATH /usr/bin:/bin', { kind: 'env', pairs: [{ key: 'PATH', value: '/usr/bin:/bin', legacy: true }] }],
  ['LABEL org.opencontainers.image.title="app"', { kind: 'label', pairs: [{ key: 'org.opencontainers.image.title', value: '"app"', legacy: false }] }],
  ['RUN echo hi', { kind: 'run', command: { args: ['echo hi'], shell: true }, mountSpecs: [], mounts: [] }],
  ['RUN ["echo", "hi"]', { kind: 'run', command: { args: ['echo', 'hi'], shell: false }, mountSpecs: [], mounts: [] }],
  ['RUN --network=none --security=insecure true', {
    kind: 'run', command: { args: ['true'], shell: true }, mountSpecs: [], mounts: [], network: 'none', security: 'insecure',
  }],
  ['RUN --mount=type=cache,target=/root/.cache,sharing=locked,id=pip,mode=0755,uid=1000 pip install', {
    kind: 'run', command: { args: ['pip install'], shell: true },
    mountSpecs: ['type=cache,target=/root/.cache,sharing=locked,id=pip,mode=0755,uid=1000'],
    mounts: [{ type: 'cache', target: '/root/.cache', readOnly: false, required: false, sharing: 'locked', id: 'pip', mode: 0o755, uid: 1000 }],
  }],
  ['RUN --mount=type=secret,id=npmrc,required,env=NPM_TOKEN --mount=from=build,source=/out,target=/in,rw --mount=type=tmpfs,target=/t,size=64m x', {
    kind: 'run', command: { args: ['x'], shell: true },
    mountSpecs: ['type=secret,id=npmrc,required,env=NPM_TOKEN', 'from=build,source=/out,target=/in,rw', 'type=tmpfs,target=/t,size=64m'],
    mounts: [
      { type: 'secret', id: 'npmrc', required: true, env: 'NPM_TOKEN', readOnly: true },
      { type: 'bind', from: 'build', source: '/out', target: '/in', readOnly: false, required: false },
      { type: 'tmpfs', target: '/t', size: 64 * 1024 * 1024, readOnly: false, required: false },
    ],
  }],
  ['RUN --mount=type=secret,target=/root/.npmrc cat', {
    kind: 'run', command: { args: ['cat'], shell: true }, mountSpecs: ['type=secret,target=/root/.npmrc'],
    mounts: [{ type: 'secret', target: '/root/.npmrc', id: '.npmrc', readOnly: true, required: false }],
  }],
  ['RUN --mount=type=ssh git clone x', {
    kind: 'run', command: { args: ['git clone x'], shell: true }, mountSpecs: ['type=ssh'],
    mounts: [{ type: 'ssh', id: 'default', readOnly: true, required: false }],
  }],
  ['CMD ["node", "app.js"]', { kind: 'cmd', command: { args: ['node', 'app.js'], shell: false } }],
  ['CMD []', { kind: 'cmd', command: { args: [], shell: false } }],
  ['ENTRYPOINT exec app', { kind: 'entrypoint', command: { args: ['exec app'], shell: true } }],
  ['SHELL ["/bin/bash", "-o", "pipefail", "-c"]', { kind: 'shell', shell: ['/bin/bash', '-o', 'pipefail', '-c'] }],
  ['COPY --from=build --chown=1000:1000 --chmod=0755 --link --parents --exclude=*.md --exclude=*.txt a b /dst/', {
    kind: 'copy', sources: ['a', 'b'], contents: [], dest: '/dst/', from: 'build', chown: '1000:1000', chmod: '0755',
    link: true, parents: true, excludes: ['*.md', '*.txt'],
  }],
  ['COPY --link=false ["a b", "/c d/"]', { kind: 'copy', sources: ['a b'], contents: [], dest: '/c d/', link: false, parents: false, excludes: [] }],
  ['ADD --checksum=sha256:abc --keep-git-dir=true --unpack=false --link https://x/y.tar.gz /opt/', {
    kind: 'add', sources: ['https://x/y.tar.gz'], contents: [], dest: '/opt/', checksum: 'sha256:abc', keepGitDir: true,
    unpack: false, link: true, excludes: [],
  }],
  ['HEALTHCHECK NONE', { kind: 'healthcheck', health: { test: ['NONE'] } }],
  ['HEALTHCHECK --interval=30s --timeout=1m30s --start-period=5s --start-interval=500ms --retries=3 CMD curl -f http://localhost/', {
    kind: 'healthcheck',
    health: { test: ['CMD-SHELL', 'curl -f http://localhost/'], interval: 30e9, timeout: 90e9, startPeriod: 5e9, startInterval: 5e8, retries: 3 },
  }],
  ['HEALTHCHECK CMD ["/bin/check", "-q"]', { kind: 'healthcheck', health: { test: ['CMD', '/bin/check', '-q'] } }],
  ['EXPOSE 80 53/udp 8000-8010/tcp', { kind: 'expose', ports: ['80', '53/udp', '8000-8010/tcp'] }],
  ['USER app:app', { kind: 'user', user: 'app:app' }],
  ['WORKDIR /app', { kind: 'workdir', path: '/app' }],
  ['VOLUME ["/data", "/logs"]', { kind: 'volume', volumes: ['/data', '/logs'] }],
  ['VOLUME /data /logs', { kind: 'volume', volumes: ['/data', '/logs'] }],
  ['STOPSIGNAL SIGQUIT', { kind: 'stopsignal', signal: 'SIGQUIT' }],
  ['MAINTAINER someone <a@b.c>', { kind: 'maintainer', maintainer: 'someone <a@b.c>' }],
  ['ONBUILD COPY . /app', {
    kind: 'onbuild', expression: 'COPY . /app',
    trigger: { kind: 'copy', sources: ['.'], contents: [], dest: '/app', link: false, parents: false, excludes: [] },
  }],
];

test('instructions are typed with every flag BuildKit accepts', () => {
  for (const [line, want] of VALID) assert.deepEqual(strip(one(line)), want, line);
});

test('COPY heredoc sources become file contents', () => {
  const parsed = parseDockerfile('FROM x\nCOPY <<EOF <<-"RAW" /dest/\nhello $A\nEOF\n\tquoted $B\nRAW\n', { file: 'Dockerfile' });
  const inst = parseInstruction(parsed.instructions[1]!);
  assert.equal(inst.kind, 'copy');
  if (inst.kind !== 'copy') return;
  assert.deepEqual(inst.sources, []);
  assert.deepEqual(inst.contents.map((c) => [c.path, c.expand]), [['EOF', true], ['RAW', false]]);
  assert.equal(inst.contents[0]!.data, 'hello $A\n');
});

const INVALID: Array<[string, RegExp]> = [
  ['RUNN echo', /^Dockerfile:1:1: unknown instruction: RUNN \(did you mean RUN\?\)$/],
  ['COPPY a b', /unknown instruction: COPPY \(did you mean COPY\?\)/],
  ['FROMX busybox', /unknown instruction: FROMX \(did you mean FROM\?\)/],
  ['XYZZY a', /^Dockerfile:1:1: unknown instruction: XYZZY$/],
  ['COPY --zzzzzz=bar a b', /^Dockerfile:1:1: unknown flag: --zzzzzz$/],
  ['COPY --form=build a b', /unknown flag: --form \(did you mean --from\?\)/],
  ['COPY --from a b', /missing a value on flag: --from/],
  ['COPY --link=maybe a b', /expecting boolean value for flag --link, not: maybe/],
  ['COPY --link= a b', /missing a value on flag: --link/],
  ['COPY --from=a --from=b a b', /duplicate flag specified: --from/],
  ['COPY a', /COPY requires at least two arguments/],
  ['ADD --parents a b', /unknown flag: --parents/],
  ['RUN --network=bridge true', /unsupported network mode "bridge"/],
  ['RUN --security=privileged true', /unsupported security mode "privileged"/],
  ['RUN --mount=type=cahce,target=/x true', /unsupported mount type "cahce" \(did you mean cache\?\)/],
  ['RUN --mount=type=bind,target=/x,sharing=locked true', /invalid cache sharing set for bind mount/],
  ['RUN --mount=type=cache,target=/x,sharing=weird true', /unsupported sharing value "weird"/],
  ['RUN --mount=type=bind,target=/x,mode=0644 true', /mode not allowed for "bind" type mounts/],
  ['RUN --mount=type=cache,target=/x,required true', /unexpected key 'required' for mount type 'cache'/],
  ['RUN --mount=type=secret,from=x,id=y true', /secret mount should not have a from/],
  ['RUN --mount=type=secret true', /invalid secret mount/],
  ['RUN --mount=type=cache true', /mount type cache requires a target/],
  ['RUN --mount=type=cache,target=/x,mode=99 true', /invalid value 99 for mode/],
  ['RUN --mount=type=cache,target=/x,tagret=/y true', /unexpected key 'tagret' in 'tagret=\/y' \(did you mean target\?\)/],
  ['RUN --mount=type=bind,from=$STAGE,target=/x true', /'from' doesn't support variable expansion/],
  ['RUN --mount=type=bind,target=/x', /RUN requires at least one argument/],
  ['FROM a b', /FROM requires either one or three arguments/],
  ['FROM a AS 1st', /invalid name for build stage: "1st"/],
  ['FROM a AS b$c', /invalid name for build stage/],
  ['SHELL /bin/sh -c', /SHELL requires the arguments to be in JSON form/],
  ['HEALTHCHECK CONNECT TCP 7000', /Unknown type "CONNECT" in HEALTHCHECK/],
  ['HEALTHCHECK NONE extra', /HEALTHCHECK NONE takes no arguments/],
  ['HEALTHCHECK --interval=1us CMD x', /Interval "interval" cannot be less than 1ms/],
  ['HEALTHCHECK --interval=5 CMD x', /invalid duration "5"/],
  ['HEALTHCHECK --retries=-1 CMD x', /--retries cannot be negative \(-1\)/],
  ['HEALTHCHECK --retires=1 CMD x', /unknown flag: --retires \(did you mean --retries\?\)/],
  ['EXPOSE 80/icmp', /invalid proto: icmp/],
  ['EXPOSE http', /invalid containerPort: http/],
  ['STOPSIGNAL SIGFOO', /invalid signal: SIGFOO/],
  ['ONBUILD ONBUILD RUN x', /Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed/],
  ['ONBUILD FROM x', /FROM isn't allowed as an ONBUILD trigger/],
  ['ONBUILD MAINTAINER x', /MAINTAINER isn't allowed as an ONBUILD trigger/],
  ['WORKDIR --foo /x', /unknown flag: --foo/],
];

test('invalid instructions are located DOCKERFILE_INVALID errors', () => {
  for (const [line, re] of INVALID) {
    assert.throws(
      () => one(line),
      (e: any) =>
        e.code === 'DOCKERFILE_INVALID' && re.test(e.message.split('\n')[0]) && e.details.line === 1 && e.message.endsWith(`\n  1 | ${line}`),
      line,
    );
  }
});

test('error location points at the instruction line and column', () => {
  const parsed = parseDockerfile('FROM x\n\n   COPY --bogus a b\n', { file: 'build/Dockerfile' });
  assert.throws(
    () => parseInstruction(parsed.instructions[1]!),
    (e: any) =>
      e.message === 'build/Dockerfile:3:4: unknown flag: --bogus\n  3 | COPY --bogus a b' &&
      e.hint.includes('--from') &&
      e.details.line === 3 &&
      e.details.column === 4,
  );
});

test('mount values are CSV records like Go encoding/csv reads them', () => {
  const ok: Array<[string, string[]]> = [
    ['type=bind,target=/x', ['type=bind', 'target=/x']],
    ['"src=a,b",target=/x', ['src=a,b', 'target=/x']],
    ['"say ""hi""",x', ['say "hi"', 'x']],
    ['a,,b', ['a', '', 'b']],
  ];
  for (const [input, want] of ok) assert.deepEqual(splitCsvRecord(input), want, input);
  for (const bad of ['"unterminated', 'a"b', '"a"b']) assert.throws(() => splitCsvRecord(bad), /failed to parse csv mounts/, bad);
});

test('EXPOSE specs become port/proto keys', async () => {
  const { exposedPortKeys } = await import('./index.js');
  const cases: Array<[string, string[]]> = [
    ['80', ['80/tcp']],
    ['53/UDP', ['53/udp']],
    ['8000-8002/tcp', ['8000/tcp', '8001/tcp', '8002/tcp']],
    ['127.0.0.1:8080:80', ['80/tcp']],
    ['132/sctp', ['132/sctp']],
  ];
  for (const [spec, want] of cases) assert.deepEqual(exposedPortKeys(spec), want, spec);
  for (const bad of ['70000', '10-5', 'x/tcp', '80/icmp']) assert.throws(() => exposedPortKeys(bad), Error, bad);
});

test('Go durations parse like time.ParseDuration', async () => {
  const { parseGoDuration } = await import('./index.js');
  const cases: Array<[string, number]> = [['0', 0], ['30s', 30e9], ['1m30s', 90e9], ['1.5h', 5400e9], ['500ms', 5e8], ['10us', 1e4], ['-2s', -2e9]];
  for (const [text, ns] of cases) assert.equal(parseGoDuration(text), ns, text);
  for (const bad of ['', '5', 's', '1d', '1.5.3s']) assert.throws(() => parseGoDuration(bad), /invalid duration/, bad);
});
