/**
 * Parse-tree node -> typed instruction, with BuildKit's argument and flag rules. Values stay as
 * written; variables are expanded later (expand.ts) once ARG/ENV values are known.
 */
import type { GantryError } from '../../util/errors.js';
import type { Heredoc, InstructionNode } from '../parser/types.js';
import { chompHeredocContent, parseHeredocWord } from '../parser/heredoc.js';
import { instructionError, InvalidInstruction } from './errors.js';
import { parseFlags } from './flags.js';
import { parseMount } from './mounts.js';
import { closest } from './suggest.js';
import {
  INSTRUCTION_KEYWORDS,
  type AddInstruction,
  type CommandLine,
  type CopyInstruction,
  type HealthConfig,
  type Instruction,
  type KeyValue,
  type RunNetwork,
  type RunSecurity,
  type SourceContent,
} from './types.js';
import { checkSignal, MIN_HEALTH_DURATION_NS, parseGoDuration, parsePortSpec } from './values.js';

const VALID_STAGE_NAME = /^[a-z][a-z0-9\-_.]*$/;

/**
 * Heredoc bodies as instructions use them: `<<-` bodies lose their leading tabs here, once, since
 * the parse tree keeps them as written (BuildKit strips them at dispatch).
 */
function bodies(heredocs: readonly Heredoc[]): Heredoc[] {
  return heredocs.map((h) => (h.chomp ? { ...h, content: chompHeredocContent(h.content) } : h));
}

/**
 * Converts one parse-tree node. Throws GantryError('DOCKERFILE_INVALID') with `file:line:col`,
 * the instruction text and a hint.
 */
export function parseInstruction(node: InstructionNode): Instruction {
  try {
    return parseNode(node);
  } catch (err) {
    if (err instanceof InvalidInstruction) throw instructionError(node, err.message, err.hint);
    throw err;
  }
}

/** Unknown keyword: suggests the closest one (`RUNN` -> RUN). */
export function unknownInstructionError(node: InstructionNode): GantryError {
  const word = node.keyword.toUpperCase();
  const guess = closest(word, INSTRUCTION_KEYWORDS, false);
  return instructionError(
    node,
    `unknown instruction: ${word}` + (guess ? ` (did you mean ${guess}?)` : ''),
    `valid instructions are ${INSTRUCTION_KEYWORDS.join(', ')}`,
  );
}

function parseNode(node: InstructionNode): Instruction {
  const { args, flags } = node;
  switch (node.keyword.toLowerCase()) {
    case 'from': {
      const f = parseFlags(flags, { platform: 'string' });
      if (args.length !== 1 && !(args.length === 3 && args[1]!.toLowerCase() === 'as')) {
        throw new InvalidInstruction('FROM requires either one or three arguments', 'write FROM <image> [AS <name>]');
      }
      const inst: Instruction = { kind: 'from', node, image: args[0]! };
      if (f.platform !== undefined) inst.platform = f.platform;
      if (args.length === 3) {
        const name = args[2]!.toLowerCase();
        if (!VALID_STAGE_NAME.test(name)) {
          throw new InvalidInstruction(
            `invalid name for build stage: "${args[2]}", name can't start with a number or contain symbols`,
            'stage names start with a letter and contain only letters, digits, -, _ and .',
          );
        }
        inst.stageName = name;
        inst.stageNameAsWritten = args[2]!;
        inst.asKeyword = args[1]!;
      }
      return inst;
    }
    case 'arg': {
      parseFlags(flags, {});
      if (args.length === 0) throw new InvalidInstruction('ARG requires at least one argument');
      return {
        kind: 'arg',
        node,
        args: args.map((a) => {
          const eq = a.indexOf('=');
          if (eq < 0) return { key: a };
          if (eq === 0) throw new InvalidInstruction('ARG names can not be blank');
          return { key: a.slice(0, eq), value: a.slice(eq + 1) };
        }),
      };
    }
    case 'env':
      parseFlags(flags, {});
      return { kind: 'env', node, pairs: keyValues(args, 'ENV') };
    case 'label':
      parseFlags(flags, {});
      return { kind: 'label', node, pairs: keyValues(args, 'LABEL') };
    case 'maintainer':
      parseFlags(flags, {});
      return { kind: 'maintainer', node, maintainer: exactlyOne(args, 'MAINTAINER') };
    case 'workdir':
      parseFlags(flags, {});
      return { kind: 'workdir', node, path: exactlyOne(args, 'WORKDIR') };
    case 'user':
      parseFlags(flags, {});
      return { kind: 'user', node, user: exactlyOne(args, 'USER') };
    case 'stopsignal': {
      parseFlags(flags, {});
      const signal = exactlyOne(args, 'STOPSIGNAL');
      if (!signal.includes('$')) checkSignal(signal);
      return { kind: 'stopsignal', node, signal };
    }
    case 'expose': {
      parseFlags(flags, {});
      if (args.length === 0) throw new InvalidInstruction('EXPOSE requires at least one argument');
      for (const p of args) if (!p.includes('$')) parsePortSpec(p);
      return { kind: 'expose', node, ports: [...args] };
    }
    case 'volume': {
      parseFlags(flags, {});
      if (args.length === 0) throw new InvalidInstruction('VOLUME requires at least one argument');
      const volumes = args.map((v) => v.trim());
      if (volumes.some((v) => v === '')) throw new InvalidInstruction('VOLUME specified can not be an empty string');
      return { kind: 'volume', node, volumes };
    }
    case 'shell': {
      parseFlags(flags, {});
      if (!node.json) {
        throw new InvalidInstruction('SHELL requires the arguments to be in JSON form', 'write SHELL ["/bin/bash", "-c"]');
      }
      if (args.length === 0) throw new InvalidInstruction('SHELL requires at least one argument');
      return { kind: 'shell', node, shell: [...args] };
    }
    case 'run': {
      const f = parseFlags(flags, { mount: 'strings', network: 'string', security: 'string' });
      const mountSpecs = f.mount ?? [];
      const inst: Instruction = {
        kind: 'run',
        node,
        command: commandLine(node),
        mountSpecs,
        mounts: mountSpecs.map((s) => parseMount(s)),
        heredocs: bodies(node.heredocs),
      };
      if (f.network !== undefined) inst.network = oneOf<RunNetwork>('network mode', f.network, ['default', 'none', 'host']);
      if (f.security !== undefined) inst.security = oneOf<RunSecurity>('security mode', f.security, ['sandbox', 'insecure']);
      if (inst.command.args.length === 0 && node.heredocs.length === 0) {
        throw new InvalidInstruction('RUN requires at least one argument');
      }
      return inst;
    }
    case 'cmd':
      parseFlags(flags, {});
      return { kind: 'cmd', node, command: commandLine(node), heredocs: bodies(node.heredocs) };
    case 'entrypoint':
      parseFlags(flags, {});
      return { kind: 'entrypoint', node, command: commandLine(node), heredocs: bodies(node.heredocs) };
    case 'copy': {
      const f = parseFlags(flags, {
        from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'strings',
      });
      const inst: CopyInstruction = {
        kind: 'copy',
        node,
        ...sourcesAndDest(node, 'COPY'),
        link: f.link ?? false,
        parents: f.parents ?? false,
        excludes: f.exclude ?? [],
      };
      if (f.from !== undefined) inst.from = f.from;
      if (f.chown !== undefined) inst.chown = f.chown;
      if (f.chmod !== undefined) inst.chmod = f.chmod;
      return inst;
    }
    case 'add': {
      const f = parseFlags(flags, {
        chown: 'string', chmod: 'string', link: 'bool', 'keep-git-dir': 'bool', checksum: 'string', exclude: 'strings', unpack: 'bool',
      });
      const inst: AddInstruction = {
        kind: 'add',
        node,
        ...sourcesAndDest(node, 'ADD'),
        link: f.link ?? false,
        excludes: f.exclude ?? [],
      };
      if (f.chown !== undefined) inst.chown = f.chown;
      if (f.chmod !== undefined) inst.chmod = f.chmod;
      if (f['keep-git-dir'] !== undefined) inst.keepGitDir = f['keep-git-dir'];
      if (f.checksum !== undefined) inst.checksum = f.checksum;
      if (f.unpack !== undefined) inst.unpack = f.unpack;
      return inst;
    }
    case 'healthcheck':
      return { kind: 'healthcheck', node, health: healthcheck(node) };
    case 'onbuild': {
      parseFlags(flags, {});
      const inner = node.inner;
      if (!inner) throw new InvalidInstruction('ONBUILD requires at least one argument');
      const trigger = inner.keyword.toUpperCase();
      if (trigger === 'ONBUILD') throw new InvalidInstruction("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      if (trigger === 'MAINTAINER' || trigger === 'FROM') throw new InvalidInstruction(`${trigger} isn't allowed as an ONBUILD trigger`);
      if (!(INSTRUCTION_KEYWORDS as readonly string[]).includes(trigger)) throw unknownInstructionError(inner);
      let expression = node.original.replace(/^\s*ONBUILD\s*/i, '');
      const heredocs = bodies(node.heredocs.length ? node.heredocs : inner.heredocs);
      for (const h of heredocs) expression += '\n' + h.content + h.name;
      return { kind: 'onbuild', node, expression, trigger: parseInstruction(inner) };
    }
    default:
      throw unknownInstructionError(node);
  }
}

function exactlyOne(args: readonly string[], name: string): string {
  if (args.length !== 1 || args[0] === '') throw new InvalidInstruction(`${name} requires exactly one argument`);
  return args[0]!;
}

function oneOf<T extends string>(what: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new InvalidInstruction(`unsupported ${what} "${value}"`, `one of ${allowed.join(', ')}`);
  }
  return value as T;
}

/** ENV/LABEL arguments come as (name, value, separator) triples; separator "" = legacy form. */
function keyValues(args: readonly string[], name: string): KeyValue[] {
  if (args.length === 0) throw new InvalidInstruction(`${name} requires at least one argument`);
  if (args.length % 3 !== 0) throw new InvalidInstruction(`${name} must have two arguments`);
  const out: KeyValue[] = [];
  for (let i = 0; i < args.length; i += 3) {
    if (args[i] === '') throw new InvalidInstruction(`${name} names can not be blank`);
    out.push({ key: args[i]!, value: args[i + 1]!, legacy: args[i + 2] === '' });
  }
  return out;
}

function commandLine(node: InstructionNode): CommandLine {
  return { args: [...node.args], shell: !node.json };
}

function sourcesAndDest(node: InstructionNode, name: string): { sources: string[]; contents: SourceContent[]; dest: string } {
  const { args } = node;
  if (args.length < 2) {
    throw new InvalidInstruction(
      `${name} requires at least two arguments, but only one was provided. Destination could not be determined.`,
      `write ${name} <src>... <dest>`,
    );
  }
  const dest = args[args.length - 1]!;
  if (parseHeredocWord(dest)) throw new InvalidInstruction(`${name} cannot accept a heredoc as a destination`);
  const byName = new Map<string, Heredoc>(bodies(node.heredocs).map((h) => [h.name, h]));
  const sources: string[] = [];
  const contents: SourceContent[] = [];
  for (const src of args.slice(0, -1)) {
    const h = node.json ? null : parseHeredocWord(src);
    const body = h ? byName.get(h.name) : undefined;
    if (h && body) contents.push({ path: h.name, data: body.content, expand: body.expand });
    else sources.push(src);
  }
  return { sources, contents, dest };
}

function healthcheck(node: InstructionNode): HealthConfig {
  const { args } = node;
  if (args.length === 0) throw new InvalidInstruction('HEALTHCHECK requires at least one argument');
  const typ = args[0]!.toUpperCase();
  const rest = args.slice(1);
  if (typ === 'NONE') {
    // BuildKit does not look at flags for NONE.
    if (rest.length !== 0) throw new InvalidInstruction('HEALTHCHECK NONE takes no arguments');
    return { test: ['NONE'] };
  }
  const f = parseFlags(node.flags, {
    interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string',
  });
  if (typ !== 'CMD') throw new InvalidInstruction(`Unknown type "${typ}" in HEALTHCHECK (try CMD)`, 'write HEALTHCHECK [options] CMD <command> or HEALTHCHECK NONE');
  if (rest.length === 0 || (rest.length === 1 && rest[0] === '' && !node.json)) {
    throw new InvalidInstruction('Missing command after HEALTHCHECK CMD');
  }
  const health: HealthConfig = { test: node.json ? ['CMD', ...rest] : ['CMD-SHELL', ...rest] };
  const dur = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined || v === '') return undefined;
    const d = parseGoDuration(v);
    if (d === 0) return 0;
    if (d < MIN_HEALTH_DURATION_NS) throw new InvalidInstruction(`Interval "${flag}" cannot be less than 1ms`);
    return d;
  };
  const set = (k: 'interval' | 'timeout' | 'startPeriod' | 'startInterval', flag: string, v: string | undefined): void => {
    const d = dur(flag, v);
    if (d !== undefined) health[k] = d;
  };
  set('interval', 'interval', f.interval);
  set('timeout', 'timeout', f.timeout);
  set('startPeriod', 'start-period', f['start-period']);
  set('startInterval', 'start-interval', f['start-interval']);
  if (f.retries !== undefined && f.retries !== '') {
    if (!/^[+-]?\d+$/.test(f.retries)) throw new InvalidInstruction(`invalid value for --retries: ${f.retries}`);
    const r = Number(f.retries);
    if (r < 0) throw new InvalidInstruction(`--retries cannot be negative (${r})`);
    health.retries = r;
  }
  return health;
}
