import { GantryError } from '../../util/errors.js';
import { parseDockerfile } from '../parser/index.js';
import { instructionError } from '../instructions/errors.js';
import { parseInstruction } from '../instructions/parse.js';
import type { Instruction } from '../instructions/types.js';
import type { BuildPlan, PlannedStage } from './plan.js';

/**
 * Runs a base image's ONBUILD triggers (its config's `OnBuild` strings) in a stage: parses each
 * trigger and returns a copy of the stage whose instructions start with them, right after FROM.
 * Called by the stage executor once the base config is known. ONBUILD, FROM and MAINTAINER
 * triggers are rejected, as BuildKit does; a trigger's `COPY --from=<stage>` must name a stage
 * defined before this one (the new edges are added to `dependencies`).
 */
export function injectOnbuild(stage: PlannedStage, triggers: readonly string[], plan?: Pick<BuildPlan, 'stages'>): PlannedStage {
  if (triggers.length === 0) return stage;
  const stageNames = new Map<string, number>();
  for (const s of plan?.stages ?? []) if (s.name) stageNames.set(s.name, s.index);
  const injected: Instruction[] = [];
  const dependencies = [...stage.dependencies];
  const images = [...stage.images];
  triggers.forEach((trigger, n) => {
    const file = `${stage.baseName} ONBUILD trigger ${n + 1}`;
    let parsed;
    try {
      parsed = parseDockerfile(trigger + '\n', { file });
    } catch (err) {
      throw wrapTrigger(err, stage, trigger);
    }
    for (const node of parsed.instructions) {
      const kw = node.keyword.toUpperCase();
      if (kw === 'ONBUILD' || kw === 'FROM' || kw === 'MAINTAINER') {
        throw wrapTrigger(instructionError(node, `${kw} isn't allowed as an ONBUILD trigger`), stage, trigger);
      }
      let inst: Instruction;
      try {
        inst = parseInstruction(node);
      } catch (err) {
        throw wrapTrigger(err, stage, trigger);
      }
      const refs: Array<{ value: string; via: 'copy' | 'mount' }> = [];
      if (inst.kind === 'copy' && inst.from !== undefined) refs.push({ value: inst.from, via: 'copy' });
      if (inst.kind === 'run') for (const m of inst.mounts) if (m.from !== undefined) refs.push({ value: m.from, via: 'mount' });
      for (const { value, via } of refs) {
        const idx = /^\d+$/.test(value) ? Number(value) : stageNames.get(value.toLowerCase());
        if (idx === undefined) images.push({ ref: value, via, node });
        else if (idx >= stage.index) throw wrapTrigger(instructionError(node, `stage "${value}" is not defined before this stage`), stage, trigger);
        else dependencies.push({ stage: idx, via, node });
      }
      injected.push(inst);
    }
  });
  return { ...stage, instructions: [...injected, ...stage.instructions], dependencies, images };
}

function wrapTrigger(err: unknown, stage: PlannedStage, trigger: string): GantryError {
  const at = `${stage.from.node.range.file}:${stage.from.node.range.startLine}:${stage.from.node.range.startColumn}`;
  const msg = err instanceof Error ? err.message : String(err);
  return new GantryError('DOCKERFILE_INVALID', `${at}: ONBUILD trigger "${trigger}" of base image ${stage.baseName}: ${msg}`, {
    hint: 'the trigger comes from the base image; fix or rebuild the base image, or use a base without ONBUILD',
    trigger,
    range: stage.from.node.range,
  }, { cause: err });
}
