import * as core from '@actions/core';
import type { Logger } from '../util/logger.js';

/** Unnamed stages are reported by index; shown as `stage-N`, as the build's own log lines name them. */
export function stageName(stage: string): string {
  return /^\d+$/.test(stage) ? `stage-${stage}` : stage;
}

/**
 * The build's log in the Actions UI: each stage's steps fold into a group named after the stage
 * (stages can run two at a time, so a stage whose lines interleave with another's opens its group
 * again); warnings and errors become annotations; debug lines show with ACTIONS_STEP_DEBUG.
 */
export interface ActionLogger extends Logger {
  /** Closes an open group (before the step prints its own lines). */
  flush(): void;
}

export function actionLogger(): ActionLogger {
  let open: string | undefined;
  const close = () => {
    if (open !== undefined) core.endGroup();
    open = undefined;
  };
  return {
    log(level, message, fields) {
      const stage = typeof fields?.stage === 'string' ? fields.stage : undefined;
      if (stage !== undefined && level !== 'error') {
        const name = /^\d+$/.test(stage) ? stageName(stage) : `stage ${stage}`;
        if (open !== name) {
          close();
          core.startGroup(name);
          open = name;
        }
      } else if (level !== 'debug' && level !== 'trace') {
        close();
      }
      switch (level) {
        case 'trace':
        case 'debug':
          core.debug(message);
          break;
        case 'warn':
          core.warning(message);
          break;
        case 'error':
          core.error(message);
          break;
        default:
          core.info(message);
      }
    },
    flush: close,
  };
}
