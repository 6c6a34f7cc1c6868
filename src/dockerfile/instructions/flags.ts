/**
 * Instruction flags (`COPY --from=x --link`), parsed with BuildKit's rules: `--name=value` for
 * strings (the `=` is required, an empty value is allowed), bools as `--name`, `--name=true` or
 * `--name=false` (any case), repeatable string flags collect every value, other flags may
 * appear once, and a bare `--` ends the flags.
 */
import { InvalidInstruction } from './errors.js';
import { closest } from './suggest.js';

export type FlagSpec = Record<string, 'bool' | 'string' | 'strings'>;

export type FlagValues<S extends FlagSpec> = {
  [K in keyof S]?: S[K] extends 'bool' ? boolean : S[K] extends 'string' ? string : string[];
};

export function parseFlags<S extends FlagSpec>(flags: readonly string[], spec: S): FlagValues<S> {
  const out: Record<string, boolean | string | string[]> = {};
  for (const word of flags) {
    if (word === '--') break;
    if (!word.startsWith('--')) throw new InvalidInstruction(`arg should start with -- : ${word}`);
    const eq = word.indexOf('=');
    const flagName = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? undefined : word.slice(eq + 1);
    const name = flagName.slice(2);
    const type = Object.prototype.hasOwnProperty.call(spec, name) ? spec[name] : undefined;
    if (!type) {
      const known = Object.keys(spec);
      const guess = closest(name, known, true);
      throw new InvalidInstruction(
        `unknown flag: ${flagName}` + (guess ? ` (did you mean --${guess}?)` : ''),
        known.length ? `this instruction accepts ${known.map((k) => '--' + k).join(', ')}` : 'this instruction accepts no flags',
      );
    }
    if (name in out && type !== 'strings') throw new InvalidInstruction(`duplicate flag specified: ${flagName}`);
    switch (type) {
      case 'bool': {
        if (value === '') throw new InvalidInstruction(`missing a value on flag: ${flagName}`);
        const v = (value ?? 'true').toLowerCase();
        if (v !== 'true' && v !== 'false') {
          throw new InvalidInstruction(`expecting boolean value for flag ${flagName}, not: ${value}`);
        }
        out[name] = v === 'true';
        break;
      }
      case 'string':
        if (value === undefined) throw new InvalidInstruction(`missing a value on flag: ${flagName}`, `write ${flagName}=<value>`);
        out[name] = value;
        break;
      case 'strings':
        if (value === undefined) throw new InvalidInstruction(`missing a value on flag: ${flagName}`, `write ${flagName}=<value>`);
        ((out[name] ??= []) as string[]).push(value);
        break;
    }
  }
  return out as FlagValues<S>;
}
