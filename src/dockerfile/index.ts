/** The Dockerfile frontend: text -> parse tree -> typed instructions -> build plan; .dockerignore. */
export * from './parser/index.js';
export * from './shell/index.js';
export * from './instructions/index.js';
export * from './plan/index.js';
export * from './ignore/index.js';
