/* json_util.c — typed access to fields of jansson objects, with messages naming file and field. */
#include "io/json_util.h"

#include <stdlib.h>

#include "base/file.h"

llmrt_status json_parse_object(json_t **out, const char *text, size_t len, const char *where) {
    json_error_t jerr;
    *out = NULL;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return err_set(LLMRT_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", where,
                       jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        const char *t = json_type_name(root);
        json_decref(root);
        return err_set(LLMRT_ERR_FORMAT, "%s: top level is a JSON %s, not an object", where, t);
    }
    *out = root;
    return LLMRT_OK;
}

llmrt_status json_read_file(json_t **out, const char *path) {
    char *text;
    size_t len;
    *out = NULL;
    TRY(file_read_all(path, &text, &len));
    llmrt_status s = json_parse_object(out, text, len, path);
    free(text);
    return s;
}

const char *json_type_name(const json_t *v) {
    if (!v) return "missing";
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* Finds key in obj. A missing key (or a null when optional) gives *j = NULL; a missing
 * required key is an error. A null for a required key is left to the type check. */
static llmrt_status lookup(const json_t *obj, const char *key, int required, const char *where,
                           const json_t **j) {
    *j = json_object_get(obj, key);
    if (!*j && required) return err_set(LLMRT_ERR_FORMAT, "%s: field '%s' is missing", where, key);
    if (json_is_null(*j) && !required) *j = NULL;
    return LLMRT_OK;
}

static llmrt_status wrong_type(const char *where, const char *key, const char *want,
                               const json_t *v) {
    return err_set(LLMRT_ERR_FORMAT, "%s: field '%s' must be %s, got %s", where, key, want,
                   json_type_name(v));
}

static llmrt_status get_int(const json_t *obj, const char *key, int64_t *v, int64_t def,
                            int required, const char *where) {
    const json_t *j;
    TRY(lookup(obj, key, required, where, &j));
    if (!j) {
        *v = def;
        return LLMRT_OK;
    }
    if (!json_is_integer(j)) return wrong_type(where, key, "an integer", j);
    *v = (int64_t)json_integer_value(j);
    return LLMRT_OK;
}

static llmrt_status get_float(const json_t *obj, const char *key, double *v, double def,
                              int required, const char *where) {
    const json_t *j;
    TRY(lookup(obj, key, required, where, &j));
    if (!j) {
        *v = def;
        return LLMRT_OK;
    }
    if (!json_is_number(j)) return wrong_type(where, key, "a number", j);
    *v = json_number_value(j);
    return LLMRT_OK;
}

static llmrt_status get_bool(const json_t *obj, const char *key, int *v, int def, int required,
                             const char *where) {
    const json_t *j;
    TRY(lookup(obj, key, required, where, &j));
    if (!j) {
        *v = def;
        return LLMRT_OK;
    }
    if (!json_is_boolean(j)) return wrong_type(where, key, "a boolean", j);
    *v = json_is_true(j);
    return LLMRT_OK;
}

static llmrt_status get_string(const json_t *obj, const char *key, const char **v, const char *def,
                               int required, const char *where) {
    const json_t *j;
    TRY(lookup(obj, key, required, where, &j));
    if (!j) {
        *v = def;
        return LLMRT_OK;
    }
    if (!json_is_string(j)) return wrong_type(where, key, "a string", j);
    *v = json_string_value(j);
    return LLMRT_OK;
}

llmrt_status json_get_int(const json_t *obj, const char *key, int64_t *v, const char *where) {
    return get_int(obj, key, v, 0, 1, where);
}
llmrt_status json_get_float(const json_t *obj, const char *key, double *v, const char *where) {
    return get_float(obj, key, v, 0, 1, where);
}
llmrt_status json_get_bool(const json_t *obj, const char *key, int *v, const char *where) {
    return get_bool(obj, key, v, 0, 1, where);
}
llmrt_status json_get_string(const json_t *obj, const char *key, const char **v,
                             const char *where) {
    return get_string(obj, key, v, NULL, 1, where);
}
llmrt_status json_get_int_opt(const json_t *obj, const char *key, int64_t *v, int64_t def,
                              const char *where) {
    return get_int(obj, key, v, def, 0, where);
}
llmrt_status json_get_float_opt(const json_t *obj, const char *key, double *v, double def,
                                const char *where) {
    return get_float(obj, key, v, def, 0, where);
}
llmrt_status json_get_bool_opt(const json_t *obj, const char *key, int *v, int def,
                               const char *where) {
    return get_bool(obj, key, v, def, 0, where);
}
llmrt_status json_get_string_opt(const json_t *obj, const char *key, const char **v,
                                 const char *def, const char *where) {
    return get_string(obj, key, v, def, 0, where);
}
