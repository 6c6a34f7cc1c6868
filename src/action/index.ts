/** src/action: the GitHub Action (action.yml at the repository root) mapped onto build(). */
export { run, failureMessage, metadataJson } from './run.js';
export { readInputs, rejectUnsupported, inputEnvName, type ActionInputs } from './inputs.js';
export { parseList, csvRecords } from './list.js';
export { mapInputs, githubContext, lowerCaseGhcr, defaultGitContext, parseOutputs, registryOf, type GitHubContext, type MappedInputs } from './options.js';
export { prepareCredentials, configKey, type PreparedCredentials } from './credentials.js';
export { summaryMarkdown, imageStats, formatBytes, type ImageStats } from './summary.js';
export { mapRunInputs, parseAddHostsInput, masksFor, SECRET_ENV_PREFIX, type RunInputs } from './run-inputs.js';
export { chooseRunner, systemProbes, reexecStep, sudoArgv, chownTree, NO_RUNNER_HINT, RUNNER_ENV, type RunnerChoice, type RunnerKind, type RunnerProbes } from './runner.js';
