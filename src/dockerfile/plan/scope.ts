/**
 * ARG/ENV scoping inside one stage, with BuildKit's rules:
 * - the environment used for expansion starts as the base image's ENV; each ARG (once it has a
 *   value) and each ENV then sets its name in order, so the later definition wins (an ENV after
 *   an ARG of the same name overrides it, as Docker documents);
 * - an ARG value comes from the build args, else from its default (expanded), else, for a bare
 *   `ARG NAME`, from the global ARG of that name (global ARGs are otherwise invisible);
 * - the image config gets only ENV, never ARG values;
 * - proxy build args (HTTP_PROXY, ...) reach RUN without being declared and never enter
 *   history or cache-relevant metadata.
 */
import type { EnvGetter, ShellLex } from '../shell/index.js';
import { envFromMap } from '../shell/index.js';
import { expandInstruction, type ExpandResult } from '../instructions/expand.js';
import { locateError } from '../instructions/errors.js';
import type { ArgDefinition, ArgInstruction, Instruction } from '../instructions/types.js';
import { GantryError } from '../../util/errors.js';

/** Predefined proxy args: usable by RUN without an ARG line; kept out of history. */
export const PROXY_ARG_NAMES = [
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy',
] as const;
const PROXY = new Set<string>(PROXY_ARG_NAMES);

export function isProxyArg(name: string): boolean {
  return PROXY.has(name);
}

/** Shared by every stage of one plan. */
export interface ScopeContext {
  lex: ShellLex;
  /** Resolved user build args (bare names already looked up in the environment). */
  buildArgs: Readonly<Record<string, string>>;
  /** Global scope: automatic platform args, then global ARGs; undefined = declared without a value. */
  globals: ReadonlyMap<string, string | undefined>;
}

export interface ArgValue {
  key: string;
  value: string;
}

/**
 * Drives ARG/ENV state through one stage. The stage executor creates one per stage with the
 * base image's ENV and calls `next` for every instruction in order.
 */
export class StageScope {
  private readonly state = new Map<string, string>();
  private readonly config = new Map<string, string>();
  private readonly declared = new Map<string, string | undefined>();

  constructor(
    private readonly ctx: ScopeContext,
    baseEnv: readonly string[] | Readonly<Record<string, string>> = [],
  ) {
    const entries: Array<[string, string]> = Array.isArray(baseEnv)
      ? (baseEnv as readonly string[]).map((e) => {
          const i = e.indexOf('=');
          return i < 0 ? [e, ''] : [e.slice(0, i), e.slice(i + 1)];
        })
      : Object.entries(baseEnv as Record<string, string>);
    for (const [k, v] of entries) {
      this.state.set(k, v);
      this.config.set(k, v);
    }
  }

  /** The variables the next instruction is expanded with. */
  env(): EnvGetter {
    return envFromMap(this.state);
  }

  /**
   * Expands `inst` with the current scope and applies its effect (ARG, ENV). Returns the
   * expanded instruction; for ARG, each definition carries its resolved value (undefined when
   * the arg stays unset).
   */
  next<T extends Instruction>(inst: T): ExpandResult<T> {
    if (inst.kind === 'arg') return this.arg(inst) as unknown as ExpandResult<T>;
    const r = expandInstruction(inst, this.env(), this.ctx.lex);
    const out: Instruction = r.instruction;
    if (out.kind === 'env') {
      for (const p of out.pairs) {
        this.state.set(p.key, p.value);
        this.config.set(p.key, p.value);
      }
    }
    return r;
  }

  private arg(inst: ArgInstruction): ExpandResult<ArgInstruction> {
    const matched = new Set<string>();
    const unmatched = new Set<string>();
    const word = (w: string): string => {
      const r = this.lexWord(inst, w);
      r.matched.forEach((n) => matched.add(n));
      r.unmatched.forEach((n) => unmatched.add(n));
      return r.result;
    };
    const args: ArgDefinition[] = [];
    for (const def of inst.args) {
      const key = word(def.key);
      let value: string | undefined;
      if (Object.prototype.hasOwnProperty.call(this.ctx.buildArgs, key)) value = this.ctx.buildArgs[key];
      else if (def.value !== undefined) value = word(def.value);
      else value = this.ctx.globals.get(key);
      this.declared.set(key, value);
      if (value !== undefined) this.state.set(key, value);
      args.push(value === undefined ? { key } : { key, value });
    }
    return { instruction: { ...inst, args }, matched, unmatched };
  }

  private lexWord(inst: Instruction, w: string) {
    try {
      return this.ctx.lex.processWord(w, this.env());
    } catch (err) {
      if (err instanceof GantryError) throw locateError(err, inst.node);
      throw err;
    }
  }

  /** ARGs declared in this stage that have a value, in declaration order. */
  args(): ArgValue[] {
    const out: ArgValue[] = [];
    for (const [key, value] of this.declared) if (value !== undefined) out.push({ key, value });
    return out;
  }

  /** Names declared with ARG in this stage so far (with or without a value). */
  declaredArgs(): string[] {
    return [...this.declared.keys()];
  }

  /**
   * `KEY=value` strings BuildKit prefixes RUN history with (`RUN |2 A=1 B=2 ...`): every ARG
   * declared in the stage, valued as the RUN sees it (a later ENV of the same name wins, an
   * unset arg shows as `KEY=`). Proxy args are always left out: their URLs often carry
   * credentials (Docker leaves them out unless declared; we never show them).
   */
  historyArgs(): string[] {
    const out: string[] = [];
    for (const [key, value] of this.declared) {
      if (isProxyArg(key)) continue;
      out.push(`${key}=${this.state.get(key) ?? value ?? ''}`);
    }
    return out;
  }

  /** Environment for RUN: the scope (base ENV, ARGs, ENVs) plus undeclared proxy build args. */
  runEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of PROXY_ARG_NAMES) {
      const v = this.ctx.buildArgs[name];
      if (v !== undefined) env[name] = v;
    }
    for (const [k, v] of this.state) env[k] = v;
    return env;
  }

  /** The image config's Env after the instructions seen so far (ENV only, never ARG). */
  configEnv(): string[] {
    return [...this.config].map(([k, v]) => `${k}=${v}`);
  }
}
