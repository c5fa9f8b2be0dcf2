/*
 * Internal: class label maps. A map names each 0-based class index; label files and
 * the COCO map use 1-based ids (output class_id = index + 1).
 */
#ifndef EFFDET_LABELS_H
#define EFFDET_LABELS_H

#include "effdet.h"

struct json_object;

typedef struct {
    int num_classes;
    char **names; /* num_classes strings, index = 0-based class */
} label_map;

/* Parse `id label` lines ('#' comment lines and blank lines are skipped; the label is
 * the rest of the line, trimmed). Ids are 1-based and must be in 1..num_classes; ids
 * that no line names are called `class<id>`. num_classes <= 0 takes the largest id.
 * `where` names the source in messages, which also give the line number. */
effdet_status labels_parse_text(label_map *m, const char *text, int num_classes, const char *where,
                                effdet_error *err);

/* From a JSON array of strings (a custom model's metadata `labels`), index = 0-based
 * class. num_classes > 0 requires exactly that many entries. */
effdet_status labels_from_json(label_map *m, const struct json_object *array, int num_classes,
                               const char *where, effdet_error *err);

/* Same, from JSON text. */
effdet_status labels_from_json_text(label_map *m, const char *json, int num_classes, const char *where,
                                    effdet_error *err);

/* A map built into the library: "coco" (config/coco-labels.txt, 90 classes). */
effdet_status labels_builtin(label_map *m, const char *name, effdet_error *err);

/* The text of a built-in map (NUL-terminated), or NULL for an unknown name. */
const char *labels_builtin_text(const char *name);

/* 0-based class index of a label (exact match), or -1. */
int labels_find(const label_map *m, const char *label);

/* Label of a 0-based class, or NULL when out of range. */
const char *labels_name(const label_map *m, int cls);

void labels_free(label_map *m);

#endif
