/* main.c — entry point of the clattn command-line tool: subcommand dispatch, help and version. */
#include "cli.h"

#include <string.h>

typedef struct command {
  const char *name, *summary;
  int (*run)(int argc, char **argv);
  void (*help)(FILE *f);
} command;

static const command commands[] = {
    {"devices", "list OpenCL platforms and devices with their capabilities", cli_cmd_devices,
     cli_help_devices},
    {"run", "time one attention problem and check it against the float64 reference", cli_cmd_run,
     cli_help_run},
    {"bench", "sweep sequence lengths and families; print a table, write CSV/JSON", cli_cmd_bench,
     cli_help_bench},
    {"tune", "tune kernel configurations for a device and fill the tuning database", cli_cmd_tune,
     cli_help_tune},
    {"memory", "naive vs flash attention memory, longest context before out-of-memory",
     cli_cmd_memory, cli_help_memory},
};
#define NCOMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
  fprintf(f,
          "usage: clattn <command> [options]\n"
          "       clattn help <command> | --help | --version\n\n"
          "clattn %s, a portable OpenCL attention library: O = softmax(Q K^T * scale + mask) V\n\n"
          "commands:\n",
          clattn_version_string());
  for (int i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nThe device defaults to $CLATTN_DEVICE, else the first GPU, else the first CPU;\n"
             "`clattn help <command>` lists a command's options.\n");
}

static const command *find(const char *name) {
  for (int i = 0; i < NCOMMANDS; i++)
    if (!strcmp(commands[i].name, name)) return &commands[i];
  return NULL;
}

int main(int argc, char **argv) {
  cli_names_init();
  if (argc < 2) {
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return CLI_EXIT_OK;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("clattn %s\n", clattn_version_string());
    return CLI_EXIT_OK;
  }
  if (!strcmp(cmd, "help")) {
    if (argc < 3) {
      usage(stdout);
      return CLI_EXIT_OK;
    }
    const command *c = find(argv[2]);
    if (!c) {
      fprintf(stderr, "clattn: unknown command '%s'\n\n", argv[2]);
      usage(stderr);
      return CLI_EXIT_USAGE;
    }
    c->help(stdout);
    return CLI_EXIT_OK;
  }
  const command *c = find(cmd);
  if (!c) {
    fprintf(stderr, "clattn: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  return c->run(argc - 2, argv + 2);
}
