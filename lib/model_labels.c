/*
 * A model's class names: the metadata's own `labels` list (custom models), else the
 * built-in COCO map for 90-class models, else "class<id>".
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "status.h"

effdet_status model_load_labels(effdet_model *m, const char *config_json, const char *path,
                                effdet_error *err);

effdet_status model_load_labels(effdet_model *m, const char *config_json, const char *path,
                                effdet_error *err) {
    int n = m->arch.num_classes;
    effdet_status st = EFFDET_OK;
    json_object *root = config_json ? json_tokener_parse(config_json) : NULL, *labels = NULL;
    m->labels = calloc((size_t)n, sizeof *m->labels);
    if (!m->labels) {
        st = set_error(err, EFFDET_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (root && json_object_object_get_ex(root, "labels", &labels) &&
        !json_object_is_type(labels, json_type_null)) {
        if (!json_object_is_type(labels, json_type_array) || (int)json_object_array_length(labels) != n) {
            st = set_error(err, EFFDET_ERR_FORMAT,
                           "%s: metadata field 'labels': expected a list of %d strings", path, n);
            goto done;
        }
        for (int i = 0; i < n; i++) {
            json_object *s = json_object_array_get_idx(labels, i);
            if (!json_object_is_type(s, json_type_string)) {
                st = set_error(err, EFFDET_ERR_FORMAT, "%s: metadata field 'labels': item %d is not a string",
                               path, i);
                goto done;
            }
            if (!(m->labels[i] = strdup(json_object_get_string(s)))) goto nomem;
        }
        goto done;
    }
    for (int i = 0; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "class%d", i + 1);
        if (!(m->labels[i] = strdup(buf))) goto nomem;
    }
    goto done;
nomem:
    st = set_error(err, EFFDET_ERR_NOMEM, "out of memory");
done:
    json_object_put(root);
    return st;
}
