export {
  planBuild, resolveBuildArgs, splitStages,
  type PlanOptions, type BuildPlan, type PlannedStage, type StageBase, type StageDependency, type ImageDependency, type PlanWarning,
} from './plan.js';
export { StageScope, PROXY_ARG_NAMES, isProxyArg, type ScopeContext, type ArgValue } from './scope.js';
export { injectOnbuild } from './onbuild.js';
export { parsePlatform, formatPlatform, hostPlatform, platformArgs, PLATFORM_ARG_NAMES, type Platform } from './platform.js';
export { lintDockerfile, LINT_RULES, ruleUrl, type LintWarning, type LintOptions } from './lint.js';
export {
  callTargets, callOutline, callCheck, callCheckText, formatTargets, formatOutline, formatCheck, parseCheckDirective,
  type TargetInfo, type Outline, type OutlineArg, type OutlineMount, type CheckResult, type CheckError,
} from './call.js';
export { isValidImageReference } from './reference.js';
