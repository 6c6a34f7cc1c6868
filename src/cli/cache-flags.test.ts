import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BuildOptions } from '../build/index.js';
import { executorOptions } from './executor.js';
import { executorFlags } from './executor-flags.js';
import { parseFlags } from './flags.js';

const io = { stdout: () => undefined, stderr: () => undefined, env: {} };

function cacheOf(argv: string[]): BuildOptions['cache'] {
  return executorOptions(parseFlags(['--context=/tmp', '--destination=r.example/app:1', ...argv], executorFlags), io).cache;
}

describe('executor cache flags map to BuildOptions.cache with Kaniko meanings', () => {
  const cases: Array<{ name: string; argv: string[]; want: BuildOptions['cache'] }> = [
    { name: 'off unless --cache', argv: ['--cache-repo=r.example/c'], want: undefined },
    { name: 'defaults: RUN layers, 336h, repo derived later', argv: ['--cache'], want: { enabled: true, ttl: '336h', copyLayers: false, runLayers: true, noPush: false } },
    {
      name: 'every flag',
      argv: ['--cache=true', '--cache-repo=oci:/cache', '--cache-ttl=6h', '--cache-copy-layers', '--cache-run-layers=false', '--no-push-cache'],
      want: { enabled: true, repo: 'oci:/cache', ttl: '6h', copyLayers: true, runLayers: false, noPush: true },
    },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(cacheOf(c.argv), c.want));
});
