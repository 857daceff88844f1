/* json.h: a small strict JSON reader (RFC 8259) for the privacy ledger: text in, a tree out.
 * Internal to core/privacy. */
#ifndef DP_PRIVACY_JSON_H
#define DP_PRIVACY_JSON_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DP_JSON_NULL, DP_JSON_BOOL, DP_JSON_NUMBER, DP_JSON_STRING, DP_JSON_ARRAY, DP_JSON_OBJECT
} dp_json_type;

typedef struct dp_json {
    dp_json_type type;
    int boolean;
    double number;
    int is_integer;          /* a number written without fraction or exponent that fits int64 */
    int64_t integer;
    char *string;            /* NUL-terminated UTF-8; may contain no NUL */
    int32_t n;               /* items of an array or object */
    struct dp_json *items;
    char **keys;             /* object keys, parallel to items */
} dp_json;

/* Parse text; NULL on malformed input with "at byte N: what was expected" in err. */
dp_json *dp_json_parse(const char *text, char *err, size_t err_size);
void dp_json_free(dp_json *value);
/* Member of an object by key (the last one when repeated), or NULL. */
const dp_json *dp_json_get(const dp_json *object, const char *key);
/* "null", "boolean", "number", "string", "array" or "object". */
const char *dp_json_type_name(dp_json_type type);

#endif
