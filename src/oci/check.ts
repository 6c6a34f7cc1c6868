/**
 * A tiny structural checker for JSON documents we read. Validators record every problem with its
 * JSON path instead of stopping at the first, so an error can say everything that is wrong with a
 * manifest at once; `GantryError`s are raised by the callers that know which code applies.
 */
export class Problems {
  readonly list: string[] = [];

  add(path: string, problem: string): void {
    this.list.push(`${path || '(document)'}: ${problem}`);
  }

  get ok(): boolean {
    return this.list.length === 0;
  }

  /** The first few problems on one line, for error messages. */
  summary(max = 5): string {
    const shown = this.list.slice(0, max).join('; ');
    return this.list.length > max ? `${shown}; and ${this.list.length - max} more` : shown;
  }
}

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number' && Number.isInteger(v)) return 'integer';
  return typeof v;
}

export function join(path: string, key: string | number): string {
  return typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;
}

/** Checks `obj[key]` is a string when present (or when `required`). Returns it if valid. */
export function optString(p: Problems, obj: JsonObject, key: string, path: string, required = false): string | undefined {
  const v = obj[key];
  if (v === undefined) {
    if (required) p.add(join(path, key), 'is required');
    return undefined;
  }
  if (typeof v !== 'string') {
    p.add(join(path, key), `must be a string, got ${typeName(v)}`);
    return undefined;
  }
  return v;
}

export function optBoolean(p: Problems, obj: JsonObject, key: string, path: string): void {
  const v = obj[key];
  if (v !== undefined && typeof v !== 'boolean') p.add(join(path, key), `must be a boolean, got ${typeName(v)}`);
}

export function optStringArray(p: Problems, obj: JsonObject, key: string, path: string, nullable = false): void {
  const v = obj[key];
  if (v === undefined || (nullable && v === null)) return;
  if (!Array.isArray(v)) {
    p.add(join(path, key), `must be an array of strings${nullable ? ' or null' : ''}, got ${typeName(v)}`);
    return;
  }
  v.forEach((item, i) => {
    if (typeof item !== 'string') p.add(join(join(path, key), i), `must be a string, got ${typeName(item)}`);
  });
}

/** `{ "k": "v" }` maps (annotations, labels). */
export function optStringMap(p: Problems, obj: JsonObject, key: string, path: string, nullable = false): void {
  const v = obj[key];
  if (v === undefined || (nullable && v === null)) return;
  if (!isObject(v)) {
    p.add(join(path, key), `must be an object of strings, got ${typeName(v)}`);
    return;
  }
  for (const [k, item] of Object.entries(v)) {
    if (typeof item !== 'string') p.add(join(join(path, key), k), `must be a string, got ${typeName(item)}`);
  }
}

/** `{ "k": {} }` sets (ExposedPorts, Volumes). */
export function optObjectMap(p: Problems, obj: JsonObject, key: string, path: string, nullable = false): void {
  const v = obj[key];
  if (v === undefined || (nullable && v === null)) return;
  if (!isObject(v)) {
    p.add(join(path, key), `must be an object${nullable ? ' or null' : ''}, got ${typeName(v)}`);
    return;
  }
  for (const [k, item] of Object.entries(v)) {
    if (!isObject(item)) p.add(join(join(path, key), k), `must be an object, got ${typeName(item)}`);
  }
}
