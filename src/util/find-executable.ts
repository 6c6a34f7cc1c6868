import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** First executable called `name` in the directories of `pathEnv` (a PATH-style list), like `which`. */
export function findExecutable(name: string, pathEnv: string | undefined = process.env.PATH): string | undefined {
  for (const dir of (pathEnv ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
