/**
 * `npm run bench`: every benchmark in one invocation, each printing its own numbers and, where a
 * peer tool is installed, the gantry/peer ratio measured in the same run.
 */
import { spawnSync } from 'node:child_process';
import { benchBuild } from './build.js';
import { benchCopy } from './copy.js';
import { benchRss } from './rss.js';
import { benchRun } from './run.js';
import { benchSamples } from './samples.js';

const has = (tool: string) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;

async function main(): Promise<void> {
  await import('./parse.js');
  if (has('skopeo')) await benchCopy();
  else console.log('copy: skopeo not installed, no peer to compare with');
  await benchBuild();
  await benchRun();
  await benchSamples();
  // The memory bound of issue 6 is a gate, not only a number.
  if (!(await benchRss()).ok) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
