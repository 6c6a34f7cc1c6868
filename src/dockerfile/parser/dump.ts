/**
 * BuildKit's `Node.Dump()` S-expression format, used by its golden parser tests: one
 * `(keyword ["--flag"...] "arg"...)` line per instruction, strings quoted like Go's %q.
 */
import { goQuote, goTrimSpace } from '../shell/go-text.js';
import type { InstructionNode, ParsedDockerfile } from './types.js';

export function dumpInstruction(node: InstructionNode): string {
  let s = node.keyword;
  if (node.flags.length > 0) s += ' [' + node.flags.map(goQuote).join(' ') + ']';
  if (node.inner) s += ' (' + dumpInstruction(node.inner) + ')';
  for (const arg of node.args) s += ' ' + goQuote(arg);
  return goTrimSpace(s);
}

/** The whole tree, each instruction on its own line, ending with a newline. */
export function dumpParsed(p: ParsedDockerfile): string {
  let out = '';
  for (const node of p.instructions) out += '(' + dumpInstruction(node) + ')\n';
  return out;
}
