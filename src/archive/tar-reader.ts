/**
 * readTar: tar-stream's extractor behind an adapter that yields complete, normalised headers.
 *
 * tar-stream applies only PAX path/linkpath/size; it leaves uid, gid, mtime, uname, gname in
 * `header.pax`, and decodes PAX values as UTF-8 text, which corrupts binary xattrs such as
 * security.capability. So the adapter captures each PAX header's raw bytes (by wrapping the
 * extractor's long-header hook for that one instance) and applies every record itself. The
 * wrapped hook is checked at startup: a tar-stream upgrade that renames it fails loudly rather
 * than silently dropping ownership and capabilities.
 */
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { GantryError, wrapError } from '../util/errors.js';
import { parsePaxRecords, type PaxRecords } from './pax.js';
import type { TarEntryType, TarHeader } from './tar-header.js';

export interface ReadTarHeader extends TarHeader {
  size: number;
  /** Seconds since the epoch; carries a fraction when a PAX mtime had one. */
  mtime: number;
  xattrs: Record<string, Buffer>;
  /** Every PAX record that applied to the entry (global and local), values as raw bytes. */
  pax: Record<string, Buffer>;
}

export interface TarEntry {
  /** The name as stored (after PAX/GNU long names); not checked for safety here. */
  header: ReadTarHeader;
  /** The entry's data. Read it before asking for the next entry, or it is skipped for you. */
  body: Readable;
}

const TYPES: Record<string, TarEntryType> = {
  file: 'file',
  'contiguous-file': 'file',
  link: 'hardlink',
  symlink: 'symlink',
  'character-device': 'char',
  'block-device': 'block',
  directory: 'dir',
  fifo: 'fifo',
};

interface RawHeader {
  name: string;
  type: string | null;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Date;
  linkname: string | null;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
}

interface ExtractInternals {
  _header: { type: string } | null;
  _decodeLongHeader: (buf: Buffer) => void;
}

function invalid(entry: string, message: string, cause?: unknown): GantryError {
  return new GantryError('ARCHIVE_INVALID', `reading tar entry "${entry}": ${message}`, {}, { cause });
}

function paxNumber(entry: string, key: string, v: Buffer, fraction: boolean): number {
  const text = v.toString('latin1');
  const re = fraction ? /^-?[0-9]+(\.[0-9]+)?$/ : /^[0-9]+$/;
  const n = Number(text);
  if (!re.test(text) || !Number.isFinite(n) || Math.abs(n) > Number.MAX_SAFE_INTEGER) {
    throw invalid(entry, `PAX ${key} "${text.slice(0, 40)}" is not a valid number`);
  }
  return n;
}

function checkNumber(entry: string, what: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw invalid(entry, `${what} ${n} is out of range`);
  return n;
}

/** Applies PAX records over the USTAR/GNU fields and builds our header. */
function normalise(raw: RawHeader, records: PaxRecords): ReadTarHeader {
  const str = (k: string) => {
    const v = records.get(k);
    return v && v.length > 0 ? v.toString('utf8') : undefined;
  };
  const name = str('path') ?? raw.name;
  const type = raw.type ? TYPES[raw.type] : undefined;
  if (!type) {
    throw new GantryError('UNSUPPORTED', `reading tar entry "${name}": unsupported entry type "${raw.type ?? 'unknown'}"`);
  }
  const num = (k: string, fallback: number, fraction = false) => {
    const v = records.get(k);
    return v && v.length > 0 ? paxNumber(name, k, v, fraction) : fallback;
  };
  const xattrs: Record<string, Buffer> = {};
  const pax: Record<string, Buffer> = {};
  for (const [k, v] of records) {
    pax[k] = v;
    if (k.startsWith('SCHILY.xattr.')) xattrs[k.slice('SCHILY.xattr.'.length)] = v;
  }
  const header: ReadTarHeader = {
    name,
    type,
    mode: checkNumber(name, 'mode', raw.mode) & 0o7777,
    uid: checkNumber(name, 'uid', num('uid', raw.uid)),
    gid: checkNumber(name, 'gid', num('gid', raw.gid)),
    size: checkNumber(name, 'size', num('size', raw.size)),
    mtime: num('mtime', raw.mtime.getTime() / 1000, true),
    uname: str('uname') ?? raw.uname,
    gname: str('gname') ?? raw.gname,
    devmajor: checkNumber(name, 'devmajor', raw.devmajor),
    devminor: checkNumber(name, 'devminor', raw.devminor),
    xattrs,
    pax,
  };
  const linkname = str('linkpath') ?? raw.linkname ?? undefined;
  if (linkname) header.linkname = linkname;
  return header;
}

/**
 * A Node Readable over one tar-stream entry. `drain()` detaches the consumer and discards the
 * rest, which lets the extractor move on when the caller did not read the body.
 */
class EntryBody extends Readable {
  private drained = false;
  /** The extractor delivered the whole body (as opposed to the consumer reading it). */
  complete = false;
  constructor(
    private readonly src: Readable,
    mapError: (err: Error) => GantryError,
  ) {
    super();
    src.on('data', (chunk: Buffer) => {
      if (!this.drained && !this.push(chunk)) src.pause();
    });
    src.on('end', () => {
      this.complete = true;
      if (!this.drained) this.push(null);
    });
    src.on('error', (err: Error) => {
      if (!this.drained && !this.destroyed) this.destroy(mapError(err));
    });
    src.pause();
    // A body the consumer has not started reading may fail (truncated archive) before the
    // consumer moves on; the iterator reports that same failure, so an unheard error here must
    // not become an uncaught exception.
    this.on('error', () => undefined);
  }

  override _read(): void {
    this.src.resume();
  }

  drain(): void {
    if (this.readableEnded || this.drained) return;
    this.drained = true;
    this.src.resume();
    if (!this.destroyed) this.destroy();
  }
}

/** Everything tar-stream's extractor says about data that is not a tar stream or is cut short. */
function describe(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (/Unexpected end of data/i.test(msg)) return 'archive is truncated (unexpected end of data)';
  if (/Invalid tar header/i.test(msg)) return 'not a tar archive or corrupt header (checksum or format mismatch)';
  return msg;
}

/**
 * Reads a tar stream entry by entry. Errors are GantryErrors naming the entry they occurred in
 * (or the last good one, for a broken header). Breaking out of the loop destroys the input.
 */
export async function* readTar(input: Readable): AsyncGenerator<TarEntry> {
  const extract = tarStream.extract();
  const internals = extract as unknown as ExtractInternals;
  const decodeLong = internals._decodeLongHeader;
  if (typeof decodeLong !== 'function') {
    throw new GantryError('INTERNAL', 'tar-stream internals changed (_decodeLongHeader missing); PAX records cannot be read binary-safe', {
      hint: 'pin tar-stream to the version in package.json',
    });
  }
  let globalPax: PaxRecords = new Map();
  let localPax: PaxRecords | undefined;
  let paxError: GantryError | undefined;
  let lastName = '';
  internals._decodeLongHeader = function (this: ExtractInternals, buf: Buffer) {
    try {
      const type = internals._header?.type;
      if (type === 'pax-header') localPax = parsePaxRecords(buf, localPax ?? new Map());
      else if (type === 'pax-global-header') globalPax = parsePaxRecords(buf, new Map(globalPax));
    } catch (err) {
      paxError ??= err instanceof GantryError ? err : invalid(lastName, String(err));
    }
    decodeLong.call(this, buf);
  };
  // Pair each header with the PAX records seen just before it, synchronously, before the
  // extractor can parse further headers.
  const recordsFor = new WeakMap<object, PaxRecords>();
  extract.on('entry', (header: object) => {
    const merged = new Map(globalPax);
    for (const [k, v] of localPax ?? []) merged.set(k, v);
    recordsFor.set(header, merged);
    localPax = undefined;
  });

  let inputError: unknown;
  input.on('error', (err) => {
    inputError ??= err;
    extract.destroy(err);
  });
  input.pipe(extract as unknown as NodeJS.WritableStream);

  let body: EntryBody | undefined;
  try {
    for await (const entry of extract) {
      if (paxError) throw paxError;
      const raw = entry.header as unknown as RawHeader;
      const header = normalise(raw, recordsFor.get(entry.header) ?? new Map());
      lastName = header.name;
      const name = header.name;
      body = new EntryBody(entry as unknown as Readable, (err) =>
        err === inputError ? wrapError(err, `reading tar entry "${name}"`) : invalid(name, describe(err), err),
      );
      yield { header, body };
      // The consumer asked for the next entry: the extractor cannot reach it until this body
      // has flowed out, so discard whatever was not read.
      body.drain();
    }
    if (paxError) throw paxError;
  } catch (err) {
    body?.drain();
    if (err instanceof GantryError && err !== inputError) throw err;
    const where = body && !body.complete ? `"${lastName}"` : lastName ? `after "${lastName}"` : 'at the start of the archive';
    // A failing source (network, disk) keeps its own code: the archive itself may be fine.
    if (inputError !== undefined) throw wrapError(inputError, `reading tar entry ${where}`);
    throw new GantryError('ARCHIVE_INVALID', `reading tar entry ${where}: ${describe(err)}`, {}, { cause: err });
  } finally {
    input.unpipe(extract as unknown as NodeJS.WritableStream);
    if (!input.readableEnded) input.destroy();
  }
}
