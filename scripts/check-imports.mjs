#!/usr/bin/env node
// Enforces DESIGN.md §3: a folder under src/ imports only from the folders below it.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname, sep } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..', 'src');
const allowed = {
  util: [],
  dockerfile: ['util'],
  archive: ['util'],
  oci: ['util', 'archive'],
  registry: ['util', 'oci', 'archive'],
  fs: ['util', 'archive', 'oci'],
  run: ['util', 'oci', 'fs', 'archive'],
  cache: ['util', 'oci', 'registry', 'archive'],
  context: ['util', 'dockerfile', 'archive'],
  build: ['dockerfile', 'oci', 'archive', 'registry', 'fs', 'run', 'cache', 'context', 'util'],
  cli: ['build', 'util', 'dockerfile', 'oci', 'registry', 'archive', 'context', 'run', 'cache', 'fs'],
  action: ['build', 'util', 'registry', 'oci', 'run'],
  testing: null, // anything
};
const problems = [];
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) check(p);
  }
}
function check(file) {
  const rel = relative(root, file);
  const part = rel.split(sep)[0];
  if (!(part in allowed) && rel.includes(sep)) problems.push(`${rel}: folder "${part}" is not in the layout table`);
  const isTest = file.endsWith('.test.ts');
  const src = readFileSync(file, 'utf8');
  for (const m of src.matchAll(/(?:from|import)\s*\(?\s*['"](\.[^'"]+)['"]/g)) {
    const target = relative(root, resolve(dirname(file), m[1]));
    if (target.startsWith('..')) continue;
    const tpart = target.split(sep)[0];
    if (tpart === part || !target.includes(sep)) continue;
    if (tpart === 'testing') {
      if (!isTest && part !== 'testing') problems.push(`${rel}: shipped code imports test helper ${target}`);
      continue;
    }
    const ok = allowed[part];
    if (ok === null || isTest) continue;
    if (!ok || !ok.includes(tpart)) problems.push(`${rel}: "${part}" may not import "${tpart}" (${m[1]})`);
  }
}
walk(root);
if (problems.length) {
  console.error('import direction violations (DESIGN.md §3):\n' + problems.map((p) => '  ' + p).join('\n'));
  process.exit(1);
}
