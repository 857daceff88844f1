/* json.c: a small strict JSON reader for the privacy ledger. Recursive descent with a depth
 * limit, so hostile input can fail but never crash. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "privacy/json.h"

enum { MAX_DEPTH = 64 };

typedef struct parser {
    const char *text;
    size_t pos;
    char *err;
    size_t err_size;
    int failed;
} parser;

static void fail(parser *p, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = 1;
    int len = snprintf(p->err, p->err_size, "at byte %zu: ", p->pos);
    va_list ap;
    va_start(ap, fmt);
    if (len >= 0 && (size_t)len < p->err_size) vsnprintf(p->err + len, p->err_size - (size_t)len, fmt, ap);
    va_end(ap);
}

static void skip_ws(parser *p) {
    while (p->text[p->pos] == ' ' || p->text[p->pos] == '\t' || p->text[p->pos] == '\n' ||
           p->text[p->pos] == '\r')
        p->pos++;
}

static int parse_value(parser *p, dp_json *out, int depth);

static int hex4(parser *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->text[p->pos + (size_t)i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else { fail(p, "expected 4 hex digits after \\u"); return -1; }
    }
    p->pos += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *dst, unsigned cp) {
    if (cp < 0x80) { dst[0] = (char)cp; return 1; }
    if (cp < 0x800) { dst[0] = (char)(0xC0 | (cp >> 6)); dst[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string starting at the opening quote; the decoded text is never longer than the source. */
static char *parse_string(parser *p) {
    size_t start = ++p->pos, end = start;
    while (p->text[end] && p->text[end] != '"') end += p->text[end] == '\\' && p->text[end + 1] ? 2 : 1;
    if (!p->text[end]) { fail(p, "unterminated string"); return NULL; }
    char *s = malloc(end - start + 1);
    if (!s) { fail(p, "out of memory"); return NULL; }
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c < 0x20) { fail(p, "control character in string"); free(s); return NULL; }
        if (c != '\\') { s[n++] = (char)c; p->pos++; continue; }
        char e = p->text[++p->pos];
        p->pos++;
        switch (e) {
        case '"': s[n++] = '"'; break;
        case '\\': s[n++] = '\\'; break;
        case '/': s[n++] = '/'; break;
        case 'b': s[n++] = '\b'; break;
        case 'f': s[n++] = '\f'; break;
        case 'n': s[n++] = '\n'; break;
        case 'r': s[n++] = '\r'; break;
        case 't': s[n++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(p, &cp)) { free(s); return NULL; }
            if (cp >= 0xD800 && cp < 0xDC00 && p->text[p->pos] == '\\' &&
                p->text[p->pos + 1] == 'u') {
                p->pos += 2;
                if (hex4(p, &lo)) { free(s); return NULL; }
                if (lo < 0xDC00 || lo > 0xDFFF) { fail(p, "bad surrogate pair"); free(s); return NULL; }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0 || (cp >= 0xD800 && cp < 0xE000)) {
                fail(p, "\\u escape of NUL or a lone surrogate");
                free(s);
                return NULL;
            }
            n += put_utf8(s + n, cp);   /* at most as long as the 6 or 12 source bytes */
            break;
        }
        default: fail(p, "bad escape '\\%c'", e); free(s); return NULL;
        }
    }
    s[n] = '\0';
    p->pos = end + 1;
    return s;
}

static int parse_number(parser *p, dp_json *out) {
    const char *t = p->text;
    size_t i = p->pos;
    int integral = 1;
    if (t[i] == '-') i++;
    if (t[i] == '0') i++;
    else if (t[i] >= '1' && t[i] <= '9') while (t[i] >= '0' && t[i] <= '9') i++;
    else { fail(p, "expected a value"); return -1; }
    if (t[i] == '.') {
        integral = 0;
        if (!(t[++i] >= '0' && t[i] <= '9')) { fail(p, "expected digits after '.'"); return -1; }
        while (t[i] >= '0' && t[i] <= '9') i++;
    }
    if (t[i] == 'e' || t[i] == 'E') {
        integral = 0;
        if (t[i + 1] == '+' || t[i + 1] == '-') i++;
        if (!(t[++i] >= '0' && t[i] <= '9')) { fail(p, "expected digits in exponent"); return -1; }
        while (t[i] >= '0' && t[i] <= '9') i++;
    }
    char buf[64];
    if (i - p->pos >= sizeof buf) { fail(p, "number too long"); return -1; }
    memcpy(buf, t + p->pos, i - p->pos);
    buf[i - p->pos] = '\0';
    out->type = DP_JSON_NUMBER;
    out->number = strtod(buf, NULL);
    if (integral) {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        out->is_integer = errno == 0;
        out->integer = v;
    }
    p->pos = i;
    return 0;
}

static int grow(parser *p, dp_json *out, int32_t *cap, int keyed) {
    if (out->n < *cap) return 0;
    int32_t c = *cap ? *cap * 2 : 4;
    dp_json *items = realloc(out->items, sizeof(dp_json) * (size_t)c);
    if (items) out->items = items;
    char **keys = keyed ? realloc(out->keys, sizeof(char *) * (size_t)c) : NULL;
    if (keys) out->keys = keys;
    if (!items || (keyed && !keys)) { fail(p, "out of memory"); return -1; }
    *cap = c;
    return 0;
}

static int parse_container(parser *p, dp_json *out, int depth, int keyed) {
    char close = keyed ? '}' : ']';
    out->type = keyed ? DP_JSON_OBJECT : DP_JSON_ARRAY;
    int32_t cap = 0;
    p->pos++;
    skip_ws(p);
    if (p->text[p->pos] == close) { p->pos++; return 0; }
    for (;;) {
        skip_ws(p);
        if (grow(p, out, &cap, keyed)) return -1;
        char *key = NULL;
        if (keyed) {
            if (p->text[p->pos] != '"') { fail(p, "expected a string key"); return -1; }
            if (!(key = parse_string(p))) return -1;
            skip_ws(p);
            if (p->text[p->pos] != ':') { free(key); fail(p, "expected ':' after key"); return -1; }
            p->pos++;
            out->keys[out->n] = key;
        }
        memset(&out->items[out->n], 0, sizeof(dp_json));
        out->n++;   /* counted now so a failure below frees the key and the partial value */
        if (parse_value(p, &out->items[out->n - 1], depth + 1)) return -1;
        skip_ws(p);
        if (p->text[p->pos] == ',') { p->pos++; continue; }
        if (p->text[p->pos] == close) { p->pos++; return 0; }
        fail(p, keyed ? "expected ',' or '}'" : "expected ',' or ']'");
        return -1;
    }
}

static int parse_value(parser *p, dp_json *out, int depth) {
    if (depth > MAX_DEPTH) { fail(p, "nesting deeper than %d", MAX_DEPTH); return -1; }
    skip_ws(p);
    const char *t = p->text + p->pos;
    switch (*t) {
    case '{': return parse_container(p, out, depth, 1);
    case '[': return parse_container(p, out, depth, 0);
    case '"':
        out->type = DP_JSON_STRING;
        return (out->string = parse_string(p)) ? 0 : -1;
    case 't':
        if (strncmp(t, "true", 4)) break;
        out->type = DP_JSON_BOOL; out->boolean = 1; p->pos += 4; return 0;
    case 'f':
        if (strncmp(t, "false", 5)) break;
        out->type = DP_JSON_BOOL; p->pos += 5; return 0;
    case 'n':
        if (strncmp(t, "null", 4)) break;
        out->type = DP_JSON_NULL; p->pos += 4; return 0;
    case '\0': fail(p, "unexpected end of text"); return -1;
    default: return parse_number(p, out);
    }
    fail(p, "expected a value");
    return -1;
}

static void free_inner(dp_json *v) {
    for (int32_t i = 0; i < v->n; i++) {
        free_inner(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->string);
}

void dp_json_free(dp_json *value) {
    if (!value) return;
    free_inner(value);
    free(value);
}

dp_json *dp_json_parse(const char *text, char *err, size_t err_size) {
    parser p = { text ? text : "", 0, err, err_size, 0 };
    if (err_size) err[0] = '\0';
    dp_json *v = calloc(1, sizeof(dp_json));
    if (!v) { fail(&p, "out of memory"); return NULL; }
    if (!text) fail(&p, "no text (NULL)");
    else if (!parse_value(&p, v, 0)) {
        skip_ws(&p);
        if (p.text[p.pos]) fail(&p, "unexpected text after the value");
    }
    if (p.failed) { dp_json_free(v); return NULL; }
    return v;
}

const dp_json *dp_json_get(const dp_json *object, const char *key) {
    if (!object || object->type != DP_JSON_OBJECT) return NULL;
    for (int32_t i = object->n - 1; i >= 0; i--)
        if (strcmp(object->keys[i], key) == 0) return &object->items[i];
    return NULL;
}

const char *dp_json_type_name(dp_json_type type) {
    static const char *names[] = { "null", "boolean", "number", "string", "array", "object" };
    return names[type];
}
