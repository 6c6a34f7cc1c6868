/** Levenshtein distance over code points; small inputs only (keywords, flag names). */
export function levenshtein(a: string, b: string): number {
  const s = Array.from(a);
  const t = Array.from(b);
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const cur = [i];
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
    }
    prev = cur;
  }
  return prev[t.length]!;
}

/**
 * The closest candidate when it is close enough to be a plausible typo (at most two edits and
 * fewer edits than the word has characters), else undefined.
 */
export function closest(word: string, candidates: readonly string[], caseSensitive = false): string | undefined {
  const w = caseSensitive ? word : word.toLowerCase();
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = levenshtein(w, caseSensitive ? c : c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  if (best === undefined || bestD === 0 || bestD > 2 || bestD >= Array.from(w).length) return undefined;
  return best;
}
