/**
 * Variable expansion of typed instructions, as BuildKit does it: each expandable value is one
 * word for the shell lexer (quotes removed, `${VAR:-x}` applied). What is NOT expanded, on
 * purpose: RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK command text (the shell in the container
 * expands it), ONBUILD triggers (expanded when they run), stage names, `COPY --from` and
 * `RUN --mount from=` (BuildKit forbids variables there), `--network`/`--security`.
 */
import { GantryError } from '../../util/errors.js';
import type { EnvGetter, ShellLex } from '../shell/index.js';
import { ShellLex as Lexer } from '../shell/index.js';
import { formatLocation, instructionError, InvalidInstruction, locateError } from './errors.js';
import { parseMount } from './mounts.js';
import type { Instruction, KeyValue, SourceContent } from './types.js';
import { checkSignal, parsePortSpec } from './values.js';

export interface ExpandResult<T extends Instruction = Instruction> {
  instruction: T;
  /** Variables referenced and set (possibly empty). */
  matched: Set<string>;
  /** Variables referenced but unset: candidates for an UndefinedVar warning. */
  unmatched: Set<string>;
}

/** Instruction kinds whose values are expanded. */
export const EXPANDED_KINDS = new Set<Instruction['kind']>([
  'from', 'arg', 'env', 'label', 'copy', 'add', 'run', 'workdir', 'user', 'volume', 'stopsignal', 'expose',
]);

/**
 * Returns a copy of `inst` with its values expanded against `env` (for a stage instruction: the
 * ARG and ENV values in effect, base image ENV included; for FROM: the global ARGs). Lexer
 * errors (`${X:?required}`, bad syntax) become errors located at the instruction.
 */
export function expandInstruction<T extends Instruction>(inst: T, env: EnvGetter, lex: ShellLex): ExpandResult<T> {
  const matched = new Set<string>();
  const unmatched = new Set<string>();
  const word = (w: string): string => {
    if (!w.includes('$')) return stripQuotesOnly(w, env, lex, matched, unmatched);
    const r = lex.processWord(w, env);
    r.matched.forEach((n) => matched.add(n));
    r.unmatched.forEach((n) => unmatched.add(n));
    return r.result;
  };
  const words = (w: string): string[] => {
    const r = lex.processWords(w, env);
    r.matched.forEach((n) => matched.add(n));
    r.unmatched.forEach((n) => unmatched.add(n));
    return r.words;
  };
  // Heredoc bodies keep their quotes: they belong to the file being written.
  const raw = new Lexer('\\', { skipProcessQuotes: true });
  const content = (c: SourceContent): SourceContent => {
    if (!c.expand) return c;
    const r = raw.processWord(c.data, env);
    r.matched.forEach((n) => matched.add(n));
    r.unmatched.forEach((n) => unmatched.add(n));
    return { ...c, data: r.result };
  };
  const opt = (v: string | undefined): string | undefined => (v === undefined ? undefined : word(v));
  const kvs = (pairs: KeyValue[]): KeyValue[] => pairs.map((p) => ({ ...p, key: word(p.key), value: word(p.value) }));

  try {
    const out = expandOne(inst as Instruction, { word, words, content, opt, kvs });
    return { instruction: out as T, matched, unmatched };
  } catch (err) {
    if (err instanceof InvalidInstruction) throw instructionError(inst.node, err.message, err.hint);
    if (err instanceof GantryError && !err.message.startsWith(formatLocation(inst.node.range))) {
      throw locateError(err, inst.node);
    }
    throw err;
  }
}

/** Words without `$` still go through the lexer for quote and escape removal. */
function stripQuotesOnly(w: string, env: EnvGetter, lex: ShellLex, matched: Set<string>, unmatched: Set<string>): string {
  if (!/["'\\`]/.test(w)) return w;
  const r = lex.processWord(w, env);
  r.matched.forEach((n) => matched.add(n));
  r.unmatched.forEach((n) => unmatched.add(n));
  return r.result;
}

interface Expanders {
  word(w: string): string;
  words(w: string): string[];
  content(c: SourceContent): SourceContent;
  opt(v: string | undefined): string | undefined;
  kvs(p: KeyValue[]): KeyValue[];
}

function expandOne(inst: Instruction, x: Expanders): Instruction {
  switch (inst.kind) {
    case 'from': {
      const image = x.word(inst.image);
      if (image === '') {
        throw new InvalidInstruction(`base name (${inst.image}) should not be blank`, 'give the ARG used in FROM a default value or pass it with --build-arg');
      }
      const out = { ...inst, image };
      if (inst.platform !== undefined) out.platform = x.word(inst.platform);
      return out;
    }
    case 'arg':
      return {
        ...inst,
        args: inst.args.map((a) => (a.value === undefined ? { key: x.word(a.key) } : { key: x.word(a.key), value: x.word(a.value) })),
      };
    case 'env':
    case 'label':
      return { ...inst, pairs: x.kvs(inst.pairs) };
    case 'copy':
    case 'add': {
      const out = {
        ...inst,
        sources: inst.sources.map(x.word),
        contents: inst.contents.map(x.content),
        dest: x.word(inst.dest),
        excludes: inst.excludes.map(x.word),
      };
      if (inst.chown !== undefined) out.chown = x.word(inst.chown);
      if (inst.chmod !== undefined) out.chmod = x.word(inst.chmod);
      if (out.kind === 'add' && out.checksum !== undefined) out.checksum = x.word(out.checksum);
      return out;
    }
    case 'run':
      return { ...inst, mounts: inst.mountSpecs.map((s) => parseMount(s, x.word)) };
    case 'workdir':
      return { ...inst, path: x.word(inst.path) };
    case 'user':
      return { ...inst, user: x.word(inst.user) };
    case 'volume': {
      const volumes = inst.volumes.map(x.word);
      if (volumes.some((v) => v === '')) throw new InvalidInstruction('VOLUME specified can not be an empty string');
      return { ...inst, volumes };
    }
    case 'stopsignal': {
      const signal = x.word(inst.signal);
      checkSignal(signal);
      return { ...inst, signal };
    }
    case 'expose': {
      const ports = inst.ports.flatMap((p) => (p.includes('$') ? x.words(p) : [x.word(p)]));
      ports.forEach((p) => parsePortSpec(p));
      return { ...inst, ports };
    }
    default:
      return inst;
  }
}
