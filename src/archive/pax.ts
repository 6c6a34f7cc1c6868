/**
 * PAX extended header records (POSIX.1-2001 `pax` format): `"<len> <key>=<value>\n"`, where
 * `<len>` counts the whole record in bytes including its own digits. Values are bytes, not text:
 * `SCHILY.xattr.security.capability` carries binary data, so everything here works on Buffers.
 */
import { GantryError } from '../util/errors.js';

export type PaxRecords = Map<string, Buffer>;

/** Encodes records in the given order (callers sort keys so output is deterministic). */
export function encodePaxRecords(records: Iterable<[string, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    if (key.length === 0 || key.includes('=') || key.includes('\0')) {
      throw new GantryError('INVALID_ARGUMENT', `invalid PAX record key "${key}"`);
    }
    const body = Buffer.byteLength(key) + value.length + 3; // ' ', '=', '\n'
    let digits = String(body).length;
    if (String(body + digits).length > digits) digits++;
    parts.push(Buffer.from(`${body + digits} ${key}=`), value, Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

/**
 * Parses PAX records, later keys overriding earlier ones. Malformed data is an error rather than
 * silently ignored: a half-read PAX header would change which path an entry lands on.
 */
export function parsePaxRecords(buf: Buffer, into: PaxRecords = new Map()): PaxRecords {
  let pos = 0;
  while (pos < buf.length) {
    // Some writers pad the data with NULs; nothing meaningful follows them.
    if (buf[pos] === 0) break;
    const space = buf.indexOf(0x20, pos);
    if (space < 0 || space - pos > 20) throw new GantryError('ARCHIVE_INVALID', 'malformed PAX record: no length');
    const lenText = buf.toString('latin1', pos, space);
    if (!/^[0-9]+$/.test(lenText)) throw new GantryError('ARCHIVE_INVALID', `malformed PAX record length "${lenText}"`);
    const len = Number(lenText);
    const end = pos + len;
    if (len <= space - pos + 1 || end > buf.length || buf[end - 1] !== 0x0a) {
      throw new GantryError('ARCHIVE_INVALID', `malformed PAX record at offset ${pos}: length ${len} does not end at a newline`);
    }
    const eq = buf.indexOf(0x3d, space + 1);
    if (eq < 0 || eq >= end - 1) throw new GantryError('ARCHIVE_INVALID', `malformed PAX record at offset ${pos}: no "="`);
    const key = buf.toString('utf8', space + 1, eq);
    into.set(key, Buffer.from(buf.subarray(eq + 1, end - 1)));
    pos = end;
  }
  return into;
}
