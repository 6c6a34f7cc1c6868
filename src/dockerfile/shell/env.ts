/** Where the lexer looks variables up; `undefined` means unset (the empty string is "set but empty"). */
export interface EnvGetter {
  get(name: string): string | undefined;
  keys(): string[];
}

export function envFromRecord(r: Record<string, string>): EnvGetter {
  return {
    get: (name) => (Object.prototype.hasOwnProperty.call(r, name) ? r[name] : undefined),
    keys: () => Object.keys(r),
  };
}

export function envFromMap(m: ReadonlyMap<string, string>): EnvGetter {
  return {
    get: (name) => m.get(name),
    keys: () => [...m.keys()],
  };
}

/** `NAME=value` entries as in an image config; for a repeated name the last entry wins. */
export function envFromList(list: readonly string[]): EnvGetter {
  const m = new Map<string, string>();
  for (const e of list) {
    const i = e.indexOf('=');
    if (i < 0) m.set(e, '');
    else m.set(e.slice(0, i), e.slice(i + 1));
  }
  return envFromMap(m);
}

export const emptyEnv: EnvGetter = { get: () => undefined, keys: () => [] };
