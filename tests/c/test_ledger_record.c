/* test_ledger_record.c: the ledger's book-keeping (dp_ledger_record): which steps lengthen a run
 * and which start one, the batch and counter summaries against sums kept here, the JSON form
 * (uint64 counters exact up to 2^64 - 1, older files without the fields, malformed fields named
 * with their run), and the inspection count. */
#include <stdint.h>
#include "dp_test.h"

static dp_ledger_step_info base_step(void) {
    dp_ledger_step_info s;
    memset(&s, 0, sizeof s);
    s.q = 0.01;
    s.sigma = 1.1;
    s.clip = 1.0;
    s.batch_size = 10;
    s.sampling = 0;
    s.noise_mode = DP_NOISE_REPRODUCIBLE;
    s.noise_seed = 7;
    s.noise_counter_before = 100;
    s.noise_counter_after = 150;
    s.sampler_counter_before = 20;
    s.sampler_counter_after = 30;
    return s;
}

/* The step that continues s: its draws start where s's stopped. */
static dp_ledger_step_info next_step(dp_ledger_step_info s, int64_t batch, uint64_t noise_blocks,
                                     uint64_t sampler_blocks) {
    s.batch_size = batch;
    s.noise_counter_before = s.noise_counter_after;
    s.noise_counter_after += noise_blocks;
    s.sampler_counter_before = s.sampler_counter_after;
    s.sampler_counter_after += sampler_blocks;
    return s;
}

static void test_merge(void) {
    dp_ledger *l = dp_ledger_new();
    CHECK_PTR(l);
    int64_t batches[] = { 10, 0, 37, 3, 0, 12 };
    dp_ledger_step_info s = base_step();
    int64_t total = 0, lo = INT64_MAX, hi = 0, empty = 0;
    for (int i = 0; i < 6; i++) {
        if (i) s = next_step(s, batches[i], 50, i == 3 ? 0 : 10);   /* a step may draw nothing */
        total += batches[i];
        lo = batches[i] < lo ? batches[i] : lo;
        hi = batches[i] > hi ? batches[i] : hi;
        empty += batches[i] == 0;
        CHECK_OK(dp_ledger_record(l, &s));
    }
    dp_ledger_run_info r;
    CHECK(dp_ledger_num_runs(l) == 1, "runs %d", dp_ledger_num_runs(l));
    CHECK_OK(dp_ledger_run_detail(l, 0, &r));
    CHECK(r.detailed == 1 && r.steps == 6 && r.q == 0.01 && r.sigma == 1.1 && r.clip == 1.0, "run");
    CHECK(r.batch_total == total && r.batch_min == lo && r.batch_max == hi && r.empty_batches == empty,
          "batches %lld %lld %lld %lld", (long long)r.batch_total, (long long)r.batch_min,
          (long long)r.batch_max, (long long)r.empty_batches);
    CHECK(total == 62 && lo == 0 && hi == 37 && empty == 2, "the test's own sums");
    /* 5 continuing steps of 50 noise blocks after the first (100..150); sampler 4 x 10 after 20..30 */
    CHECK(r.noise_counter_first == 100 && r.noise_counter_last == 400, "noise %llu..%llu",
          (unsigned long long)r.noise_counter_first, (unsigned long long)r.noise_counter_last);
    CHECK(r.sampler_counter_first == 20 && r.sampler_counter_last == 70, "sampler %llu..%llu",
          (unsigned long long)r.sampler_counter_first, (unsigned long long)r.sampler_counter_last);
    CHECK(r.sampling == 0 && r.noise_mode == 0 && r.noise_seed == 7, "generators");
    dp_mech_run m;
    CHECK_OK(dp_ledger_run(l, 0, &m));
    CHECK(m.q == 0.01 && m.sigma == 1.1 && m.steps == 6, "mech run");
    dp_ledger_free(l);
}

/* Each change starts a run; the unchanged continuation lengthens it. */
static void test_split(void) {
    for (int variant = 0; variant <= 9; variant++) {
        dp_ledger *l = dp_ledger_new();
        dp_ledger_step_info a = base_step(), b = next_step(a, 5, 50, 10);
        switch (variant) {
        case 0: break;                                 /* continues */
        case 1: b.q = 0.02; break;
        case 2: b.sigma = 1.2; break;
        case 3: b.clip = 0.5; break;
        case 4: b.sampling = 1; break;
        case 5: b.noise_mode = DP_NOISE_SECURE; b.noise_seed = 0; break;
        case 6: b.noise_seed = 8; break;
        case 7: b.noise_counter_before += 1; b.noise_counter_after += 1; break;   /* a gap */
        case 8: b.sampler_counter_before -= 1; break;  /* overlaps the last draws */
        case 9: b.noise_counter_before = 0; b.noise_counter_after = 50; break;   /* a restart */
        }
        CHECK_OK(dp_ledger_record(l, &a));
        CHECK_OK(dp_ledger_record(l, &b));
        int want = variant == 0 ? 1 : 2;
        CHECK(dp_ledger_num_runs(l) == want, "variant %d: %d runs", variant, dp_ledger_num_runs(l));
        dp_ledger_run_info r;
        CHECK_OK(dp_ledger_run_detail(l, want - 1, &r));
        CHECK(r.steps == (variant == 0 ? 2 : 1) && r.noise_counter_first == (variant == 0 ? 100 : b.noise_counter_before) &&
              r.noise_counter_last == b.noise_counter_after && r.batch_total == (variant == 0 ? 15 : 5),
              "variant %d: last run", variant);
        CHECK(dp_ledger_total_steps(l) == 2, "variant %d: steps", variant);
        dp_ledger_free(l);
    }
}

/* Plain steps and records never share a run; epsilon reads only q, sigma and steps. */
static void test_mixed_with_plain_steps(void) {
    dp_ledger *l = dp_ledger_new();
    dp_ledger_step_info s = base_step();
    CHECK_OK(dp_ledger_step(l, 0.01, 1.1, 1.0));
    CHECK_OK(dp_ledger_record(l, &s));                 /* same mechanism, but a detailed run */
    s = next_step(s, 9, 50, 10);
    CHECK_OK(dp_ledger_record(l, &s));
    CHECK_OK(dp_ledger_step(l, 0.01, 1.1, 1.0));       /* does not lengthen the detailed run */
    CHECK_OK(dp_ledger_step(l, 0.01, 1.1, 1.0));
    CHECK(dp_ledger_num_runs(l) == 3 && dp_ledger_total_steps(l) == 5, "runs %d", dp_ledger_num_runs(l));
    dp_ledger_run_info r[3];
    for (int i = 0; i < 3; i++) CHECK_OK(dp_ledger_run_detail(l, i, &r[i]));
    CHECK(r[0].detailed == 0 && r[0].steps == 1 && r[0].batch_total == 0 && r[0].noise_counter_last == 0,
          "plain run 0");
    CHECK(r[1].detailed == 1 && r[1].steps == 2 && r[1].batch_total == 19, "detailed run 1");
    CHECK(r[2].detailed == 0 && r[2].steps == 2, "plain run 2");
    dp_mech_run runs[1] = { { 0.01, 1.1, 5 } };
    dp_eps_result a, b;
    CHECK_OK(dp_ledger_epsilon(l, &a, DP_ACCT_RDP, 1e-5));
    CHECK_OK(dp_accountant_epsilon(&b, DP_ACCT_RDP, runs, 1, 1e-5));
    CHECK(a.epsilon == b.epsilon && a.epsilon > 0, "%.17g vs %.17g", a.epsilon, b.epsilon);
    CHECK(dp_ledger_run_detail(l, 3, &r[0]) == DP_EINDEX &&
          strstr(dp_last_error(), "dp_ledger_run_detail: run index must be in [0, 3), got 3"), "%s", dp_last_error());
    dp_ledger_free(l);
}

static void expect_record_error(dp_ledger *l, dp_ledger_step_info s, const char *needle) {
    CHECK(dp_ledger_record(l, &s) == DP_EARG && strstr(dp_last_error(), needle),
          "message '%s' lacks '%s'", dp_last_error(), needle);
}

static void test_bad_records(void) {
    dp_ledger *l = dp_ledger_new();
    dp_ledger_step_info s = base_step();
    s.q = 0;
    expect_record_error(l, s, "dp_ledger_record: q (sampling rate) must be in (0, 1], got 0");
    s = base_step(); s.sigma = NAN;
    expect_record_error(l, s, "dp_ledger_record: sigma (noise multiplier)");
    s = base_step(); s.clip = INFINITY;
    expect_record_error(l, s, "dp_ledger_record: clip (clipping norm) must be finite and > 0, got inf");
    s = base_step(); s.batch_size = -1;
    expect_record_error(l, s, "dp_ledger_record: batch_size must be >= 0 (the realised logical batch size), got -1");
    s = base_step(); s.sampling = 2;
    expect_record_error(l, s, "dp_ledger_record: sampling must be 0 (Poisson) or 1 (shuffled fixed-size), got 2");
    s = base_step(); s.noise_mode = -1;
    expect_record_error(l, s, "dp_ledger_record: noise_mode must be 0 (reproducible) or 1 (secure), got -1");
    s = base_step(); s.noise_counter_after = 99;
    expect_record_error(l, s, "noise_counter_after (99) is below noise_counter_before (100)");
    s = base_step(); s.sampler_counter_after = 19;
    expect_record_error(l, s, "sampler_counter_after (19) is below sampler_counter_before (20)");
    s = base_step();
    CHECK(dp_ledger_record(NULL, &s) == DP_EARG && dp_ledger_record(l, NULL) == DP_EARG, "NULLs");
    CHECK(dp_ledger_num_runs(l) == 0, "nothing recorded");
    /* an overflowing batch total fails and leaves the run as it was */
    s.batch_size = INT64_MAX;
    CHECK_OK(dp_ledger_record(l, &s));
    s = next_step(s, 1, 1, 1);
    expect_record_error(l, s, "batch_total of run 0 would overflow int64");
    dp_ledger_run_info r;
    CHECK_OK(dp_ledger_run_detail(l, 0, &r));
    CHECK(r.steps == 1 && r.batch_total == INT64_MAX && r.noise_counter_last == 150, "unchanged");
    dp_ledger_free(l);
}

static int same_run(const dp_ledger_run_info *a, const dp_ledger_run_info *b) {
    return a->q == b->q && a->sigma == b->sigma && a->clip == b->clip && a->steps == b->steps &&
           a->batch_total == b->batch_total && a->batch_min == b->batch_min &&
           a->batch_max == b->batch_max && a->empty_batches == b->empty_batches &&
           a->sampling == b->sampling && a->noise_mode == b->noise_mode &&
           a->noise_seed == b->noise_seed && a->noise_counter_first == b->noise_counter_first &&
           a->noise_counter_last == b->noise_counter_last &&
           a->sampler_counter_first == b->sampler_counter_first &&
           a->sampler_counter_last == b->sampler_counter_last && a->detailed == b->detailed;
}

static void test_json_round_trip(void) {
    dp_ledger *l = dp_ledger_new();
    CHECK_OK(dp_ledger_step(l, 1.0 / 3, 0.7, 2.0));
    dp_ledger_step_info s = base_step();
    s.noise_seed = UINT64_MAX;
    s.noise_counter_before = UINT64_MAX - 100;   /* near 2^64: no double holds these exactly */
    s.noise_counter_after = UINT64_MAX - 51;
    s.sampler_counter_before = (UINT64_C(1) << 53) + 1;
    s.sampler_counter_after = (UINT64_C(1) << 63);
    CHECK_OK(dp_ledger_record(l, &s));
    s = next_step(s, 0, 51, 12345);
    CHECK_OK(dp_ledger_record(l, &s));                /* ends exactly at 2^64 - 1 */
    dp_ledger_step_info t = base_step();
    t.sampling = 1;
    t.noise_mode = DP_NOISE_SECURE;
    t.noise_seed = 0;
    t.q = 256.0 / 60000;
    CHECK_OK(dp_ledger_record(l, &t));
    CHECK_OK(dp_ledger_mark_inspected(l, "norms"));
    char *json = dp_ledger_to_json(l);
    CHECK_PTR(json);
    CHECK(json && strstr(json, "\"noise_seed\":\"18446744073709551615\",\"noise_counter_first\":\"18446744073709551515\","
                               "\"noise_counter_last\":\"18446744073709551615\",\"sampler_counter_first\":\"9007199254740993\","
                               "\"sampler_counter_last\":\"9223372036854788153\""), "%s", json ? json : "NULL");
    CHECK(json && strstr(json, "{\"q\":0.3333333333333333,\"sigma\":0.7,\"clip\":2,\"steps\":1},"), "plain run stays short");
    CHECK(json && strstr(json, "\"sampling\":\"shuffle\",\"noise_mode\":\"secure\",\"noise_seed\":\"0\""), "names");
    CHECK(json && strstr(json, "],\"inspections\":1,\"inspected\":[\"norms\"]}"), "inspections");
    dp_ledger *back = json ? dp_ledger_from_json(json) : NULL;
    CHECK_PTR(back);
    CHECK(dp_ledger_num_runs(back) == 3 && dp_ledger_inspections(back) == 1, "shape");
    for (int i = 0; i < 3 && back; i++) {
        dp_ledger_run_info a, b;
        CHECK_OK(dp_ledger_run_detail(l, i, &a));
        CHECK_OK(dp_ledger_run_detail(back, i, &b));
        CHECK(same_run(&a, &b), "run %d differs after the round trip", i);
    }
    /* the text is a fixed point */
    char *again = back ? dp_ledger_to_json(back) : NULL;
    CHECK(again && json && strcmp(again, json) == 0, "second write differs");
    /* resuming: the step continuing the loaded last run lengthens it */
    t = next_step(t, 4, 2, 0);
    CHECK_OK(dp_ledger_record(back, &t));
    CHECK(dp_ledger_num_runs(back) == 3 && dp_ledger_total_steps(back) == 5, "resume");
    dp_free(again);
    dp_free(json);
    dp_ledger_free(back);
    dp_ledger_free(l);
}

static void test_old_format(void) {
    dp_ledger *l = dp_ledger_from_json("{\"version\":1,\"runs\":[{\"q\":0.01,\"sigma\":1.1,\"clip\":1,\"steps\":120}]}");
    CHECK_PTR(l);
    dp_ledger_run_info r;
    CHECK(l && dp_ledger_run_detail(l, 0, &r) == 0 && r.detailed == 0 && r.steps == 120 &&
          r.noise_counter_last == 0 && r.batch_total == 0, "old run");
    CHECK(dp_ledger_inspections(l) == 0, "no inspections");
    dp_ledger_step_info s = base_step();
    CHECK_OK(dp_ledger_record(l, &s));                 /* same mechanism: still a new run */
    CHECK(dp_ledger_num_runs(l) == 2, "runs %d", dp_ledger_num_runs(l));
    dp_ledger_free(l);

    /* counters written as plain JSON integers are read too */
    l = dp_ledger_from_json("{\"version\":1,\"runs\":[{\"q\":0.5,\"sigma\":1,\"clip\":1,\"steps\":2,"
                            "\"batch_total\":7,\"batch_min\":3,\"batch_max\":4,\"empty_batches\":0,"
                            "\"sampling\":\"poisson\",\"noise_mode\":\"reproducible\",\"noise_seed\":42,"
                            "\"noise_counter_first\":0,\"noise_counter_last\":\"9\","
                            "\"sampler_counter_first\":9007199254740993,\"sampler_counter_last\":\"9007199254740994\"}]}");
    CHECK_PTR(l);
    CHECK(l && dp_ledger_run_detail(l, 0, &r) == 0 && r.detailed && r.noise_seed == 42 && r.noise_counter_last == 9 &&
          r.sampler_counter_first == (UINT64_C(1) << 53) + 1 && r.batch_total == 7, "integers");
    CHECK(l && r.skipped_steps == 0 && r.aux_sigma == 0, "no skipped_steps or aux_sigma: 0");
    dp_ledger_free(l);
}

static void expect_reject(const char *json, const char *needle) {
    dp_ledger *l = dp_ledger_from_json(json);
    CHECK(l == NULL, "accepted: %s", json);
    dp_ledger_free(l);
    CHECK(strstr(dp_last_error(), "dp_ledger_from_json") && strstr(dp_last_error(), needle),
          "message '%s' lacks '%s'", dp_last_error(), needle);
}

/* A file whose second run is detailed, with one field replaced ("KEY":VALUE) or left out. */
static void reject_field(const char *key, const char *value, const char *needle) {
    static const char *keys[] = { "batch_total", "batch_min", "batch_max", "empty_batches", "sampling",
                                  "noise_mode", "noise_seed", "noise_counter_first", "noise_counter_last",
                                  "sampler_counter_first", "sampler_counter_last" };
    static const char *values[] = { "7", "3", "4", "0", "\"poisson\"", "\"reproducible\"", "\"1\"", "\"0\"",
                                    "\"10\"", "\"5\"", "\"6\"" };
    char json[1024];
    int n = snprintf(json, sizeof json, "{\"version\":1,\"runs\":[{\"q\":0.5,\"sigma\":1,\"clip\":1,\"steps\":3},"
                     "{\"q\":0.5,\"sigma\":1,\"clip\":1,\"steps\":2");
    for (int k = 0; k < 11; k++) {
        int replaced = strcmp(keys[k], key) == 0;
        if (replaced && !value) continue;
        n += snprintf(json + n, sizeof json - (size_t)n, ",\"%s\":%s", keys[k], replaced ? value : values[k]);
    }
    snprintf(json + n, sizeof json - (size_t)n, "}]}");
    expect_reject(json, needle);
}

static void test_malformed(void) {
    reject_field("sampler_counter_last", NULL,
                 "runs[1] lacks \"sampler_counter_last\" (a run with book-keeping fields must have all of them)");
    reject_field("batch_total", NULL, "runs[1] lacks \"batch_total\"");
    reject_field("noise_seed", "\"-1\"", "runs[1].noise_seed must be a decimal string of an integer in [0, 2^64), got \"-1\"");
    reject_field("noise_seed", "-1", "runs[1].noise_seed must be a decimal string of an integer in [0, 2^64), got number");
    reject_field("noise_counter_first", "\"18446744073709551616\"", "runs[1].noise_counter_first must be a decimal string");
    reject_field("noise_counter_last", "\"99999999999999999999\"", "runs[1].noise_counter_last must be a decimal string");
    reject_field("noise_counter_last", "\"012\"", "runs[1].noise_counter_last must be a decimal string");
    reject_field("noise_counter_last", "\"\"", "runs[1].noise_counter_last must be a decimal string");
    reject_field("noise_counter_last", "\"1e3\"", "runs[1].noise_counter_last must be a decimal string");
    reject_field("sampler_counter_first", "1.5", "runs[1].sampler_counter_first must be a decimal string");
    reject_field("sampler_counter_first", "null", "got null");
    reject_field("sampling", "\"uniform\"", "runs[1].sampling must be \"poisson\" or \"shuffle\"");
    reject_field("noise_mode", "1", "runs[1].noise_mode must be \"reproducible\" or \"secure\"");
    reject_field("batch_total", "-7", "runs[1].batch_total must be an integer >= 0");
    reject_field("batch_min", "\"3\"", "runs[1].batch_min must be an integer >= 0");
    reject_field("batch_max", "2", "runs[1] batch sizes are inconsistent: batch_min 3, batch_max 2, batch_total 7");
    reject_field("empty_batches", "1", "runs[1].empty_batches 1 does not fit steps 2 and batch_min 3");
    reject_field("noise_counter_first", "\"11\"", "runs[1] counters run backwards (noise 11..10, sampler 5..6)");
    expect_reject("{\"version\":1,\"runs\":[],\"inspections\":-1}", "\"inspections\" must be an integer >= 0");
    expect_reject("{\"version\":1,\"runs\":[],\"inspections\":1,\"inspected\":\"x\"}",
                  "\"inspected\" must be an array of at most 32 strings");
    expect_reject("{\"version\":1,\"runs\":[],\"inspections\":1,\"inspected\":[3]}",
                  "inspected[0] must be a non-empty string of at most 128 bytes");
    expect_reject("{\"version\":1,\"runs\":[],\"inspections\":1,\"inspected\":[\"a\",\"b\"]}",
                  "\"inspected\" lists 2 distinct reads but \"inspections\" is 1");
    char big[600];
    int n = snprintf(big, sizeof big, "{\"version\":1,\"runs\":[],\"inspections\":99,\"inspected\":[");
    for (int k = 0; k < 33; k++) n += snprintf(big + n, sizeof big - (size_t)n, "%s\"l%d\"", k ? "," : "", k);
    snprintf(big + n, sizeof big - (size_t)n, "]}");
    expect_reject(big, "\"inspected\" must be an array of at most 32 strings");
    /* the control: the same file with every field in place loads */
    dp_ledger *ok = dp_ledger_from_json(
        "{\"version\":1,\"runs\":[{\"q\":0.5,\"sigma\":1,\"clip\":1,\"steps\":2,\"batch_total\":7,\"batch_min\":3,"
        "\"batch_max\":4,\"empty_batches\":0,\"sampling\":\"poisson\",\"noise_mode\":\"reproducible\","
        "\"noise_seed\":\"1\",\"noise_counter_first\":\"0\",\"noise_counter_last\":\"10\","
        "\"sampler_counter_first\":\"5\",\"sampler_counter_last\":\"6\"}]}");
    CHECK_PTR(ok);
    dp_ledger_free(ok);
}

static void test_inspections(void) {
    dp_ledger *l = dp_ledger_new();
    const char *whats[] = { "norms", "clip factors", "norms", "say \"hi\"\n", "norms" };
    for (int i = 0; i < 5; i++) CHECK_OK(dp_ledger_mark_inspected(l, whats[i]));
    CHECK(dp_ledger_inspections(l) == 5, "count %lld", (long long)dp_ledger_inspections(l));
    CHECK(dp_ledger_mark_inspected(l, "") == DP_EARG &&
          strstr(dp_last_error(), "dp_ledger_mark_inspected: what must be a non-empty string"), "%s", dp_last_error());
    CHECK(dp_ledger_mark_inspected(l, NULL) == DP_EARG && dp_ledger_mark_inspected(NULL, "x") == DP_EARG, "NULLs");
    CHECK(dp_ledger_inspections(l) == 5 && dp_ledger_inspections(NULL) == 0, "failures do not count");
    char *json = dp_ledger_to_json(l);
    CHECK(json && strstr(json, "\"inspections\":5,\"inspected\":[\"norms\",\"clip factors\",\"say \\\"hi\\\"\\u000a\"]}"),
          "%s", json ? json : "NULL");
    dp_ledger *back = json ? dp_ledger_from_json(json) : NULL;
    char *again = back ? dp_ledger_to_json(back) : NULL;
    CHECK(again && strcmp(again, json) == 0, "labels round-trip: %s", again ? again : dp_last_error());
    dp_free(again);
    dp_free(json);
    dp_ledger_free(back);

    /* 40 distinct labels: all counted, the first 32 listed; a long label is cut to 128 bytes at a
     * character boundary (127 'a' then a 2-byte character: the character goes) */
    char label[300];
    for (int i = 0; i < 40; i++) {
        snprintf(label, sizeof label, "stat %d", i);
        CHECK_OK(dp_ledger_mark_inspected(l, label));
    }
    memset(label, 'a', 127);
    strcpy(label + 127, "\xc3\xa9tail");
    dp_ledger *m = dp_ledger_new();
    CHECK_OK(dp_ledger_mark_inspected(m, label));
    label[127] = '\0';
    char want[400];
    snprintf(want, sizeof want, "\"inspected\":[\"%s\"]}", label);
    json = dp_ledger_to_json(m);
    CHECK(json && strstr(json, want), "cut label: %s", json ? json : "NULL");
    dp_free(json);
    dp_ledger_free(m);
    CHECK(dp_ledger_inspections(l) == 45, "count %lld", (long long)dp_ledger_inspections(l));
    json = dp_ledger_to_json(l);
    CHECK(json && strstr(json, "\"stat 28\"]}") && !strstr(json, "\"stat 29\""), "listed: %s", json ? json : "NULL");
    dp_free(json);
    dp_ledger_free(l);
}

/* Skipped steps (f16 overflow) count and lengthen runs; a change of aux_sigma starts a run. */
static void test_skipped_and_aux(void) {
    dp_ledger *l = dp_ledger_new();
    dp_ledger_step_info s = base_step();
    /* aux 0,0,0 | 0.5,0.5 | 0 ; skipped on steps 1, 3, 4 */
    double aux[6] = { 0, 0, 0, 0.5, 0.5, 0 };
    int skipped[6] = { 0, 1, 0, 1, 1, 0 };
    for (int i = 0; i < 6; i++) {
        if (i) s = next_step(s, 10, 50, 10);
        s.aux_sigma = aux[i];
        s.skipped = skipped[i];
        CHECK_OK(dp_ledger_record(l, &s));
    }
    CHECK(dp_ledger_num_runs(l) == 3, "runs %d", dp_ledger_num_runs(l));
    CHECK(dp_ledger_total_steps(l) == 6, "every step counts, skipped or not");
    int64_t want_steps[3] = { 3, 2, 1 }, want_skipped[3] = { 1, 2, 0 };
    double want_aux[3] = { 0, 0.5, 0 };
    dp_ledger_run_info r[3];
    for (int i = 0; i < 3; i++) {
        CHECK_OK(dp_ledger_run_detail(l, i, &r[i]));
        CHECK(r[i].steps == want_steps[i] && r[i].skipped_steps == want_skipped[i] &&
              r[i].aux_sigma == want_aux[i], "run %d: steps %lld skipped %lld aux %g", i,
              (long long)r[i].steps, (long long)r[i].skipped_steps, r[i].aux_sigma);
    }
    /* The split runs still chain their counters. */
    CHECK(r[1].noise_counter_first == r[0].noise_counter_last, "counters continue across the split");

    char *json = dp_ledger_to_json(l);
    CHECK(json && strstr(json, "\"skipped_steps\":2,\"aux_sigma\":0.5}") &&
          strstr(json, "\"skipped_steps\":1}"), "json: %s", json ? json : "NULL");
    dp_ledger *back = json ? dp_ledger_from_json(json) : NULL;
    CHECK_PTR(back);
    for (int i = 0; back && i < 3; i++) {
        dp_ledger_run_info b;
        CHECK_OK(dp_ledger_run_detail(back, i, &b));
        CHECK(same_run(&b, &r[i]) && b.skipped_steps == r[i].skipped_steps && b.aux_sigma == r[i].aux_sigma,
              "run %d round trip", i);
    }
    dp_ledger_free(back);
    dp_free(json);

    /* Bad values name the field. */
    s = next_step(s, 10, 50, 10);
    s.skipped = 2;
    expect_record_error(l, s, "skipped must be 0");
    s.skipped = 0;
    s.aux_sigma = -1;
    expect_record_error(l, s, "aux_sigma must be finite and >= 0");
    s.aux_sigma = INFINITY;
    expect_record_error(l, s, "aux_sigma must be finite and >= 0");
    dp_ledger_free(l);

    const char *head = "{\"version\":1,\"runs\":[{\"q\":0.01,\"sigma\":1,\"clip\":1,\"steps\":2";
    const char *detail = ",\"batch_total\":20,\"batch_min\":10,\"batch_max\":10,\"empty_batches\":0,"
        "\"sampling\":\"poisson\",\"noise_mode\":\"reproducible\",\"noise_seed\":\"1\","
        "\"noise_counter_first\":\"0\",\"noise_counter_last\":\"4\",\"sampler_counter_first\":\"0\","
        "\"sampler_counter_last\":\"2\"";
    struct { const char *extra; const char *needle; } bad[] = {
        { ",\"skipped_steps\":3", "skipped_steps must be an integer in [0, steps = 2]" },
        { ",\"skipped_steps\":-1", "skipped_steps must be an integer" },
        { ",\"aux_sigma\":-0.5", "runs[0].aux_sigma must be a finite number >= 0" },
        { ",\"aux_sigma\":\"1\"", "runs[0].aux_sigma must be a finite number >= 0" },
    };
    char text[1024];
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof text, "%s%s%s}]}", head, detail, bad[i].extra);
        expect_reject(text, bad[i].needle);
    }
    snprintf(text, sizeof text, "%s,\"skipped_steps\":1}]}", head);
    expect_reject(text, "has skipped_steps or aux_sigma but no book-keeping");
    /* Present and valid: read. */
    snprintf(text, sizeof text, "%s%s,\"skipped_steps\":2,\"aux_sigma\":3}]}", head, detail);
    dp_ledger *ok = dp_ledger_from_json(text);
    dp_ledger_run_info o;
    CHECK(ok && dp_ledger_run_detail(ok, 0, &o) == 0 && o.skipped_steps == 2 && o.aux_sigma == 3.0,
          "explicit fields: %s", dp_last_error());
    dp_ledger_free(ok);
}

int main(void) {
    test_merge();
    test_split();
    test_mixed_with_plain_steps();
    test_bad_records();
    test_json_round_trip();
    test_old_format();
    test_malformed();
    test_inspections();
    test_skipped_and_aux();
    return dp_test_finish("test_ledger_record");
}
