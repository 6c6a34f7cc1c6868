export { parseDockerignore, loadDockerignore, type LoadedIgnore } from './file.js';
export { IgnoreMatcher, IgnorePattern, legacyMatches, type ParentMatch } from './matcher.js';
export { cleanPath, dirPath } from './paths.js';
