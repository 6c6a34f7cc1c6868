/**
 * `--call=targets|outline|check` (docker buildx build --call): data for the CLI to print, and
 * plain-text formatters that mimic buildx's tables.
 */
import { GantryError } from '../../util/errors.js';
import { parseDockerfile } from '../parser/index.js';
import type { ParsedDockerfile, SourceRange } from '../parser/types.js';
import { describe, planBuild, splitStages, type BuildPlan, type PlanOptions } from './plan.js';
import { lintDockerfile, LINT_RULES, type LintOptions, type LintWarning } from './lint.js';

export interface TargetInfo {
  name: string;
  index: number;
  description?: string;
  /** FROM's image as written. */
  base: string;
  /** True for the stage built when no --target is given (the last one). */
  isDefault: boolean;
  range: SourceRange;
}

/** Named stages, in order, with the description comment above their FROM. */
export function callTargets(parsed: ParsedDockerfile): TargetInfo[] {
  const { stages } = splitStages(parsed);
  const out: TargetInfo[] = [];
  stages.forEach((s, index) => {
    if (!s.from.stageName) return;
    const t: TargetInfo = { name: s.from.stageName, index, base: s.from.image, isDefault: index === stages.length - 1, range: s.from.node.range };
    const d = describe(s.from.node.comments, s.from.stageName);
    if (d) t.description = d;
    out.push(t);
  });
  return out;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]! + 3))).join('').trimEnd()).join('\n') + '\n';
}

export function formatTargets(targets: TargetInfo[]): string {
  if (targets.length === 0) return 'No named stages (name one with FROM <image> AS <name>)\n';
  return table([['TARGET', 'DESCRIPTION'], ...targets.map((t) => [t.name + (t.isDefault ? ' (default)' : ''), t.description ?? ''])]);
}

export interface OutlineArg {
  name: string;
  /** Effective value (build arg, else default); undefined when unset. */
  value?: string;
  description?: string;
  range: SourceRange;
}
export interface OutlineMount {
  id: string;
  required: boolean;
  range: SourceRange;
}
export interface Outline {
  target: { name?: string; index: number; description?: string };
  args: OutlineArg[];
  secrets: OutlineMount[];
  ssh: OutlineMount[];
}

/**
 * What building the target takes: the build args its stages declare or its FROMs use (with
 * values and descriptions from `# NAME description` comments), secrets and SSH mounts.
 */
export function callOutline(parsed: ParsedDockerfile, opts: PlanOptions = {}): Outline {
  const plan = planBuild(parsed, opts);
  const t = plan.stages[plan.target]!;
  const outline: Outline = { target: { index: t.index }, args: [], secrets: [], ssh: [] };
  if (t.name) outline.target.name = t.name;
  if (t.description) outline.target.description = t.description;

  const seen = new Set<string>();
  const add = (name: string, value: string | undefined, comments: readonly string[], range: SourceRange): void => {
    if (seen.has(name)) return;
    seen.add(name);
    const a: OutlineArg = { name, range };
    if (value !== undefined) a.value = value;
    const d = describe(comments, name);
    if (d) a.description = d;
    outline.args.push(a);
  };

  const usedGlobals = new Set<string>();
  for (const i of plan.order) {
    for (const n of plan.stages[i]!.fromMatched) usedGlobals.add(n);
    for (const inst of plan.stages[i]!.instructions) if (inst.kind === 'arg') for (const d of inst.args) if (d.value === undefined) usedGlobals.add(d.key);
  }
  for (const inst of plan.globalArgs) {
    for (const d of inst.args) if (usedGlobals.has(d.key)) add(d.key, plan.globalArgValues[d.key], inst.node.comments, inst.node.range);
  }
  for (const i of plan.order) {
    const stage = plan.stages[i]!;
    const scope = stage.createScope([]);
    for (const inst of stage.instructions) {
      if (inst.kind === 'arg') {
        let resolved;
        try {
          resolved = scope.next(inst).instruction;
        } catch {
          resolved = inst;
        }
        resolved.args.forEach((d) => add(d.key, d.value, inst.node.comments, inst.node.range));
      }
      if (inst.kind === 'run') {
        for (const m of inst.mounts) {
          if (m.type !== 'secret' && m.type !== 'ssh') continue;
          const list = m.type === 'secret' ? outline.secrets : outline.ssh;
          const id = m.id ?? 'default';
          const prev = list.find((x) => x.id === id);
          if (prev) prev.required ||= m.required;
          else list.push({ id, required: m.required, range: inst.node.range });
        }
      }
    }
  }
  return outline;
}

export function formatOutline(o: Outline): string {
  let s = `TARGET:      ${o.target.name ?? `stage ${o.target.index}`}\n`;
  if (o.target.description) s += `DESCRIPTION: ${o.target.description}\n`;
  if (o.args.length) s += '\n' + table([['BUILD ARG', 'VALUE', 'DESCRIPTION'], ...o.args.map((a) => [a.name, a.value ?? '<undefined>', a.description ?? ''])]);
  if (o.secrets.length) s += '\n' + table([['SECRET', 'REQUIRED'], ...o.secrets.map((m) => [m.id, m.required ? 'true' : 'false'])]);
  if (o.ssh.length) s += '\n' + table([['SSH', 'REQUIRED'], ...o.ssh.map((m) => [m.id, m.required ? 'true' : 'false'])]);
  return s;
}

export interface CheckError {
  code: string;
  message: string;
  hint?: string;
  range?: SourceRange;
}
export interface CheckResult {
  warnings: LintWarning[];
  errors: CheckError[];
  /** Rules skipped through `# check=skip=...` or BUILDKIT_DOCKERFILE_CHECK. */
  skipped: string[];
  /** True when the check should fail the command: errors, or warnings with `check=error=true`. */
  failed: boolean;
}

/** `skip=Rule1,Rule2;error=true` from the `# check=` directive or BUILDKIT_DOCKERFILE_CHECK. */
export function parseCheckDirective(text: string | undefined): { skip: string[]; error: boolean } {
  const res = { skip: [] as string[], error: false };
  if (!text) return res;
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim().toLowerCase();
    const value = part.slice(eq + 1).trim();
    if (key === 'skip') res.skip = value.split(',').map((s) => s.trim()).filter(Boolean);
    if (key === 'error') res.error = value.toLowerCase() === 'true';
  }
  return res;
}

/**
 * Parses and plans (collecting every instruction error rather than stopping at the first),
 * then lints. Never throws for Dockerfile problems: they come back as `errors`.
 */
export function callCheck(parsed: ParsedDockerfile, opts: PlanOptions & LintOptions = {}): CheckResult {
  const errors: CheckError[] = [];
  const toError = (err: unknown): CheckError => {
    if (err instanceof GantryError) {
      const e: CheckError = { code: err.code, message: err.message };
      if (err.hint) e.hint = err.hint;
      const range = err.details.range as SourceRange | undefined;
      if (range) e.range = range;
      return e;
    }
    return { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) };
  };
  let plan: BuildPlan | undefined;
  try {
    plan = planBuild(parsed, opts);
  } catch (err) {
    errors.push(toError(err));
  }
  const config = parseCheckDirective(opts.buildArgs?.BUILDKIT_DOCKERFILE_CHECK ?? parsed.directives.check);
  const skipAll = config.skip.some((s) => s.toLowerCase() === 'all');
  const found = lintDockerfile(parsed, plan, opts);
  // gantry's own plan warnings (not BuildKit rules: no docs page).
  for (const w of plan?.warnings ?? []) {
    const lw: LintWarning = { rule: w.rule, message: w.message, url: '' };
    if (w.node) {
      lw.range = w.node.range;
      lw.line = w.node.original;
    }
    found.push(lw);
  }
  const warnings = skipAll ? [] : found.filter((w) => !config.skip.includes(w.rule));
  // The plan stops at its first problem; a duplicate stage name is reported as a lint warning.
  const unique = errors.filter((e) => !(e.message.includes('duplicate stage name') && warnings.some((w) => w.rule === 'DuplicateStageName')));
  return {
    warnings,
    errors: unique,
    skipped: skipAll ? [...LINT_RULES] : config.skip,
    failed: unique.length > 0 || (config.error && warnings.length > 0),
  };
}

/** callCheck on Dockerfile text: syntax errors are reported as check errors too. */
export function callCheckText(text: string, opts: PlanOptions & LintOptions & { file?: string } = {}): CheckResult & { lines: string[] } {
  const file = opts.file ?? 'Dockerfile';
  let parsed: ParsedDockerfile;
  try {
    parsed = parseDockerfile(text, { file });
  } catch (err) {
    const e: CheckError = { code: err instanceof GantryError ? err.code : 'INTERNAL', message: err instanceof Error ? err.message : String(err) };
    if (err instanceof GantryError) {
      if (err.hint) e.hint = err.hint;
      const { line, column } = err.details as { line?: number; column?: number };
      if (typeof line === 'number') e.range = { file, startLine: line, startColumn: column ?? 1, endLine: line, endColumn: column ?? 1 };
    }
    return { warnings: [], errors: [e], skipped: [], failed: true, lines: text.split('\n') };
  }
  return { ...callCheck(parsed, opts), lines: parsed.lines };
}

export function formatCheck(r: CheckResult, lines?: readonly string[]): string {
  let s = '';
  for (const w of r.warnings) {
    s += `WARNING: ${w.rule}${w.url ? ' - ' + w.url : ''}\n${w.message}\n`;
    if (w.range) {
      s += `${w.range.file}:${w.range.startLine}\n`;
      const text = lines?.[w.range.startLine - 1] ?? w.line;
      if (text !== undefined) s += `>>> ${text}\n`;
    }
    s += '\n';
  }
  for (const e of r.errors) {
    s += `ERROR: ${e.message}\n`;
    if (e.hint) s += `hint: ${e.hint}\n`;
    s += '\n';
  }
  s += r.warnings.length || r.errors.length
    ? `Check complete, ${r.warnings.length} warning${r.warnings.length === 1 ? '' : 's'} and ${r.errors.length} error${r.errors.length === 1 ? '' : 's'} found.\n`
    : 'Check complete, no warnings found.\n';
  return s;
}
