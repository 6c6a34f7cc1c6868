/*
 * /gantry/gantry, /gantry/executor, /kaniko/executor, /gantry/warmer and /kaniko/warmer in the
 * executor image.
 *
 * The image has no shell (`:latest`), and Kaniko recipes call /kaniko/executor either as the
 * container command (then it is PID 1) or from a shell in the `:debug` image. A script cannot
 * run without a shell and a symlink to node cannot add the bundle path, so this is a static
 * binary built when the image is built (gcc -static; nothing compiled is committed).
 *
 * Invoked as ".../gantry" it passes its arguments through (gantry build, gantry copy, ...);
 * as ".../warmer" it is Kaniko's warmer ("gantry warmer ARGS"); under any other name it is
 * Kaniko's executor ("gantry executor ARGS"). As PID 1 it starts
 * node under tini, which reaps the orphans RUN steps leave and forwards signals; otherwise it
 * execs node directly, so the process tree stays what the caller expects.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TINI "/gantry/tini"
#define NODE "/gantry/node"
#define BUNDLE "/gantry/gantry.cjs"

int main(int argc, char **argv) {
  const char *self = argc > 0 ? argv[0] : "executor";
  const char *base = strrchr(self, '/');
  base = base ? base + 1 : self;
  int passthrough = strcmp(base, "gantry") == 0;
  int pid1 = getpid() == 1;

  /* tini -s -- node bundle [executor] args... NULL */
  char **args = calloc((size_t)argc + 7, sizeof *args);
  if (!args) {
    perror("gantry launcher");
    return 127;
  }
  int n = 0;
  if (pid1) {
    args[n++] = TINI;
    args[n++] = "-s";
    args[n++] = "--";
  }
  args[n++] = NODE;
  args[n++] = BUNDLE;
  if (!passthrough) args[n++] = strcmp(base, "warmer") == 0 ? "warmer" : "executor";
  for (int i = 1; i < argc; i++) args[n++] = argv[i];
  args[n] = NULL;

  execv(args[0], args);
  fprintf(stderr, "gantry launcher: cannot run %s: %s\n", args[0], strerror(errno));
  return 127;
}
