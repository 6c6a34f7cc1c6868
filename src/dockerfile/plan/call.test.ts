import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../parser/index.js';
import { callCheck, callCheckText, callOutline, callTargets, formatCheck, formatOutline, formatTargets, parseCheckDirective, ruleUrl } from './index.js';

const AMD64 = { os: 'linux', architecture: 'amd64' };
const parse = (text: string) => parseDockerfile(text, { file: 'Dockerfile' });

const MULTI = `ARG GO_VERSION=1.22
# GO_VERSION is not this comment's subject
ARG UNUSED_GLOBAL=x

# base prepares the toolchain
FROM golang:\${GO_VERSION} AS base

FROM base AS build
# TAGS build tags to pass to go build
ARG TAGS="netgo osusergo"
ARG GO_VERSION
RUN --mount=type=secret,id=netrc,required=true --mount=type=ssh go build

# release the final image
FROM scratch AS release
COPY --from=build /out /
RUN --mount=type=secret,id=netrc true
`;

test('--call=targets lists named stages with their descriptions and the default', () => {
  const t = callTargets(parse(MULTI));
  assert.deepEqual(t.map((x) => [x.name, x.description, x.isDefault, x.base]), [
    ['base', 'prepares the toolchain', false, 'golang:${GO_VERSION}'],
    ['build', undefined, false, 'base'],
    ['release', 'the final image', true, 'scratch'],
  ]);
  assert.equal(
    formatTargets(t),
    'TARGET              DESCRIPTION\nbase                prepares the toolchain\nbuild\nrelease (default)   the final image\n',
  );
});

test('--call=outline lists the args, secrets and ssh mounts the target needs', () => {
  const o = callOutline(parse(MULTI), { buildPlatform: AMD64, env: {}, buildArgs: { TAGS: 'custom' } });
  assert.deepEqual(o.target, { index: 2, name: 'release', description: 'the final image' });
  assert.deepEqual(o.args.map((a) => [a.name, a.value, a.description]), [
    ['GO_VERSION', '1.22', undefined],
    ['TAGS', 'custom', 'build tags to pass to go build'],
  ]);
  assert.deepEqual(o.secrets.map((s) => [s.id, s.required]), [['netrc', true]]);
  assert.deepEqual(o.ssh.map((s) => [s.id, s.required]), [['default', false]]);
  const text = formatOutline(o);
  assert.match(text, /^TARGET:      release\nDESCRIPTION: the final image\n/);
  assert.match(text, /\nTAGS         custom   build tags to pass to go build\n/);
  assert.match(text, /\nSECRET   REQUIRED\nnetrc    true\n/);
  const build = callOutline(parse(MULTI), { buildPlatform: AMD64, env: {}, target: 'build' });
  assert.deepEqual(build.args.map((a) => [a.name, a.value]), [['GO_VERSION', '1.22'], ['TAGS', 'netgo osusergo']]);
});

function rules(text: string, opts = {}): string[] {
  return callCheck(parse(text), { buildPlatform: AMD64, env: {}, ...opts }).warnings.map((w) => w.rule);
}

test('--call=check reports BuildKit lint rules', () => {
  const cases: Array<[string, string[]]> = [
    ['FROM alpine AS Build\n', ['StageNameCasing']],
    ['FROM alpine as build\n', ['FromAsCasing']],
    ['from alpine AS build\n', ['FromAsCasing']],
    ['FROM alpine\nrun true\nRUN true\n', ['ConsistentInstructionCasing']],
    ['FROM alpine\nCMD echo hi\nENTRYPOINT ["a"]\n', ['JSONArgsRecommended']],
    ['FROM alpine\nMAINTAINER me\n', ['MaintainerDeprecated']],
    ['FROM alpine:$VERSION\n', ['UndefinedArgInFrom', 'InvalidDefaultArgInFrom']],
    ['ARG VERSION\nFROM alpine:$VERSION\n', ['InvalidDefaultArgInFrom']],
    ['ARG VERSION=3\nFROM alpine:$VERSION\n', []],
    ['FROM alpine\nWORKDIR app\nWORKDIR sub\n', ['WorkdirRelativePath']],
    ['FROM alpine\nARG API_TOKEN\nENV DB_PASSWORD=x\nARG PUBLIC_KEY\nARG TOKENIZER\n', ['SecretsUsedInArgOrEnv', 'SecretsUsedInArgOrEnv']],
    ['FROM alpine\nENV A b\nLABEL x y\n', ['LegacyKeyValueFormat', 'LegacyKeyValueFormat']],
    ['FROM alpine\nCMD ["a"]\nCMD ["b"]\n', ['MultipleInstructionsDisallowed']],
    ['FROM --platform=$TARGETPLATFORM alpine\n', ['RedundantTargetPlatform']],
    ['FROM --platform=linux/amd64 alpine\n', ['FromPlatformFlagConstDisallowed']],
    ['FROM alpine\nEXPOSE 80/TCP\n', ['ExposeProtoCasing']],
    ['FROM alpine AS scratch\n', ['ReservedStageName']],
    ['FROM scratch\nENV A=1\nWORKDIR /$A/$B\n', ['UndefinedVar']],
    ['FROM scratch\nARG B\nWORKDIR /$B\n', []],
    ['FROM alpine\nWORKDIR /$B\n', []],
    ['FROM alpine\nRUN echo \\\n\n  hi\n', ['NoEmptyContinuation']],
  ];
  for (const [text, want] of cases) assert.deepEqual(rules(text).sort(), [...want].sort(), text);
});

test('UndefinedVar uses base image ENV when the caller knows it and suggests close names', () => {
  const text = 'FROM alpine\nWORKDIR $HOME/$HOEM\n';
  const r = callCheck(parse(text), { buildPlatform: AMD64, env: {}, imageEnv: (ref) => (ref === 'alpine' ? ['HOME=/root', 'PATH=/bin'] : undefined) });
  assert.deepEqual(r.warnings.map((w) => w.message), ["Usage of undefined variable '$HOEM' (did you mean $HOME?)"]);
  assert.equal(r.warnings[0]!.range?.startLine, 2);
});

test('check directives skip rules and turn warnings into failure', () => {
  assert.deepEqual(parseCheckDirective('skip=JSONArgsRecommended,StageNameCasing;error=true'), { skip: ['JSONArgsRecommended', 'StageNameCasing'], error: true });
  const text = '# check=skip=JSONArgsRecommended;error=true\nFROM alpine AS Build\nCMD x\n';
  const r = callCheck(parse(text), { buildPlatform: AMD64, env: {} });
  assert.deepEqual(r.warnings.map((w) => w.rule), ['StageNameCasing']);
  assert.equal(r.failed, true);
  const all = callCheck(parse('# check=skip=all\nFROM alpine AS Build\n'), { buildPlatform: AMD64, env: {} });
  assert.deepEqual([all.warnings.length, all.failed], [0, false]);
  const viaArg = callCheck(parse('FROM alpine AS Build\n'), { buildPlatform: AMD64, env: {}, buildArgs: { BUILDKIT_DOCKERFILE_CHECK: 'skip=StageNameCasing' } });
  assert.equal(viaArg.warnings.length, 0);
});

test('check collects errors instead of throwing, and formats a report', () => {
  const r = callCheck(parse('FROM alpine\nCOPY --bogus a b\n'), { buildPlatform: AMD64, env: {} });
  assert.equal(r.failed, true);
  assert.equal(r.errors.length, 1);
  assert.match(r.errors[0]!.message, /^Dockerfile:2:1: unknown flag: --bogus/);
  assert.equal(r.errors[0]!.range?.startLine, 2);
  const dup = callCheck(parse('FROM a AS x\nFROM b AS x\n'), { buildPlatform: AMD64, env: {} });
  assert.deepEqual(dup.warnings.map((w) => w.rule), ['DuplicateStageName']);
  const lines = 'FROM alpine as build\n'.split('\n');
  const text = formatCheck(callCheck(parse('FROM alpine as build\n'), { buildPlatform: AMD64, env: {} }), lines);
  assert.equal(
    text,
    "WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n'as' and 'FROM' keywords' casing do not match\nDockerfile:1\n>>> FROM alpine as build\n\nCheck complete, 1 warning and 0 errors found.\n",
  );
  assert.equal(ruleUrl('JSONArgsRecommended'), 'https://docs.docker.com/go/dockerfile/rule/json-args-recommended/');
});

test('callCheckText reports syntax errors as check errors', () => {
  const bad = callCheckText('FROM alpine\nCMD [ "echo", [ "nested json" ] ]\n', { buildPlatform: AMD64, env: {} });
  assert.equal(bad.failed, true);
  assert.equal(bad.errors[0]!.code, 'DOCKERFILE_SYNTAX');
  assert.equal(bad.errors[0]!.range?.startLine, 2);
  const good = callCheckText('FROM alpine AS Build\n', { buildPlatform: AMD64, env: {}, file: 'x/Dockerfile' });
  assert.deepEqual([good.failed, good.warnings[0]!.range?.file], [false, 'x/Dockerfile']);
});

test('check also reports plan warnings (unused build args, stage name typos)', () => {
  const r = callCheck(parse('FROM a AS builder\nFROM b\nCOPY --from=buidler /x /x\n'), { buildPlatform: AMD64, env: {}, buildArgs: { NOPE: '1' } });
  assert.deepEqual(r.warnings.map((w) => w.rule), ['StageNameTypo', 'UnusedBuildArg']);
  assert.match(formatCheck(r), /^WARNING: StageNameTypo\nCOPY --from=buidler refers to an image/);
});

test('CopyIgnoredFile flags context sources the .dockerignore excludes', async () => {
  const { IgnoreMatcher } = await import('../ignore/index.js');
  const ignore = new IgnoreMatcher(['secret.key', 'docs', '!docs/keep.md']);
  const text = 'FROM a AS b\nFROM c\nCOPY secret.key docs/keep.md /x/\nADD ./docs/a.md https://example.com/f /y/\nCOPY --from=b secret.key /z\nCOPY $V /w\n';
  const r = callCheck(parse(text), { buildPlatform: AMD64, env: {}, ignore });
  assert.deepEqual(r.warnings.map((w) => [w.rule, w.message, w.range?.startLine]), [
    ['CopyIgnoredFile', 'Attempting to Copy file "secret.key" that is excluded by .dockerignore', 3],
    ['CopyIgnoredFile', 'Attempting to Add file "./docs/a.md" that is excluded by .dockerignore', 4],
  ]);
});
