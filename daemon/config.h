/* effdetd configuration: one table of options (name, type, bounds, default, help) drives
 * the config-file parser, the command-line overrides, --check-config and --help. */
#ifndef EFFDETD_CONFIG_H
#define EFFDETD_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define CFG_STR_MAX 512

typedef struct {
    char listen[CFG_STR_MAX];     /* ADDR:PORT ([v6]:PORT); port 0 = ephemeral */
    char port_file[CFG_STR_MAX];  /* write the bound port here once listening */
    char model[CFG_STR_MAX];      /* one .safetensors model (named by its file stem) */
    char models_dir[CFG_STR_MAX]; /* every *.safetensors in it, named by file stem */
    char default_model[CFG_STR_MAX];
    char api_key[CFG_STR_MAX];
    char instance[CFG_STR_MAX];     /* metrics label and /v1/models field; "" = hostname:port */
    char api_key_file[CFG_STR_MAX]; /* the key is this file's first line (read at start and reload) */
    char log_level[16];
    char precision[8];                 /* fp32 | bf16: every model's, unless model_precision says */
    char model_precision[CFG_STR_MAX]; /* "NAME=fp32|bf16,..." per model name */
    int workers; /* 0 = number of cores */
    int threads_per_worker;
    int queue_size; /* 0 = 2 x workers */
    int deadline_ms;
    int drain_timeout_ms;
    int timeout_s;               /* connection read/write inactivity timeout */
    int max_connections;         /* 0 = no cap */
    int header_timeout_s;        /* request line + headers must arrive within this */
    long long min_body_rate;     /* bytes/s a body must keep up, after header_timeout_s; 0 = none */
    long long body_budget_bytes; /* request bodies held at once (Content-Length); 0 = no budget */
    long long max_body_bytes;
    long long max_header_bytes;
    long long max_pixels;
    int max_parts;
    double threshold;   /* /detect default score threshold */
    int max_detections; /* /detect default */
    double compat_min_confidence;
    int compat_max_predictions;
    int access_log;
    int warmup;
    int allow_dct_scaling;
    int render_quality;
} effdetd_config;

typedef enum { CFG_INT, CFG_LONG, CFG_DOUBLE, CFG_STRING, CFG_BOOL, CFG_ENUM } cfg_type;

typedef struct {
    const char *name;
    cfg_type type;
    size_t offset, size; /* field in effdetd_config (size: string capacity) */
    double min, max;     /* numeric bounds, inclusive */
    const char *def;     /* default, as it would be written in the file */
    const char *choices; /* CFG_ENUM: "a|b|c" */
    int flags;           /* CFG_RESTART */
    const char *help;
} cfg_option;

/* A reload keeps the running value of this option (listening sockets, threads and the
 * queue exist already): it takes effect at the next restart. */
#define CFG_RESTART 1

/* The option table, terminated by a NULL name. */
const cfg_option *config_options(void);
const cfg_option *config_find(const char *name);

/* For every CFG_RESTART option whose value differs between cur and next: put cur's value
 * back into next and append the option's name to `changed` (", "-separated; "" if none). */
void config_keep_restart_options(effdetd_config *next, const effdetd_config *cur, char *changed, size_t cap);

/* Every option to its default. */
void config_defaults(effdetd_config *c);

/* Set one option from its text form. `where` (e.g. "file:12" or "--workers") prefixes
 * the message written to err on failure. Returns 0 on success, -1 on error. */
int config_set(effdetd_config *c, const char *name, const char *value, const char *where, char *err,
               size_t errlen);

/* Parse config text ("name value" lines, '#' comments, optional "double quotes").
 * `path` names the source in messages ("path:line: message"). */
int config_parse_text(effdetd_config *c, const char *text, size_t len, const char *path, char *err,
                      size_t errlen);
/* Read and parse a file. */
int config_load_file(effdetd_config *c, const char *path, char *err, size_t errlen);

/* Defaults, then the file (when path is not NULL), then the EFFDETD_API_KEY environment
 * variable, then overrides: n (name, value) pairs flattened as overrides[2*i],
 * overrides[2*i+1], reported as "--name"; last api_key_file, when set, gives api_key. */
int config_build(effdetd_config *c, const char *path, const char *const *overrides, int n, char *err,
                 size_t errlen);

/* The first line of path, trailing whitespace removed, into key. */
int config_read_key_file(const char *path, char *key, size_t cap, char *err, size_t errlen);

/* The precision ("fp32" / "bf16") model `name` is loaded in: its model_precision entry,
 * else the global precision. */
const char *config_model_precision(const effdetd_config *c, const char *name);

/* Cross-option checks (a model source is given, ...). */
int config_validate(const effdetd_config *c, char *err, size_t errlen);

/* Write the effective configuration in config-file syntax. */
void config_write(const effdetd_config *c, FILE *f);

/* Split listen ("host:port", "[v6]:port", ":port", "port") into host and port. */
int config_split_listen(const char *listen, char *host, size_t hostlen, int *port);

#endif
