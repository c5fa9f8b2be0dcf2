/*
 * A model's class names: the metadata's own `labels` list (custom models), else the
 * built-in COCO map for 90-class models (effdet's class c is COCO category c + 1),
 * else "class<id>".
 */
#include <json-c/json.h>

#include "core/status.h"
#include "model/model.h"


effdet_status model_load_labels(effdet_model *m, const char *config_json, const char *path, effdet_error *err) {
    int n = m->arch.num_classes;
    json_object *root = config_json ? json_tokener_parse(config_json) : NULL, *labels = NULL;
    effdet_status st;
    if (root && json_object_object_get_ex(root, "labels", &labels) && !json_object_is_type(labels, json_type_null))
        st = labels_from_json(&m->labels, labels, n, path, err);
    else if (n == 90)
        st = labels_builtin(&m->labels, "coco", err);
    else
        st = labels_parse_text(&m->labels, "", n, path, err);
    json_object_put(root);
    return st;
}
