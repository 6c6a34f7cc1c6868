/**
 * BuildKit's Dockerfile lint rules that can be decided from the Dockerfile alone (plus, for
 * UndefinedVar, base image ENV when the caller can supply it). Rule names, messages and docs
 * links follow BuildKit so users can look them up and skip them with `# check=skip=<rule>`.
 */
import type { InstructionNode, ParsedDockerfile, SourceRange } from '../parser/types.js';
import { closest } from '../instructions/suggest.js';
import type { Instruction } from '../instructions/types.js';
import { envFromMap } from '../shell/index.js';
import { cleanPath } from '../ignore/paths.js';
import { PLATFORM_ARG_NAMES } from './platform.js';
import type { BuildPlan } from './plan.js';
import { splitStages } from './plan.js';
import { PROXY_ARG_NAMES } from './scope.js';

export interface LintWarning {
  rule: string;
  message: string;
  /** BuildKit's docs page for the rule; empty for gantry's own plan warnings. */
  url: string;
  range?: SourceRange;
  /** The instruction text, for printing. */
  line?: string;
}

export const LINT_RULES = [
  'StageNameCasing', 'FromAsCasing', 'NoEmptyContinuation', 'ConsistentInstructionCasing', 'DuplicateStageName',
  'ReservedStageName', 'JSONArgsRecommended', 'MaintainerDeprecated', 'UndefinedArgInFrom', 'WorkdirRelativePath',
  'UndefinedVar', 'MultipleInstructionsDisallowed', 'LegacyKeyValueFormat', 'SecretsUsedInArgOrEnv',
  'RedundantTargetPlatform', 'FromPlatformFlagConstDisallowed', 'InvalidDefaultArgInFrom', 'ExposeProtoCasing',
  'CopyIgnoredFile',
] as const;

export function ruleUrl(rule: string): string {
  return `https://docs.docker.com/go/dockerfile/rule/${rule.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/([A-Z])([A-Z][a-z])/g, '$1-$2').toLowerCase()}/`;
}

export interface LintOptions {
  /** The build's .dockerignore matcher, for CopyIgnoredFile. */
  ignore?: { matches(path: string): boolean };
  /**
   * Base image ENV for UndefinedVar, when known (`KEY=value` list), or undefined to skip the
   * check for stages built on that image.
   */
  imageEnv?: (ref: string) => readonly string[] | undefined;
}

const SECRET_TOKENS = /(?:^|_)(?:apikey|auth|credential|credentials|key|password|pass|pword|passwd|secret|token)(?:_|$)/i;
const NOT_SECRET = /(?:^|_)public(?:_|$)/i;

function writtenKeyword(node: InstructionNode): string {
  return node.original.trimStart().split(/\s/, 1)[0] ?? node.keyword;
}

/** Runs the rules over a Dockerfile that parsed and planned. */
export function lintDockerfile(parsed: ParsedDockerfile, plan: BuildPlan | undefined, opts: LintOptions = {}): LintWarning[] {
  const out: LintWarning[] = [];
  const warn = (rule: string, message: string, node?: InstructionNode, range?: SourceRange): void => {
    const w: LintWarning = { rule, message, url: ruleUrl(rule) };
    const r = range ?? node?.range;
    if (r) w.range = r;
    if (node) w.line = node.original;
    out.push(w);
  };

  for (const w of parsed.warnings) warn(w.rule, w.message, undefined, w.range);

  // ConsistentInstructionCasing: compare with the majority.
  const nodes = parsed.instructions;
  let upper = 0;
  let lower = 0;
  for (const n of nodes) {
    const kw = writtenKeyword(n);
    if (kw === kw.toUpperCase()) upper++;
    else if (kw === kw.toLowerCase()) lower++;
  }
  const majority = upper >= lower ? 'uppercase' : 'lowercase';
  for (const n of nodes) {
    const kw = writtenKeyword(n);
    const ok = majority === 'uppercase' ? kw === kw.toUpperCase() : kw === kw.toLowerCase();
    if (!ok) warn('ConsistentInstructionCasing', `Command '${kw}' should match the case of the command majority (${majority})`, n);
  }

  let split: ReturnType<typeof splitStages>;
  try {
    split = splitStages(parsed);
  } catch {
    return out;
  }

  const seen = new Map<string, number>();
  const globalArgNames = new Set(split.globalArgs.flatMap((a) => a.args.map((d) => d.key)));
  split.stages.forEach((s, index) => {
    const from = s.from;
    const fromKw = writtenKeyword(from.node);
    if (from.stageNameAsWritten && from.stageNameAsWritten !== from.stageNameAsWritten.toLowerCase()) {
      warn('StageNameCasing', `Stage name '${from.stageNameAsWritten}' should be lowercase`, from.node);
    }
    if (from.asKeyword) {
      const fromUpper = fromKw === fromKw.toUpperCase();
      const asUpper = from.asKeyword === from.asKeyword.toUpperCase();
      if (fromUpper !== asUpper) warn('FromAsCasing', `'${from.asKeyword}' and '${fromKw}' keywords' casing do not match`, from.node);
    }
    if (from.stageName) {
      if (seen.has(from.stageName)) warn('DuplicateStageName', `Duplicate stage name "${from.stageName}", stage names should be unique`, from.node);
      seen.set(from.stageName, index);
      if (from.stageName === 'scratch' || from.stageName === 'context') {
        warn('ReservedStageName', `'${from.stageName}' is reserved and should not be used as a stage name`, from.node);
      }
    }
    if (from.platform !== undefined) {
      if (/^\$\{?TARGETPLATFORM\}?$/.test(from.platform)) {
        warn('RedundantTargetPlatform', `Setting platform to predefined ${from.platform} in FROM is redundant as this is the default behavior`, from.node);
      } else if (!from.platform.includes('$')) {
        warn('FromPlatformFlagConstDisallowed', `FROM --platform flag should not use constant value "${from.platform}"`, from.node);
      }
    }

    const counts = new Map<string, Instruction[]>();
    let workdirSet = false;
    for (const inst of s.instructions) {
      if (inst.kind === 'cmd' || inst.kind === 'entrypoint' || inst.kind === 'healthcheck') {
        counts.set(inst.kind, [...(counts.get(inst.kind) ?? []), inst]);
      }
      if ((inst.kind === 'cmd' || inst.kind === 'entrypoint') && inst.command.shell && inst.command.args.length > 0) {
        warn('JSONArgsRecommended', `JSON arguments recommended for ${inst.kind.toUpperCase()} to prevent unintended behavior related to OS signals`, inst.node);
      }
      if (inst.kind === 'maintainer') warn('MaintainerDeprecated', 'Maintainer instruction is deprecated in favor of using label', inst.node);
      if (inst.kind === 'workdir') {
        if (!workdirSet && !inst.path.startsWith('/') && !inst.path.startsWith('$')) {
          warn('WorkdirRelativePath', `Relative workdir "${inst.path}" can have unexpected results if the base image changes`, inst.node);
        }
        workdirSet = true;
      }
      if (inst.kind === 'env' || inst.kind === 'label') {
        if (inst.pairs.some((p) => p.legacy)) {
          const kw = inst.kind.toUpperCase();
          warn('LegacyKeyValueFormat', `"${kw} key=value" should be used instead of legacy "${kw} key value" format`, inst.node);
        }
      }
      const sensitive = inst.kind === 'arg' ? inst.args.map((a) => a.key) : inst.kind === 'env' ? inst.pairs.map((p) => p.key) : [];
      for (const key of sensitive) {
        if (SECRET_TOKENS.test(key) && !NOT_SECRET.test(key)) {
          warn('SecretsUsedInArgOrEnv', `Do not use ARG or ENV instructions for sensitive data (${inst.kind.toUpperCase()} "${key}")`, inst.node);
        }
      }
      if (inst.kind === 'expose') {
        for (const p of inst.ports) {
          const proto = p.split('/')[1];
          if (proto && proto !== proto.toLowerCase()) warn('ExposeProtoCasing', `Defined protocol '${p}' in EXPOSE instruction should be lowercase`, inst.node);
        }
      }
    }
    for (const [kind, list] of counts) {
      for (const inst of list.slice(0, -1)) {
        warn('MultipleInstructionsDisallowed', `Multiple ${kind.toUpperCase()} instructions should not be used in the same stage because only the last one will be used`, inst.node);
      }
    }
  });

  if (plan) {
    const known = [...globalArgNames, ...PLATFORM_ARG_NAMES];
    for (const stage of plan.stages) {
      for (const name of stage.fromUnmatched) {
        if ((PLATFORM_ARG_NAMES as readonly string[]).includes(name)) continue;
        if (globalArgNames.has(name)) continue;
        const guess = closest(name, known, true);
        warn('UndefinedArgInFrom', `FROM argument '${name}' is not declared` + (guess ? ` (did you mean ${guess}?)` : ''), stage.from.node);
      }
      // InvalidDefaultArgInFrom: the FROM that the defaults alone would produce.
      if (stage.fromMatched.length || stage.fromUnmatched.length) {
        const defaults = new Map<string, string>();
        for (const a of split.globalArgs) {
          for (const d of a.args) {
            if (d.value !== undefined) defaults.set(d.key, plan.lex.processWord(d.value, envFromMap(defaults)).result);
          }
        }
        for (const [k, v] of Object.entries(plan.globalArgValues)) if ((PLATFORM_ARG_NAMES as readonly string[]).includes(k)) defaults.set(k, v);
        let image = '';
        try {
          image = plan.lex.processWord(stage.from.image, envFromMap(defaults)).result;
        } catch {
          image = '';
        }
        if (image === '' || /(^[:@/])|([:@/]$)|::/.test(image)) {
          warn('InvalidDefaultArgInFrom', `Default value for ARG ${stage.from.image} results in empty or invalid base image name`, stage.from.node);
        }
      }
    }
    undefinedVars(plan, opts, warn);
    if (opts.ignore) copyIgnored(plan, opts.ignore, warn);
  }
  return out;
}

function undefinedVars(plan: BuildPlan, opts: LintOptions, warn: (rule: string, message: string, node?: InstructionNode) => void): void {
  const finalEnv = new Map<number, string[] | undefined>();
  for (const stage of plan.stages) {
    let baseEnv: readonly string[] | undefined;
    if (stage.base.kind === 'scratch') baseEnv = [];
    else if (stage.base.kind === 'stage') baseEnv = finalEnv.get(stage.base.index);
    else baseEnv = opts.imageEnv?.(stage.base.ref);
    if (baseEnv === undefined) {
      finalEnv.set(stage.index, undefined);
      continue;
    }
    const scope = stage.createScope(baseEnv);
    for (const inst of stage.instructions) {
      let unmatched: Set<string>;
      const before = [...scope.env().keys(), ...scope.declaredArgs()];
      try {
        unmatched = scope.next(inst).unmatched;
      } catch {
        continue;
      }
      for (const name of unmatched) {
        if (scope.declaredArgs().includes(name) || (PROXY_ARG_NAMES as readonly string[]).includes(name)) continue;
        const guess = closest(name, before, true);
        warn('UndefinedVar', `Usage of undefined variable '$${name}'` + (guess ? ` (did you mean $${guess}?)` : ''), inst.node);
      }
    }
    finalEnv.set(stage.index, scope.configEnv());
  }
}

/** COPY/ADD of a context path that .dockerignore excludes: it would silently be missing. */
function copyIgnored(plan: BuildPlan, ignore: { matches(path: string): boolean }, warn: (rule: string, message: string, node?: InstructionNode) => void): void {
  for (const i of plan.order) {
    for (const inst of plan.stages[i]!.instructions) {
      if ((inst.kind !== 'copy' && inst.kind !== 'add') || (inst.kind === 'copy' && inst.from !== undefined)) continue;
      for (const src of inst.sources) {
        if (src.includes('$') || /^[a-z][a-z0-9+.-]*:\/\//i.test(src) || src.startsWith('git@')) continue;
        const path = cleanPath(src.replace(/^\/+/, ''));
        if (path === '.' || path.startsWith('../')) continue;
        let excluded = false;
        try {
          excluded = ignore.matches(path);
        } catch {
          excluded = false;
        }
        if (excluded) {
          const verb = inst.kind === 'copy' ? 'Copy' : 'Add';
          warn('CopyIgnoredFile', `Attempting to ${verb} file "${src}" that is excluded by .dockerignore`, inst.node);
        }
      }
    }
  }
}
