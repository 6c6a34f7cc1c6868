/**
 * List inputs read the way docker/build-push-action reads them (actions-toolkit `Util.getList`):
 * the text is CSV (one record per line, relaxed quotes, blank lines skipped). A record of one field
 * is split again on commas unless the input keeps commas (`ignoreComma`: build-args, labels,
 * secrets, cache-from/to, outputs); a record of several fields becomes several items, or is joined
 * back with commas when commas are kept. Items are trimmed and empty ones dropped. Workflows
 * written for build-push-action therefore mean the same thing here, quotes included:
 * `"KEY=a,b"` is one build arg.
 */
export interface ListOptions {
  /** Keep commas inside an item (one item per line). */
  ignoreComma?: boolean;
  /** Quotes are ordinary characters (build-push-action's `outputs`). */
  noQuotes?: boolean;
}

/** CSV records: fields split on `,`, records on newlines; `"` quotes a field (`""` inside is one `"`). */
export function csvRecords(text: string, noQuotes = false): string[][] {
  const records: string[][] = [];
  let fields: string[] = [];
  let field = '';
  let i = 0;
  let atFieldStart = true;
  const endRecord = () => {
    fields.push(field);
    // A line with nothing on it is skipped, as csv-parse's skipEmptyLines does.
    if (!(fields.length === 1 && fields[0] === '')) records.push(fields);
    fields = [];
    field = '';
    atFieldStart = true;
  };
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"' && atFieldStart && !noQuotes) {
      // Quoted field: runs to the closing quote, may hold commas and newlines.
      i++;
      while (i < text.length) {
        const q = text[i]!;
        if (q === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += q;
        i++;
      }
      atFieldStart = false;
      continue;
    }
    if (c === ',') {
      fields.push(field);
      field = '';
      atFieldStart = true;
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRecord();
    } else {
      // Relaxed quotes: a quote inside an unquoted field is kept as written.
      field += c;
      atFieldStart = false;
    }
    i++;
  }
  if (field !== '' || fields.length > 0) endRecord();
  return records;
}

export function parseList(text: string, opts: ListOptions = {}): string[] {
  if (text === '') return [];
  const out: string[] = [];
  for (const record of csvRecords(text, opts.noQuotes)) {
    if (record.length === 1) {
      if (opts.ignoreComma) out.push(record[0]!);
      else out.push(...record[0]!.split(','));
    } else if (opts.ignoreComma) {
      out.push(record.join(','));
    } else {
      out.push(...record);
    }
  }
  return out.map((s) => s.trim()).filter((s) => s !== '');
}

/** `key=value` items (labels, build args, registry maps) split at the first `=`. */
export function splitKeyValue(item: string): [string, string | undefined] {
  const eq = item.indexOf('=');
  return eq < 0 ? [item, undefined] : [item.slice(0, eq), item.slice(eq + 1)];
}

/** `type=oci,dest=out,tar=false` -> { type: 'oci', dest: 'out', tar: 'false' } (BuildKit's exporter syntax). */
export function parseAttributes(item: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const record of csvRecords(item)) {
    for (const part of record) {
      const [k, v] = splitKeyValue(part.trim());
      if (k !== '') out[k.toLowerCase()] = v ?? '';
    }
  }
  return out;
}
