/* json_util.h — typed access to fields of jansson objects, with messages naming file and field. */
#ifndef LLMRT_IO_JSON_UTIL_H
#define LLMRT_IO_JSON_UTIL_H

#include <jansson.h>
#include <stdint.h>

#include "base/status.h"

/* Reads and parses a JSON file whose top level must be an object. On success *out owns a
 * reference (json_decref it); on failure *out is NULL and the message names path, line and
 * column. Duplicate keys are rejected. */
llmrt_status json_read_file(json_t **out, const char *path);

/* Parses len bytes of text as a JSON object (same rules as json_read_file); `where` names the
 * source in messages. */
llmrt_status json_parse_object(json_t **out, const char *text, size_t len, const char *where);

/* The name of a value's JSON type for messages: "object", "array", "string", "integer", "real",
 * "boolean", "null", or "missing" for NULL. */
const char *json_type_name(const json_t *v);

/* Required fields: fail with LLMRT_ERR_FORMAT "<where>: field '<key>' is missing" or
 * "... must be <type>, got <type>". `where` is the file (and object) being read.
 * json_get_float accepts integers too; json_get_string's result is owned by obj. */
llmrt_status json_get_int(const json_t *obj, const char *key, int64_t *v, const char *where);
llmrt_status json_get_float(const json_t *obj, const char *key, double *v, const char *where);
llmrt_status json_get_bool(const json_t *obj, const char *key, int *v, const char *where);
llmrt_status json_get_string(const json_t *obj, const char *key, const char **v, const char *where);

/* Optional fields: a missing key or a JSON null leaves *v = def; a value of the wrong type is
 * still an error. */
llmrt_status json_get_int_opt(const json_t *obj, const char *key, int64_t *v, int64_t def,
                              const char *where);
llmrt_status json_get_float_opt(const json_t *obj, const char *key, double *v, double def,
                                const char *where);
llmrt_status json_get_bool_opt(const json_t *obj, const char *key, int *v, int def,
                               const char *where);
llmrt_status json_get_string_opt(const json_t *obj, const char *key, const char **v,
                                 const char *def, const char *where);

#endif
