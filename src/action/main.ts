/** Entry point of the Action bundle (action.yml `runs.main`): esbuild turns this into one CJS file. */
import { run } from './run.js';

void run();
