/**
 * `WWW-Authenticate` parsing (RFC 7235). One header may carry several challenges, and quoted
 * parameter values may contain commas (`scope="repository:a:pull,push"`), so a split on commas
 * is wrong; this is a small tokenizer instead.
 */
export interface Challenge {
  /** Lowercased: `bearer`, `basic`, ... */
  scheme: string;
  /** Parameter names lowercased; values unquoted. */
  params: Record<string, string>;
}

const TOKEN_RE = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y;

export function parseChallenges(headers: string | string[] | undefined): Challenge[] {
  if (headers === undefined) return [];
  const list = Array.isArray(headers) ? headers : [headers];
  return list.flatMap(parseOne);
}

function parseOne(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipWs = () => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  const token = (): string | undefined => {
    TOKEN_RE.lastIndex = i;
    const m = TOKEN_RE.exec(header);
    if (!m) return undefined;
    i += m[0].length;
    return m[0];
  };
  const quoted = (): string => {
    // at opening quote
    i++;
    let v = '';
    while (i < n && header[i] !== '"') {
      if (header[i] === '\\' && i + 1 < n) i++;
      v += header[i];
      i++;
    }
    i++; // closing quote (or end)
    return v;
  };
  let current: Challenge | undefined;
  while (i < n) {
    skipWs();
    if (header[i] === ',') {
      i++;
      continue;
    }
    const start = i;
    const name = token();
    if (name === undefined) {
      i++; // garbage character: skip it rather than give up on the whole header
      continue;
    }
    skipWs();
    if (header[i] === '=' && current) {
      i++;
      skipWs();
      const value = header[i] === '"' ? quoted() : (token() ?? '');
      current.params[name.toLowerCase()] = value;
      continue;
    }
    if (header[i] === '=' && !current) {
      // parameters without a scheme: ignore up to the next comma
      i = start + name.length + 1;
      continue;
    }
    // A bare token starts a new challenge (its scheme). token68 values (`Basic abc==`) are rare in
    // challenges and carry nothing we use.
    current = { scheme: name.toLowerCase(), params: {} };
    out.push(current);
  }
  return out;
}

/** The challenge we can answer: bearer preferred over basic, others ignored. */
export function pickChallenge(challenges: Challenge[]): Challenge | undefined {
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
}
