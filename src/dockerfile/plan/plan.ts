/**
 * Parsed Dockerfile -> build plan: stages with their base, typed instructions, dependencies,
 * the global ARG scope, the target and the order to build the needed stages in.
 *
 * How a stage executor uses it:
 * ```ts
 * const plan = planBuild(parseDockerfile(text, { file }), { buildArgs, target, targetPlatform });
 * for (const i of plan.order) {
 *   let stage = plan.stages[i];
 *   const config = await baseConfig(stage.base, stage.platform ?? plan.targetPlatform);
 *   stage = injectOnbuild(stage, config.OnBuild ?? [], plan);
 *   const scope = stage.createScope(config.Env ?? []);
 *   for (const inst of stage.instructions) {
 *     const { instruction } = scope.next(inst);    // expanded, ARG/ENV applied
 *     await execute(instruction, scope.runEnv());  // RUN env; history gets scope.historyArgs()
 *   }
 * }
 * ```
 */
import { GantryError } from '../../util/errors.js';
import type { InstructionNode, ParsedDockerfile } from '../parser/types.js';
import { ShellLex } from '../shell/index.js';
import { envFromMap } from '../shell/index.js';
import { expandInstruction } from '../instructions/expand.js';
import { instructionError, locateError } from '../instructions/errors.js';
import { parseInstruction } from '../instructions/parse.js';
import type { ArgInstruction, FromInstruction, Instruction } from '../instructions/types.js';
import { closest } from '../instructions/suggest.js';
import { isValidImageReference } from './reference.js';
import { hostPlatform, parsePlatform, platformArgs, PLATFORM_ARG_NAMES, type Platform } from './platform.js';
import { isProxyArg, StageScope, type ScopeContext } from './scope.js';

export interface PlanOptions {
  /**
   * `--build-arg` values. `undefined` = a bare `--build-arg KEY`: the value is taken from `env`
   * (as Kaniko and docker do); when `env` has no such variable the arg stays unset.
   */
  buildArgs?: Record<string, string | undefined>;
  /** Environment for bare build args; defaults to process.env. */
  env?: Record<string, string | undefined>;
  /** Stage to build (case-insensitive); default: the last stage. */
  target?: string;
  /** Platform being built for (TARGET* args); default: buildPlatform. */
  targetPlatform?: Platform | string;
  /** Platform the build runs on (BUILD* args); default: this host. */
  buildPlatform?: Platform | string;
  /**
   * Plan every stage up to the target, reachable or not (Kaniko's behaviour without
   * `--skip-unused-stages`). Default false: only what the target needs (BuildKit).
   */
  includeUnreachable?: boolean;
}

/** Where a stage starts from. */
export type StageBase =
  | { kind: 'image'; ref: string }
  | { kind: 'stage'; index: number }
  | { kind: 'scratch' };

/** An edge of the stage graph. */
export interface StageDependency {
  /** The stage depended on. */
  stage: number;
  via: 'from' | 'copy' | 'mount';
  /** The instruction that creates the edge (FROM, COPY --from, RUN --mount from=). */
  node: InstructionNode;
}

/** An image used directly by COPY --from=<image> or RUN --mount=from=<image>. */
export interface ImageDependency {
  ref: string;
  via: 'copy' | 'mount';
  node: InstructionNode;
}

export interface PlannedStage {
  index: number;
  /** Lower-cased `AS` name. */
  name?: string;
  /** The comment above FROM that starts with the stage name (`# build compiles the app`), minus the name. */
  description?: string;
  /** FROM as written. */
  from: FromInstruction;
  /** FROM's image after expansion with the global ARGs. */
  baseName: string;
  base: StageBase;
  /** From `FROM --platform=...` (expanded); undefined = the target platform. */
  platform?: Platform;
  /** Names referenced in FROM that had no value (UndefinedArgInFrom). */
  fromUnmatched: string[];
  /** Global ARG names FROM referenced. */
  fromMatched: string[];
  /** Typed instructions after FROM, not expanded. */
  instructions: Instruction[];
  dependencies: StageDependency[];
  images: ImageDependency[];
  /**
   * Starts the ARG/ENV scope for executing this stage. `baseEnv` is the base image config's Env
   * (`KEY=value` list) or, for a stage based on another stage, that stage's final config Env.
   */
  createScope(baseEnv?: readonly string[] | Readonly<Record<string, string>>): StageScope;
}

export interface PlanWarning {
  rule: string;
  message: string;
  node?: InstructionNode;
}

export interface BuildPlan {
  file: string;
  stages: PlannedStage[];
  /** Index of the stage that produces the image. */
  target: number;
  /** Stages to build, dependencies first (a valid sequential order; independent stages may run in parallel). */
  order: number[];
  /** Stages not needed for the target, skipped. */
  skipped: number[];
  /** ARG lines before the first FROM. */
  globalArgs: ArgInstruction[];
  /** Global scope values (automatic platform args and global ARGs that have a value). */
  globalArgValues: Record<string, string>;
  /** The build args after resolving bare names. */
  buildArgs: Record<string, string>;
  /** Build args no ARG of a planned stage (or the global scope) declares. */
  unusedBuildArgs: string[];
  targetPlatform: Platform;
  buildPlatform: Platform;
  warnings: PlanWarning[];
  /** The lexer for this Dockerfile's escape character. */
  lex: ShellLex;
}

/** Build args with a special meaning for the builder, never reported as unused. */
const BUILTIN_BUILD_ARG = /^(BUILDKIT_[A-Z0-9_]+|SOURCE_DATE_EPOCH)$/;

export function resolveBuildArgs(
  buildArgs: Record<string, string | undefined> = {},
  env: Record<string, string | undefined> = process.env,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(buildArgs)) {
    const value = v ?? env[k];
    if (value !== undefined) out[k] = value;
  }
  return out;
}

function toPlatform(p: Platform | string | undefined): Platform | undefined {
  return typeof p === 'string' ? parsePlatform(p) : p;
}

/** Parses every instruction and groups them into stages (global ARGs first). */
export function splitStages(parsed: ParsedDockerfile): { globalArgs: ArgInstruction[]; stages: Array<{ from: FromInstruction; instructions: Instruction[] }> } {
  const globalArgs: ArgInstruction[] = [];
  const stages: Array<{ from: FromInstruction; instructions: Instruction[] }> = [];
  for (const node of parsed.instructions) {
    const inst = parseInstruction(node);
    if (inst.kind === 'from') {
      stages.push({ from: inst, instructions: [] });
    } else if (stages.length === 0) {
      if (inst.kind !== 'arg') {
        throw instructionError(node, 'no build stage in current context', 'only ARG may come before the first FROM');
      }
      globalArgs.push(inst);
    } else {
      stages[stages.length - 1]!.instructions.push(inst);
    }
  }
  if (stages.length === 0) {
    throw new GantryError('DOCKERFILE_INVALID', `${parsed.file}: dockerfile contains no stages to build`, {
      hint: 'a Dockerfile needs at least one FROM instruction',
    });
  }
  return { globalArgs, stages };
}

/** Description for a stage or ARG: a comment line starting with `<name> `. */
export function describe(comments: readonly string[], name: string | undefined): string | undefined {
  if (!name) return undefined;
  for (const raw of comments) {
    const line = raw.trim();
    if (line.startsWith(name + ' ')) return line.slice(name.length + 1).trim();
  }
  return undefined;
}

/**
 * Plans a build. Throws GantryError: DOCKERFILE_INVALID (bad instruction, duplicate stage name,
 * forward or circular stage reference, bad platform), STAGE_NOT_FOUND (unknown --target).
 */
export function planBuild(parsed: ParsedDockerfile, opts: PlanOptions = {}): BuildPlan {
  const lex = new ShellLex(parsed.escapeToken);
  const buildPlatform = toPlatform(opts.buildPlatform) ?? hostPlatform();
  const targetPlatform = toPlatform(opts.targetPlatform) ?? buildPlatform;
  const buildArgs = resolveBuildArgs(opts.buildArgs, opts.env ?? process.env);
  const { globalArgs, stages: raw } = splitStages(parsed);

  // Global scope: automatic platform args, then the ARGs before the first FROM in order.
  const globals = new Map<string, string | undefined>(Object.entries(platformArgs(targetPlatform, buildPlatform)));
  const globalEnv = (): ReturnType<typeof envFromMap> => {
    const m = new Map<string, string>();
    for (const [k, v] of globals) if (v !== undefined) m.set(k, v);
    return envFromMap(m);
  };
  for (const inst of globalArgs) {
    for (const def of inst.args) {
      const key = lexWord(lex, inst, def.key, globalEnv());
      if (Object.prototype.hasOwnProperty.call(buildArgs, key)) globals.set(key, buildArgs[key]);
      else if (def.value !== undefined) globals.set(key, lexWord(lex, inst, def.value, globalEnv()));
      else if (!globals.has(key)) globals.set(key, undefined);
    }
  }
  const ctx: ScopeContext = { lex, buildArgs, globals };

  // Stage names: valid (checked by the instruction parser) and unique.
  const byName = new Map<string, number>();
  raw.forEach((s, i) => {
    const name = s.from.stageName;
    if (!name) return;
    const prev = byName.get(name);
    if (prev !== undefined) {
      throw instructionError(s.from.node, `duplicate stage name "${name}"`, `stage ${prev} (line ${raw[prev]!.from.node.range.startLine}) already uses this name; stage names are case-insensitive`);
    }
    byName.set(name, i);
  });

  const stages: PlannedStage[] = raw.map((s, index) => {
    const fromExp = expandInstruction(s.from, globalEnv(), lex);
    const baseName = fromExp.instruction.image;
    const base = resolveBase(baseName, index, byName, s.from, fromExp.matched.size + fromExp.unmatched.size > 0);
    const stage: PlannedStage = {
      index,
      from: s.from,
      baseName,
      base,
      fromUnmatched: [...fromExp.unmatched],
      fromMatched: [...fromExp.matched],
      instructions: s.instructions,
      dependencies: [],
      images: [],
      createScope: (baseEnv) => new StageScope(ctx, baseEnv),
    };
    if (s.from.stageName) stage.name = s.from.stageName;
    const description = describe(s.from.node.comments, s.from.stageName);
    if (description) stage.description = description;
    if (fromExp.instruction.platform !== undefined) {
      try {
        stage.platform = parsePlatform(fromExp.instruction.platform);
      } catch (err) {
        throw instructionError(s.from.node, (err as Error).message, 'use --platform=os/arch[/variant] or $BUILDPLATFORM / $TARGETPLATFORM');
      }
    }
    if (base.kind === 'stage') stage.dependencies.push({ stage: base.index, via: 'from', node: s.from.node });
    stage.instructions = s.instructions.map((inst) => resolveCopyFrom(inst, lex, globalEnv()));
    for (const inst of stage.instructions) collectRefs(inst, stage, byName);
    return stage;
  });

  const target = resolveTarget(opts.target, stages);
  const needed = new Set<number>();
  const visit = (i: number): void => {
    if (needed.has(i)) return;
    needed.add(i);
    for (const d of stages[i]!.dependencies) visit(d.stage);
  };
  visit(target);
  if (opts.includeUnreachable) for (let i = 0; i <= target; i++) visit(i);
  const order = [...needed].sort((a, b) => a - b);
  const skipped = stages.map((s) => s.index).filter((i) => !needed.has(i));

  // Unused build args: declared nowhere the build looks.
  const declared = new Set<string>();
  for (const inst of globalArgs) for (const d of inst.args) declared.add(d.key);
  for (const i of order) {
    for (const inst of stages[i]!.instructions) if (inst.kind === 'arg') for (const d of inst.args) declared.add(d.key);
  }
  const unusedBuildArgs = Object.keys(buildArgs).filter(
    (k) => !declared.has(k) && !isProxyArg(k) && !BUILTIN_BUILD_ARG.test(k) && !(PLATFORM_ARG_NAMES as readonly string[]).includes(k),
  );
  const warnings: PlanWarning[] = [];
  const stageNames = [...byName.keys()];
  for (const i of order) {
    for (const img of stages[i]!.images) {
      const guess = closest(img.ref, stageNames, false);
      if (guess) {
        const flag = img.via === 'copy' ? 'COPY --from' : 'RUN --mount from';
        warnings.push({ rule: 'StageNameTypo', message: `${flag}=${img.ref} refers to an image, not a stage: did you mean stage ${guess}?`, node: img.node });
      }
    }
  }
  if (unusedBuildArgs.length) {
    warnings.push({ rule: 'UnusedBuildArg', message: `one or more build args were not consumed: ${unusedBuildArgs.join(', ')}` });
  }

  const globalArgValues: Record<string, string> = {};
  for (const [k, v] of globals) if (v !== undefined) globalArgValues[k] = v;

  return {
    file: parsed.file,
    stages,
    target,
    order,
    skipped,
    globalArgs,
    globalArgValues,
    buildArgs,
    unusedBuildArgs,
    targetPlatform,
    buildPlatform,
    warnings,
    lex,
  };
}

function lexWord(lex: ShellLex, inst: Instruction, word: string, env: ReturnType<typeof envFromMap>): string {
  try {
    return lex.processWord(word, env).result;
  } catch (err) {
    if (err instanceof GantryError) throw locateError(err, inst.node);
    throw err;
  }
}

function resolveBase(image: string, index: number, byName: ReadonlyMap<string, number>, from: FromInstruction, expanded: boolean): StageBase {
  if (image.toLowerCase() === 'scratch') return { kind: 'scratch' };
  const ref = byName.get(image.toLowerCase());
  if (ref === undefined) {
    // With variables the value is the user's build args; the registry reports a bad one.
    if (!expanded && !isValidImageReference(image)) throw notAReference(from.node, 'FROM', image, byName);
    return { kind: 'image', ref: image };
  }
  if (ref === index) throw instructionError(from.node, `circular dependency detected on stage: ${image}`, 'a stage cannot be based on itself');
  if (ref > index) {
    throw instructionError(from.node, `stage "${image}" is defined later in the Dockerfile`, 'a stage can only be based on a stage defined above it');
  }
  return { kind: 'stage', index: ref };
}

/**
 * `COPY --from=$X`: BuildKit rejects variables here; Docker's legacy builder, buildah and Kaniko
 * expand them. We expand global ARGs only (the graph must be known before any stage runs), so
 * every Dockerfile BuildKit accepts behaves the same and legacy ones keep working.
 */
function resolveCopyFrom(inst: Instruction, lex: ShellLex, globals: ReturnType<typeof envFromMap>): Instruction {
  if (inst.kind !== 'copy' || inst.from === undefined || !inst.from.includes('$')) return inst;
  let r;
  try {
    r = lex.processWord(inst.from, globals);
  } catch (err) {
    if (err instanceof GantryError) throw locateError(err, inst.node);
    throw err;
  }
  if (r.unmatched.size > 0 || r.result === '') {
    throw instructionError(
      inst.node,
      `COPY --from=${inst.from}: ${[...r.unmatched].join(', ') || 'the value'} is not a global build arg with a value`,
      'only ARGs declared before the first FROM can be used in --from; or define an alias stage: FROM ${IMAGE} AS src, then COPY --from=src',
    );
  }
  return { ...inst, from: r.result };
}

/** COPY --from and RUN --mount from=: a stage index, an earlier stage name, or an image. */
function collectRefs(inst: Instruction, stage: PlannedStage, byName: ReadonlyMap<string, number>): void {
  const refs: Array<{ value: string; via: 'copy' | 'mount' }> = [];
  if (inst.kind === 'copy' && inst.from !== undefined) refs.push({ value: inst.from, via: 'copy' });
  if (inst.kind === 'run') {
    for (const m of inst.mounts) if (m.from !== undefined && (m.type === 'bind' || m.type === 'cache')) refs.push({ value: m.from, via: 'mount' });
  }
  for (const { value, via } of refs) {
    const what = via === 'copy' ? 'COPY --from' : 'RUN --mount from';
    if (value === '') throw instructionError(inst.node, `${what} needs a stage name, index or image`);
    let ref: number | undefined;
    if (/^\d+$/.test(value)) {
      ref = Number(value);
      if (ref >= stage.index) {
        throw instructionError(
          inst.node,
          ref === stage.index ? `circular dependency detected on stage: ${value}` : `invalid stage index ${value}: stage ${value} is not defined before this one`,
          'refer to an earlier stage by name or by its 0-based index',
        );
      }
    } else {
      ref = byName.get(value.toLowerCase());
      if (ref !== undefined && ref >= stage.index) {
        throw instructionError(
          inst.node,
          ref === stage.index ? `circular dependency detected on stage: ${value}` : `stage "${value}" is defined later in the Dockerfile`,
          'move the stage above the one that uses it',
        );
      }
    }
    if (ref !== undefined) {
      if (!stage.dependencies.some((d) => d.stage === ref && d.via === via && d.node === inst.node)) {
        stage.dependencies.push({ stage: ref, via, node: inst.node });
      }
    } else {
      if (!isValidImageReference(value)) throw notAReference(inst.node, what, value, byName);
      stage.images.push({ ref: value, via, node: inst.node });
    }
  }
}

function notAReference(node: InstructionNode, what: string, value: string, byName: ReadonlyMap<string, number>): GantryError {
  const names = [...byName.keys()];
  const guess = closest(value, names, false);
  return instructionError(
    node,
    `${what} ${value}: no stage has this name and it is not a valid image reference` + (guess ? ` (did you mean stage ${guess}?)` : ''),
    names.length ? `stages defined: ${names.join(', ')}; image references are lower-case, e.g. registry.example.com/team/app:1.0` : 'image references are lower-case, e.g. registry.example.com/team/app:1.0',
  );
}

function resolveTarget(target: string | undefined, stages: PlannedStage[]): number {
  if (target === undefined || target === '') return stages.length - 1;
  const i = stages.findIndex((s) => s.name === target.toLowerCase());
  if (i >= 0) return i;
  const names = stages.map((s) => s.name).filter((n): n is string => !!n);
  throw new GantryError('STAGE_NOT_FOUND', `target stage "${target}" could not be found`, {
    hint: names.length ? `available stages: ${names.join(', ')}` : 'this Dockerfile has no named stages (name one with FROM <image> AS <name>)',
    target,
    stages: names,
  });
}
