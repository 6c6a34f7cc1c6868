import { createHash } from 'node:crypto';
import { run } from '../../src/action/run.js';
import { readFile } from 'node:fs/promises';
import { run as exec } from '../../src/testing/exec.js';
import type { TestRegistry } from '../../src/testing/registry.js';
import { skopeoRegistryFlags } from '../../src/testing/skopeo.js';
import { tempDir } from '../../src/testing/tmp.js';
import { join } from 'node:path';

/** Outputs as the runner reads $GITHUB_OUTPUT: `name<<DELIM\nvalue\nDELIM` blocks (or `name=value` lines). */
export async function readOutputs(file: string): Promise<Record<string, string>> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const out: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const [, name, delim] = heredoc;
      const value: string[] = [];
      for (i++; i < lines.length && lines[i] !== delim; i++) value.push(lines[i]!);
      out[name!] = value.join('\n');
    } else if (line.includes('=')) {
      out[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1);
    }
  }
  return out;
}

export interface SkopeoImage {
  digest: string;
  configDigest: string;
  labels: Record<string, string>;
  layers: number;
}

/** What an independent client (skopeo) sees at `<reg.host>/<ref>`. */
export async function skopeoImage(reg: TestRegistry, ref: string): Promise<SkopeoImage> {
  const tmp = await tempDir('action-skopeo');
  try {
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmp.path, XDG_RUNTIME_DIR: tmp.path, REGISTRY_AUTH_FILE: join(tmp.path, 'auth.json') };
    const flags = skopeoRegistryFlags(reg, 'none');
    const info = await exec('skopeo', ['inspect', '--retry-times=0', ...flags, `docker://${reg.host}/${ref}`], { check: true, env });
    const parsed = JSON.parse(info.stdout) as { Digest: string; Labels: Record<string, string> | null; Layers: string[] };
    const config = await exec('skopeo', ['inspect', '--config', '--raw', '--retry-times=0', ...flags, `docker://${reg.host}/${ref}`], { check: true, env });
    return {
      digest: parsed.Digest,
      configDigest: 'sha256:' + createHash('sha256').update(config.stdoutBuffer).digest('hex'),
      labels: parsed.Labels ?? {},
      layers: parsed.Layers.length,
    };
  } finally {
    await tmp.cleanup();
  }
}

/** config.json `auths` entry for the registry's test user. */
export function authsFor(reg: TestRegistry): string {
  const auth = Buffer.from(`${reg.username}:${reg.password}`).toString('base64');
  return JSON.stringify({ auths: { [reg.host]: { auth } } });
}

/**
 * run() in this process, as the runner would start it: @actions/core reads process.env and
 * writes workflow commands to stdout, which is recorded (and still passed through).
 */
export async function runInProcess(env: NodeJS.ProcessEnv): Promise<{ stdout: string; exitCode: number }> {
  const saved = { ...process.env };
  const write = process.stdout.write.bind(process.stdout);
  let stdout = '';
  for (const k of Object.keys(process.env)) if (k.startsWith('INPUT_') || k.startsWith('GITHUB_')) delete process.env[k];
  Object.assign(process.env, env);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return (write as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  const before = process.exitCode;
  try {
    await run(process.env);
    return { stdout, exitCode: Number(process.exitCode ?? 0) };
  } finally {
    process.stdout.write = write;
    process.exitCode = before;
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

