/* effdetd: command line, configuration, then the server loop. Every configuration
 * option is also a flag: --threads-per-worker 2 sets threads_per_worker. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server.h"

static void usage(FILE *f) {
    fprintf(f, "Usage: effdetd [--config FILE] [--OPTION VALUE ...] [--check-config] [--help] [--version]\n"
               "\n"
               "EfficientDet object-detection HTTP daemon (POST /detect, DeepStack-compatible\n"
               "/v1/vision/detection). Options come from the table below: defaults, then the config\n"
               "file, then flags. See effdetd(8) and effdetd.conf(5).\n\n"
               "  --config FILE      read this configuration file\n"
               "  --check-config     validate the configuration and models, print it, exit\n"
               "  --help, --version\n\n");
    for (const cfg_option *o = config_options(); o->name; o++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", o->name);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_') *p = '-';
        fprintf(f, "  %-26s (default: %s) %s\n", flag, o->def[0] ? o->def : "\"\"", o->help);
    }
}

/* --flag-name -> flag_name when it names a config option. */
static const cfg_option *option_for_flag(const char *arg) {
    char name[64];
    if (strncmp(arg, "--", 2) != 0 || strlen(arg + 2) >= sizeof name) return NULL;
    snprintf(name, sizeof name, "%s", arg + 2);
    char *eq = strchr(name, '=');
    if (eq) *eq = '\0';
    for (char *p = name; *p; p++)
        if (*p == '-') *p = '_';
    return config_find(name);
}

/* Models must be loadable for --check-config to pass: loads them (no warm-up: that runs
 * on the workers' contexts). */
static int check_models(const effdetd_config *cfg, logger *lg) {
    model_set *set = NULL;
    char err[512];
    if (model_set_build(cfg, NULL, lg, &set, err, sizeof err)) {
        fprintf(stderr, "effdetd: %s\n", err);
        return -1;
    }
    fprintf(stderr, "effdetd: %d model(s) load, default %s\n", set->count,
            set->models[set->default_index]->name);
    model_set_unref(set);
    return 0;
}

int main(int argc, char **argv) {
    static server srv; /* large; lives for the whole process */
    server *s = &srv;
    const char *config_path = NULL;
    int check = 0;
    char **ov = calloc((size_t)argc * 2 + 2, sizeof *ov);
    if (!ov) return 1;
    int nov = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            free(ov);
            return 0;
        }
        if (!strcmp(a, "--version")) {
            printf("effdetd %s\n", EFFDET_VERSION);
            free(ov);
            return 0;
        }
        if (!strcmp(a, "--check-config")) {
            check = 1;
            continue;
        }
        if (!strcmp(a, "--config") || !strncmp(a, "--config=", 9)) {
            config_path = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!config_path) {
                fprintf(stderr, "effdetd: --config needs a file\n");
                free(ov);
                return 2;
            }
            continue;
        }
        const cfg_option *o = option_for_flag(a);
        if (!o) {
            fprintf(stderr, "effdetd: unknown argument '%s' (see --help)\n", a);
            free(ov);
            return 2;
        }
        const char *eq = strchr(a, '=');
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value) {
            fprintf(stderr, "effdetd: %s needs a value\n", a);
            free(ov);
            return 2;
        }
        ov[2 * nov] = (char *)o->name;
        ov[2 * nov + 1] = (char *)value;
        nov++;
    }
    char err[1024];
    if (config_build(&s->cfg, config_path, (const char *const *)ov, nov, err, sizeof err) ||
        config_validate(&s->cfg, err, sizeof err)) {
        fprintf(stderr, "effdetd: %s\n", err);
        free(ov);
        return 1;
    }
    log_init(&s->log, s->cfg.log_level);
    if (check) {
        int rc = check_models(&s->cfg, &s->log);
        if (rc == 0) config_write(&s->cfg, stdout);
        free(ov);
        return rc ? 1 : 0;
    }
    s->config_path = config_path;
    s->overrides = ov;
    s->noverrides = nov;
    s->loop.exit_code = 0;
    signal(SIGPIPE, SIG_IGN);
    int rc;
    if (server_start(s, err, sizeof err)) {
        log_error(&s->log, "%s", err);
        rc = 1;
    } else {
        rc = server_run(s);
        log_info(&s->log, "exiting (%d)", rc);
    }
    server_free(s);
    free(ov);
    return rc;
}
