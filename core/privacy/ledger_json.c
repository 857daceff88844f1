/* ledger_json.c: the privacy ledger's JSON form, for checkpoints and audits:
 *   {"version":1,"runs":[{"q":0.01,"sigma":1.1,"clip":1,"steps":120}, <a detailed run>],
 *    "inspections":0,"inspected":[]}
 * A run recorded by dp_ledger_record (detailed) adds its book-keeping:
 *   "batch_total":3010,"batch_min":12,"batch_max":40,"empty_batches":0,
 *   "sampling":"poisson"|"shuffle","noise_mode":"reproducible"|"secure","noise_seed":"42",
 *   "noise_counter_first":"0","noise_counter_last":"18446744073709551615",
 *   "sampler_counter_first":"0","sampler_counter_last":"9000"
 * The seed and the generator counters are uint64 values written as decimal strings: the JSON reader
 * keeps numbers as doubles (exact to 2^53) and as int64, so a plain number could not carry
 * values up to 2^64 - 1 exactly. The reader also takes a nonnegative JSON integer for them.
 * Doubles are written with up to 17 significant digits, the fewest that read back bit for bit.
 * A run with none of the book-keeping keys reads back as a plain run (older files); a run with
 * some must have all. A detailed run may add "skipped_steps":3 and "aux_sigma":2.5 (written when
 * nonzero; absent means 0). Readers ignore keys they do not know, so later versions can add fields
 * without breaking older readers of the same version. Errors name the field and the run index. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "privacy/privacy.h"
#include "privacy/json.h"
#include "privacy/ledger.h"

static const char *const sampling_names[2] = { "poisson", "shuffle" };
static const char *const noise_mode_names[2] = { "reproducible", "secure" };

/* ---------------------------------------------------------------- writing */

typedef struct text {
    char *s;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) { t->failed = 1; return; }
        if ((size_t)n < t->cap - t->len) { t->len += (size_t)n; return; }
        size_t cap = t->cap * 2 + (size_t)n;
        char *s = realloc(t->s, cap);
        if (!s) { t->failed = 1; return; }
        t->s = s;
        t->cap = cap;
    }
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double. */
static void format_double(char *buf, size_t size, double v) {
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* A JSON string: quotes, backslashes and control characters escaped, other bytes as they are. */
static void put_string(text *t, const char *s) {
    put(t, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') put(t, "\\%c", *c);
        else if (*c < 0x20) put(t, "\\u%04x", *c);
        else put(t, "%c", *c);
    }
    put(t, "\"");
}

static void put_run(text *t, const ledger_run *r) {
    char q[32], sigma[32], clip[32];
    format_double(q, sizeof q, r->q);
    format_double(sigma, sizeof sigma, r->sigma);
    format_double(clip, sizeof clip, r->clip);
    put(t, "{\"q\":%s,\"sigma\":%s,\"clip\":%s,\"steps\":%lld", q, sigma, clip, (long long)r->steps);
    if (r->detailed) {
        put(t, ",\"batch_total\":%lld,\"batch_min\":%lld,\"batch_max\":%lld,\"empty_batches\":%lld",
            (long long)r->batch_total, (long long)r->batch_min, (long long)r->batch_max,
            (long long)r->empty_batches);
        put(t, ",\"sampling\":\"%s\",\"noise_mode\":\"%s\",\"noise_seed\":\"%llu\"",
            sampling_names[r->sampling], noise_mode_names[r->noise_mode],
            (unsigned long long)r->noise_seed);
        put(t, ",\"noise_counter_first\":\"%llu\",\"noise_counter_last\":\"%llu\""
            ",\"sampler_counter_first\":\"%llu\",\"sampler_counter_last\":\"%llu\"",
            (unsigned long long)r->noise_first, (unsigned long long)r->noise_last,
            (unsigned long long)r->sampler_first, (unsigned long long)r->sampler_last);
        /* Written only when set, so files of runs without them read as before. */
        if (r->skipped_steps) put(t, ",\"skipped_steps\":%lld", (long long)r->skipped_steps);
        if (r->aux_sigma != 0) {
            char aux[32];
            format_double(aux, sizeof aux, r->aux_sigma);
            put(t, ",\"aux_sigma\":%s", aux);
        }
    }
    put(t, "}");
}

char *dp_ledger_to_json(const dp_ledger *ledger) {
    if (!ledger) return dp_fail_null(DP_EARG, "dp_ledger_to_json: ledger must not be NULL");
    text t = { malloc(256), 0, 256, 0 };
    if (!t.s) return dp_fail_null(DP_ENOMEM, "dp_ledger_to_json: out of memory");
    put(&t, "{\"version\":1,\"runs\":[");
    for (int32_t i = 0; i < ledger->n; i++) {
        if (i) put(&t, ",");
        put_run(&t, &ledger->runs[i]);
    }
    put(&t, "],\"inspections\":%lld,\"inspected\":[", (long long)ledger->inspections);
    for (int32_t i = 0; i < ledger->n_inspected; i++) {
        if (i) put(&t, ",");
        put_string(&t, ledger->inspected[i]);
    }
    put(&t, "]}");
    if (t.failed) {
        free(t.s);
        return dp_fail_null(DP_ENOMEM, "dp_ledger_to_json: out of memory for %d runs", (int)ledger->n);
    }
    return t.s;
}

/* ---------------------------------------------------------------- reading */

static const char *const FN = "dp_ledger_from_json";

/* A number member of a run, checked; what names the range in the message. */
static int run_number(double *out, const dp_json *run, int32_t i, const char *key,
                      const char *what) {
    const dp_json *v = dp_json_get(run, key);
    if (!v) return dp_fail(DP_EARG, "%s: runs[%d] lacks \"%s\" (%s)", FN, (int)i, key, what);
    if (v->type != DP_JSON_NUMBER)
        return dp_fail(DP_EARG, "%s: runs[%d].%s must be a number (%s), got %s", FN, (int)i, key,
                       what, dp_json_type_name(v->type));
    *out = v->number;
    return 0;
}

/* The book-keeping keys: a run with any of them is detailed and must have all. */
static const char *const detail_keys[] = {
    "batch_total", "batch_min", "batch_max", "empty_batches", "sampling", "noise_mode",
    "noise_seed", "noise_counter_first", "noise_counter_last", "sampler_counter_first",
    "sampler_counter_last",
};
enum { N_DETAIL_KEYS = sizeof detail_keys / sizeof detail_keys[0] };

/* Member key of run i, which must be present. */
static const dp_json *member(const dp_json *run, int32_t i, const char *key) {
    const dp_json *v = dp_json_get(run, key);
    if (!v)
        dp_fail(DP_EARG, "%s: runs[%d] lacks \"%s\" (a run with book-keeping fields must have all of "
                "them)", FN, (int)i, key);
    return v;
}

/* An integer >= 0 (int64). */
static int run_count(int64_t *out, const dp_json *run, int32_t i, const char *key) {
    const dp_json *v = member(run, i, key);
    if (!v) return DP_EARG;
    if (v->type != DP_JSON_NUMBER || !v->is_integer || v->integer < 0)
        return dp_fail(DP_EARG, "%s: runs[%d].%s must be an integer >= 0", FN, (int)i, key);
    *out = v->integer;
    return 0;
}

/* A uint64: a decimal string of 1 to 20 digits (no sign, no leading zeros) below 2^64, or a
 * nonnegative JSON integer. */
static int run_u64(uint64_t *out, const dp_json *run, int32_t i, const char *key) {
    const dp_json *v = member(run, i, key);
    if (!v) return DP_EARG;
    if (v->type == DP_JSON_NUMBER && v->is_integer && v->integer >= 0) {
        *out = (uint64_t)v->integer;
        return 0;
    }
    const char *s = v->type == DP_JSON_STRING ? v->string : NULL;
    size_t n = s ? strlen(s) : 0;
    int ok = n >= 1 && n <= 20 && !(n > 1 && s[0] == '0');
    uint64_t x = 0;
    for (size_t k = 0; ok && k < n; k++) {
        unsigned d = (unsigned)(s[k] - '0');
        ok = s[k] >= '0' && s[k] <= '9' && x <= (UINT64_MAX - d) / 10;
        x = x * 10 + d;
    }
    if (!ok)
        return dp_fail(DP_EARG, "%s: runs[%d].%s must be a decimal string of an integer in "
                       "[0, 2^64), got %s%s%s", FN, (int)i, key, s ? "\"" : "",
                       s ? s : dp_json_type_name(v->type), s ? "\"" : "");
    *out = x;
    return 0;
}

/* One of two names; the index into *out. */
static int run_name(int32_t *out, const dp_json *run, int32_t i, const char *key,
                    const char *const names[2]) {
    const dp_json *v = member(run, i, key);
    if (!v) return DP_EARG;
    for (int32_t k = 0; k < 2; k++)
        if (v->type == DP_JSON_STRING && strcmp(v->string, names[k]) == 0) { *out = k; return 0; }
    return dp_fail(DP_EARG, "%s: runs[%d].%s must be \"%s\" or \"%s\"", FN, (int)i, key, names[0],
                   names[1]);
}

static int read_details(ledger_run *r, const dp_json *run, int32_t i) {
    int rc;
    if ((rc = run_count(&r->batch_total, run, i, "batch_total")) ||
        (rc = run_count(&r->batch_min, run, i, "batch_min")) ||
        (rc = run_count(&r->batch_max, run, i, "batch_max")) ||
        (rc = run_count(&r->empty_batches, run, i, "empty_batches")) ||
        (rc = run_name(&r->sampling, run, i, "sampling", sampling_names)) ||
        (rc = run_name(&r->noise_mode, run, i, "noise_mode", noise_mode_names)) ||
        (rc = run_u64(&r->noise_seed, run, i, "noise_seed")) ||
        (rc = run_u64(&r->noise_first, run, i, "noise_counter_first")) ||
        (rc = run_u64(&r->noise_last, run, i, "noise_counter_last")) ||
        (rc = run_u64(&r->sampler_first, run, i, "sampler_counter_first")) ||
        (rc = run_u64(&r->sampler_last, run, i, "sampler_counter_last")))
        return rc;
    if (r->batch_min > r->batch_max || r->batch_max > r->batch_total)
        return dp_fail(DP_EARG, "%s: runs[%d] batch sizes are inconsistent: batch_min %lld, "
                       "batch_max %lld, batch_total %lld (need min <= max <= total)", FN, (int)i,
                       (long long)r->batch_min, (long long)r->batch_max, (long long)r->batch_total);
    if (r->empty_batches > r->steps || (r->empty_batches > 0) != (r->batch_min == 0))
        return dp_fail(DP_EARG, "%s: runs[%d].empty_batches %lld does not fit steps %lld and "
                       "batch_min %lld", FN, (int)i, (long long)r->empty_batches,
                       (long long)r->steps, (long long)r->batch_min);
    if (r->noise_last < r->noise_first || r->sampler_last < r->sampler_first)
        return dp_fail(DP_EARG, "%s: runs[%d] counters run backwards (noise %llu..%llu, sampler "
                       "%llu..%llu)", FN, (int)i, (unsigned long long)r->noise_first,
                       (unsigned long long)r->noise_last, (unsigned long long)r->sampler_first,
                       (unsigned long long)r->sampler_last);
    r->detailed = 1;
    return 0;
}

/* skipped_steps and aux_sigma: optional (absent in older files: 0), only on detailed runs. */
static int read_optional(ledger_run *r, const dp_json *run, int32_t i) {
    const dp_json *skipped = dp_json_get(run, "skipped_steps"), *aux = dp_json_get(run, "aux_sigma");
    if ((skipped || aux) && !r->detailed)
        return dp_fail(DP_EARG, "%s: runs[%d] has skipped_steps or aux_sigma but no book-keeping "
                       "fields (only runs recorded step by step carry them)", FN, (int)i);
    if (skipped) {
        if (skipped->type != DP_JSON_NUMBER || !skipped->is_integer || skipped->integer < 0 ||
            skipped->integer > r->steps)
            return dp_fail(DP_EARG, "%s: runs[%d].skipped_steps must be an integer in [0, steps = "
                           "%lld]", FN, (int)i, (long long)r->steps);
        r->skipped_steps = skipped->integer;
    }
    if (aux) {
        if (aux->type != DP_JSON_NUMBER || !(aux->number >= 0) || !isfinite(aux->number))
            return dp_fail(DP_EARG, "%s: runs[%d].aux_sigma must be a finite number >= 0", FN, (int)i);
        r->aux_sigma = aux->number;
    }
    return 0;
}

static int read_run(dp_ledger *l, const dp_json *run, int32_t i) {
    ledger_run r = { 0 };
    char what[48];
    int rc;
    if (run->type != DP_JSON_OBJECT)
        return dp_fail(DP_EARG, "%s: runs[%d] must be an object, got %s", FN, (int)i,
                       dp_json_type_name(run->type));
    if ((rc = run_number(&r.q, run, i, "q", "sampling rate in (0, 1]"))) return rc;
    if ((rc = run_number(&r.sigma, run, i, "sigma", "noise multiplier > 0"))) return rc;
    if ((rc = run_number(&r.clip, run, i, "clip", "clipping norm > 0"))) return rc;
    snprintf(what, sizeof what, "runs[%d].q", (int)i);
    if ((rc = dp_check_q(FN, what, r.q))) return rc;
    snprintf(what, sizeof what, "runs[%d].sigma", (int)i);
    if ((rc = dp_check_sigma(FN, what, r.sigma))) return rc;
    snprintf(what, sizeof what, "runs[%d].clip", (int)i);
    if ((rc = dp_ledger_check_clip(FN, what, r.clip))) return rc;
    const dp_json *steps = dp_json_get(run, "steps");
    if (!steps || steps->type != DP_JSON_NUMBER || !steps->is_integer || steps->integer < 1)
        return dp_fail(DP_EARG, "%s: runs[%d].steps must be an integer >= 1", FN, (int)i);
    r.steps = steps->integer;
    for (int k = 0; k < N_DETAIL_KEYS; k++) {
        if (!dp_json_get(run, detail_keys[k])) continue;
        if ((rc = read_details(&r, run, i))) return rc;
        break;
    }
    if ((rc = read_optional(&r, run, i))) return rc;
    return dp_ledger_append(l, &r, FN);
}

static int read_inspections(dp_ledger *l, const dp_json *root) {
    const dp_json *count = dp_json_get(root, "inspections");
    if (count && (count->type != DP_JSON_NUMBER || !count->is_integer || count->integer < 0))
        return dp_fail(DP_EARG, "%s: \"inspections\" must be an integer >= 0", FN);
    l->inspections = count ? count->integer : 0;
    const dp_json *list = dp_json_get(root, "inspected");
    if (!list) return 0;
    if (list->type != DP_JSON_ARRAY || list->n > DP_LEDGER_MAX_INSPECTED)
        return dp_fail(DP_EARG, "%s: \"inspected\" must be an array of at most %d strings", FN,
                       DP_LEDGER_MAX_INSPECTED);
    for (int32_t k = 0; k < list->n; k++) {
        const dp_json *s = &list->items[k];
        if (s->type != DP_JSON_STRING || !s->string[0] || strlen(s->string) > DP_LEDGER_MAX_WHAT)
            return dp_fail(DP_EARG, "%s: inspected[%d] must be a non-empty string of at most %d "
                           "bytes", FN, (int)k, DP_LEDGER_MAX_WHAT);
        dp_ledger_keep_label(l, s->string);
    }
    if (l->n_inspected > l->inspections)
        return dp_fail(DP_EARG, "%s: \"inspected\" lists %d distinct reads but \"inspections\" is "
                       "%lld", FN, (int)l->n_inspected, (long long)l->inspections);
    return 0;
}

static int read_ledger(dp_ledger *l, const dp_json *root) {
    if (root->type != DP_JSON_OBJECT)
        return dp_fail(DP_EARG, "%s: expected an object at the top, got %s", FN,
                       dp_json_type_name(root->type));
    const dp_json *version = dp_json_get(root, "version");
    if (!version || version->type != DP_JSON_NUMBER || !version->is_integer || version->integer != 1)
        return dp_fail(DP_EARG, "%s: \"version\" must be the number 1 (this build reads version 1)", FN);
    const dp_json *runs = dp_json_get(root, "runs");
    if (!runs || runs->type != DP_JSON_ARRAY)
        return dp_fail(DP_EARG, "%s: \"runs\" must be an array of runs, got %s", FN,
                       runs ? dp_json_type_name(runs->type) : "nothing");
    for (int32_t i = 0; i < runs->n; i++) {
        int rc = read_run(l, &runs->items[i], i);
        if (rc) return rc;
    }
    return read_inspections(l, root);
}

dp_ledger *dp_ledger_from_json(const char *json) {
    char err[256];
    dp_json *root = dp_json_parse(json, err, sizeof err);
    if (!root) return dp_fail_null(DP_EARG, "dp_ledger_from_json: malformed JSON %s", err);
    dp_ledger *l = dp_ledger_new();
    if (l && read_ledger(l, root)) {
        dp_ledger_free(l);
        l = NULL;
    }
    dp_json_free(root);
    return l;
}
