import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildResult } from '../build/index.js';
import { stageName } from './log.js';
import { RegistryClient, getManifest, parseReference, type RegistryOptions } from '../registry/index.js';

/** Size and layer count of the built image, for the job summary. */
export interface ImageStats {
  /** Bytes of config + layers as stored (compressed). */
  size: number;
  layers: number;
}

function statsOf(manifestBytes: Buffer): ImageStats | undefined {
  const m = JSON.parse(manifestBytes.toString('utf8')) as { config?: { size?: number }; layers?: Array<{ size?: number }> };
  if (!Array.isArray(m.layers)) return undefined;
  return { size: (m.config?.size ?? 0) + m.layers.reduce((n, l) => n + (l.size ?? 0), 0), layers: m.layers.length };
}

/**
 * Reads the manifest back from where the build put it (an OCI layout it wrote, else the
 * registry it pushed to): BuildResult does not carry sizes. Undefined when neither can be read.
 */
export async function imageStats(result: BuildResult, registry: RegistryOptions): Promise<ImageStats | undefined> {
  const hex = result.digest.replace(/^sha256:/, '');
  for (const o of result.outputs) {
    if (o.kind !== 'oci-layout') continue;
    const bytes = await readFile(join(o.path, 'blobs', 'sha256', hex)).catch(() => undefined);
    if (bytes) return statsOf(bytes);
  }
  const pushed = result.pushed[0];
  if (!pushed) return undefined;
  const client = new RegistryClient(registry);
  try {
    const ref = parseReference(pushed.reference);
    const raw = await getManifest(client, { registry: ref.registry, repository: ref.repository }, pushed.digest);
    return statsOf(raw.bytes);
  } catch {
    return undefined;
  } finally {
    await client.close().catch(() => undefined);
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Markdown table cells: pipes and newlines would break the row. */
function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

export interface SummaryInput {
  result: BuildResult;
  tags: string[];
  stats: ImageStats | undefined;
  totalMs: number;
}

/** The job summary: what was built and where it went, then one row per Dockerfile step. */
export function summaryMarkdown(s: SummaryInput): string {
  const r = s.result;
  const lines: string[] = ['## gantry build', ''];
  lines.push('| | |', '|---|---|');
  lines.push(`| image | ${s.tags.length > 0 ? s.tags.map((t) => `\`${cell(t)}\``).join('<br>') : '(no tags)'} |`);
  lines.push(`| digest | \`${r.digest}\` |`);
  lines.push(`| image ID (config) | \`${r.imageId}\` |`);
  if (r.pushed.length > 0) lines.push(`| pushed | ${r.pushed.map((p) => `\`${cell(p.reference)}\``).join('<br>')} |`);
  for (const o of r.outputs) lines.push(`| ${o.kind} | \`${cell(o.path)}\` |`);
  if (s.stats) {
    lines.push(`| size | ${formatBytes(s.stats.size)} |`);
    lines.push(`| layers | ${s.stats.layers} |`);
  }
  lines.push(`| time | ${(s.totalMs / 1000).toFixed(1)} s |`);
  lines.push('');
  if (r.steps.length > 0) {
    lines.push('| stage | step | time | layer |', '|---|---|---:|---|');
    for (const st of r.steps) {
      const layer = st.layer ? `\`${st.layer.slice(0, 19)}…\`` : '';
      lines.push(`| ${cell(stageName(st.stage))} | \`${cell(st.instruction)}\` | ${(st.ms / 1000).toFixed(2)} s${st.cached ? ' (cached)' : ''} | ${layer} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}
