/**
 * `RUN --mount=type=cache,target=/root/.cache,sharing=locked` values: a CSV record of key=value
 * fields (quotes allowed for values with commas), validated like BuildKit.
 */
import { InvalidInstruction } from './errors.js';
import { closest } from './suggest.js';
import type { MountSharing, MountType, RunMount } from './types.js';

const MOUNT_TYPES: readonly MountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
const SHARING: readonly MountSharing[] = ['shared', 'private', 'locked'];
const KEYS = [
  'type', 'from', 'source', 'src', 'target', 'dst', 'destination', 'readonly', 'ro', 'readwrite', 'rw',
  'id', 'sharing', 'required', 'mode', 'uid', 'gid', 'size', 'env',
];

/** One CSV record as Go's encoding/csv reads it (no lazy quotes). */
export function splitCsvRecord(text: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new InvalidInstruction(`failed to parse csv mounts: extraneous or missing " in quoted-field`);
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += text[i++];
      }
      if (i < text.length && text[i] !== ',') throw new InvalidInstruction(`failed to parse csv mounts: extraneous or missing " in quoted-field`);
    } else {
      const end = text.indexOf(',', i);
      field = end < 0 ? text.slice(i) : text.slice(i, end);
      if (field.includes('"')) throw new InvalidInstruction(`failed to parse csv mounts: bare " in non-quoted-field`);
      i = end < 0 ? text.length : end;
    }
    fields.push(field);
    if (i >= text.length) break;
    i++; // the comma
  }
  return fields;
}

function parseBool(key: string, value: string): boolean {
  // Go's strconv.ParseBool
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  throw new InvalidInstruction(`invalid value for ${key}: ${value}`);
}

function parseUint(key: string, value: string, radix: 8 | 10): number {
  const re = radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  const n = re.test(value) ? parseInt(value, radix) : NaN;
  if (!Number.isSafeInteger(n) || n > 0xffffffff) throw new InvalidInstruction(`invalid value ${value} for ${key}`);
  return n;
}

/** Docker's RAMInBytes: `512`, `64m`, `1.5g`, `2GiB`; binary multiples. */
export function parseByteSize(value: string): number {
  const m = /^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$/.exec(value);
  if (!m) throw new InvalidInstruction(`invalid size: '${value}'`);
  const mult = { k: 1, m: 2, g: 3, t: 4, p: 5 }[(m[2] ?? '').toLowerCase() as 'k'] ?? 0;
  return Math.floor(parseFloat(m[1]!) * 1024 ** mult);
}

/**
 * Parses one `--mount` value. `expand` (when given) is applied to every value first; without it,
 * values containing `$` are not validated yet (they are re-parsed after expansion).
 */
export function parseMount(spec: string, expand?: (word: string) => string): RunMount {
  const fields = splitCsvRecord(spec);
  const m: RunMount = { type: 'bind', readOnly: true, required: false };
  let roAuto = true;
  let requiredSet: boolean | undefined;
  // Values with variables are checked once expanded; until then only the shape is checked.
  let deferred = false;
  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (eq < 0) {
      if (key === 'readonly' || key === 'ro') {
        m.readOnly = true;
        roAuto = false;
        continue;
      }
      if (key === 'readwrite' || key === 'rw') {
        m.readOnly = false;
        roAuto = false;
        continue;
      }
      if (key === 'required') {
        requiredSet = true;
        continue;
      }
      throw new InvalidInstruction(`invalid field '${field}' must be a key=value pair`);
    }
    let value = field.slice(eq + 1);
    if (key === 'from') {
      if (/\$./.test(value)) {
        throw new InvalidInstruction(`'from' doesn't support variable expansion, define alias stage instead`);
      }
    } else if (expand) {
      value = expand(value);
    } else if (value.includes('$')) {
      deferred = true;
      continue;
    }
    switch (key) {
      case 'type': {
        const t = value.toLowerCase();
        if (!MOUNT_TYPES.includes(t as MountType)) {
          const guess = closest(t, MOUNT_TYPES, true);
          throw new InvalidInstruction(`unsupported mount type "${value}"` + (guess ? ` (did you mean ${guess}?)` : ''), `one of ${MOUNT_TYPES.join(', ')}`);
        }
        m.type = t as MountType;
        break;
      }
      case 'from':
        m.from = value;
        break;
      case 'source':
      case 'src':
        m.source = value;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        m.target = value;
        break;
      case 'readonly':
      case 'ro':
        m.readOnly = parseBool(key, value);
        roAuto = false;
        break;
      case 'readwrite':
      case 'rw':
        m.readOnly = !parseBool(key, value);
        roAuto = false;
        break;
      case 'required':
        requiredSet = parseBool(key, value);
        break;
      case 'id':
        m.id = value;
        break;
      case 'sharing': {
        const s = value.toLowerCase();
        if (!SHARING.includes(s as MountSharing)) throw new InvalidInstruction(`unsupported sharing value "${value}"`, `one of ${SHARING.join(', ')}`);
        m.sharing = s as MountSharing;
        break;
      }
      case 'mode':
        m.mode = parseUint(key, value, 8);
        break;
      case 'uid':
        m.uid = parseUint(key, value, 10);
        break;
      case 'gid':
        m.gid = parseUint(key, value, 10);
        break;
      case 'size':
        m.size = parseByteSize(value);
        break;
      case 'env':
        m.env = value;
        break;
      default: {
        const guess = closest(key, KEYS, true);
        throw new InvalidInstruction(`unexpected key '${key}' in '${field}'` + (guess ? ` (did you mean ${guess}?)` : ''));
      }
    }
  }
  if (!deferred) validate(m, requiredSet);
  else if (requiredSet !== undefined) m.required = requiredSet;
  if (roAuto) m.readOnly = !(m.type === 'cache' || m.type === 'tmpfs');
  applyDefaults(m);
  return m;
}

function validate(m: RunMount, requiredSet: boolean | undefined): void {
  const fileInfo = m.type === 'secret' || m.type === 'ssh' || m.type === 'cache';
  for (const k of ['mode', 'uid', 'gid'] as const) {
    if (m[k] !== undefined && !fileInfo) throw new InvalidInstruction(`${k} not allowed for "${m.type}" type mounts`);
  }
  if (requiredSet !== undefined) {
    if (m.type !== 'secret' && m.type !== 'ssh') throw new InvalidInstruction(`unexpected key 'required' for mount type '${m.type}'`);
    m.required = requiredSet;
  }
  if (m.sharing && m.type !== 'cache') throw new InvalidInstruction(`invalid cache sharing set for ${m.type} mount`);
  if (m.size !== undefined && m.type !== 'tmpfs') throw new InvalidInstruction(`unexpected key 'size' for mount type '${m.type}'`);
  if (m.env !== undefined && m.type !== 'secret') throw new InvalidInstruction(`unexpected key 'env' for mount type '${m.type}'`);
  if (m.type === 'secret') {
    if (m.from !== undefined) throw new InvalidInstruction('secret mount should not have a from');
    if (!m.source && !m.target && !m.id && m.env === undefined) {
      throw new InvalidInstruction('invalid secret mount. one of source, target required', 'e.g. --mount=type=secret,id=npmrc,target=/root/.npmrc');
    }
    if (m.source && m.id) throw new InvalidInstruction(`both source and id can't be set`);
  }
  if ((m.type === 'bind' || m.type === 'cache' || m.type === 'tmpfs') && !m.target) {
    throw new InvalidInstruction(`mount type ${m.type} requires a target`, `add target=<path in the container>`);
  }
}

function basename(p: string): string {
  const segs = p.split('/').filter((s) => s !== '');
  return segs[segs.length - 1] ?? p;
}

function applyDefaults(m: RunMount): void {
  if (m.type === 'secret') {
    // BuildKit: `source` is an alias for the id; without either, the target's base name is used.
    m.id ??= m.source ?? (m.target ? basename(m.target) : undefined);
    if (m.target === undefined && m.env === undefined && m.id) m.target = '/run/secrets/' + basename(m.id);
  } else if (m.type === 'ssh') {
    m.id ??= 'default';
  } else if (m.type === 'cache') {
    m.id ??= m.target;
    m.sharing ??= 'shared';
  }
}
