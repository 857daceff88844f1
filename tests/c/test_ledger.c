/* test_ledger.c: the privacy ledger: steps merge into runs, JSON round-trips bit for bit, a
 * resumed ledger continues where it stopped, its epsilon matches the accountants', and malformed
 * JSON is rejected with a message naming the field and what was expected. */
#include "dp_test.h"

static void test_steps_and_runs(void) {
    dp_ledger *l = dp_ledger_new();
    CHECK_PTR(l);
    for (int i = 0; i < 120; i++) CHECK_OK(dp_ledger_step(l, 0.01, 1.1, 1.0));
    for (int i = 0; i < 30; i++) CHECK_OK(dp_ledger_step(l, 0.02, 1.1, 1.0));
    CHECK_OK(dp_ledger_step(l, 0.02, 1.1, 0.5));   /* a new clip starts a run */
    CHECK_OK(dp_ledger_step(l, 0.01, 1.1, 1.0));   /* back to the first settings: a new run */
    CHECK(dp_ledger_num_runs(l) == 4, "runs %d", dp_ledger_num_runs(l));
    CHECK(dp_ledger_total_steps(l) == 152, "steps %lld", (long long)dp_ledger_total_steps(l));
    dp_mech_run r;
    double clip;
    CHECK_OK(dp_ledger_run(l, 1, &r));
    CHECK(r.q == 0.02 && r.sigma == 1.1 && r.steps == 30, "run 1: %g %g %lld", r.q, r.sigma, (long long)r.steps);
    CHECK_OK(dp_ledger_run_clip(l, 2, &clip));
    CHECK(clip == 0.5, "clip %g", clip);
    CHECK(dp_ledger_run(l, 4, &r) == DP_EINDEX && strstr(dp_last_error(), "run index must be in [0, 4), got 4"),
          "%s", dp_last_error());

    /* epsilon equals the accountants' on the same runs */
    dp_mech_run runs[4];
    for (int i = 0; i < 4; i++) dp_ledger_run(l, i, &runs[i]);
    for (int k = 0; k < 3; k++) {
        dp_eps_result a, b;
        CHECK_OK(dp_ledger_epsilon(l, &a, (dp_accountant_kind)k, 1e-5));
        CHECK_OK(dp_accountant_epsilon(&b, (dp_accountant_kind)k, runs, 4, 1e-5));
        CHECK(a.epsilon == b.epsilon && a.epsilon > 0, "kind %d: %g vs %g", k, a.epsilon, b.epsilon);
    }
    dp_ledger_free(l);

    dp_ledger *empty = dp_ledger_new();
    dp_eps_result e;
    CHECK_OK(dp_ledger_epsilon(empty, &e, DP_ACCT_RDP, 1e-5));
    CHECK(e.epsilon == 0 && dp_ledger_total_steps(empty) == 0, "empty ledger: %g", e.epsilon);
    char *json = dp_ledger_to_json(empty);
    CHECK(json && strcmp(json, "{\"version\":1,\"runs\":[],\"inspections\":0,\"inspected\":[]}") == 0, "empty json %s", json ? json : "NULL");
    dp_free(json);
    dp_ledger_free(empty);
}

static void test_json_round_trip(void) {
    dp_ledger *l = dp_ledger_new();
    double qs[] = { 0.01, 1.0 / 3, 256.0 / 60000, 1e-300 * 1e290 };
    for (int i = 0; i < 4; i++)
        for (int k = 0; k <= i; k++) CHECK_OK(dp_ledger_step(l, qs[i], 0.1 + i / 7.0, 1.0 / (i + 3)));
    char *json = dp_ledger_to_json(l);
    CHECK_PTR(json);
    CHECK(strncmp(json, "{\"version\":1,\"runs\":[{\"q\":0.01,\"sigma\":0.1,", 40) == 0, "%s", json);
    dp_ledger *back = dp_ledger_from_json(json);
    CHECK_PTR(back);
    CHECK(dp_ledger_num_runs(back) == 4 && dp_ledger_total_steps(back) == 10, "shape");
    for (int i = 0; i < 4; i++) {
        dp_mech_run a, b;
        double ca, cb;
        dp_ledger_run(l, i, &a);
        dp_ledger_run(back, i, &b);
        dp_ledger_run_clip(l, i, &ca);
        dp_ledger_run_clip(back, i, &cb);
        CHECK(a.q == b.q && a.sigma == b.sigma && a.steps == b.steps && ca == cb, "run %d differs", i);
    }
    /* resuming: the next step with the last settings lengthens the last run */
    CHECK_OK(dp_ledger_step(back, qs[3], 0.1 + 3 / 7.0, 1.0 / 6));
    CHECK(dp_ledger_num_runs(back) == 4 && dp_ledger_total_steps(back) == 11, "resume");
    char *again = dp_ledger_to_json(back);
    CHECK(again && strstr(again, "\"steps\":5}],"), "%s", again ? again : "NULL");
    dp_free(again);
    dp_free(json);
    dp_ledger_free(back);
    dp_ledger_free(l);

    /* whitespace, key order and unknown keys (later versions' fields) are fine */
    dp_ledger *w = dp_ledger_from_json(
        " {\n \"runs\" : [ {\"steps\": 7, \"clip\": 2, \"batch\": [1,2,{\"x\":null}], \"sigma\": 1e0,"
        " \"q\": 5E-1, \"note\": \"a\\u00e9\\ud83d\\ude00\\n\"} ], \"rng\": {\"seed\": 1}, \"version\": 1 } ");
    CHECK_PTR(w);
    dp_mech_run r;
    CHECK(w && dp_ledger_run(w, 0, &r) == 0 && r.q == 0.5 && r.sigma == 1 && r.steps == 7, "lenient parse");
    dp_ledger_free(w);
}

static void expect_reject(const char *json, const char *needle) {
    dp_ledger *l = dp_ledger_from_json(json);
    CHECK(l == NULL, "accepted: %s", json ? json : "NULL");
    dp_ledger_free(l);
    CHECK(strstr(dp_last_error(), "dp_ledger_from_json") && strstr(dp_last_error(), needle),
          "message '%s' lacks '%s'", dp_last_error(), needle);
}

static void test_malformed(void) {
    expect_reject(NULL, "no text");
    expect_reject("", "unexpected end of text");
    expect_reject("{", "expected a string key");
    expect_reject("{\"version\":1,\"runs\":[]", "expected ',' or '}'");
    expect_reject("{\"version\":1,\"runs\":[]} x", "unexpected text after the value");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":01}]}", "expected ',' or '}'");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":1.}]}", "expected digits after '.'");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":-}]}", "expected a value");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":.5}]}", "expected a value");
    expect_reject("{\"version\":1,\"runs\":[tru]}", "expected a value");
    expect_reject("{\"version\":1,\"runs\":\"abc}", "unterminated string");
    expect_reject("{\"version\":1,\"runs\":\"a\\x\"}", "bad escape");
    expect_reject("{\"version\":1,\"runs\":\"\\u12\"}", "expected 4 hex digits");
    expect_reject("{\"version\":1,\"runs\":\"\\u0000\"}", "NUL");
    expect_reject("{\"version\" 1}", "expected ':' after key");
    expect_reject("[1,2,]", "expected a value");
    expect_reject("[1,2]", "expected an object at the top, got array");
    expect_reject("{\"runs\":[]}", "\"version\" must be the number 1");
    expect_reject("{\"version\":2,\"runs\":[]}", "\"version\" must be the number 1");
    expect_reject("{\"version\":1}", "\"runs\" must be an array of runs, got nothing");
    expect_reject("{\"version\":1,\"runs\":{}}", "\"runs\" must be an array of runs, got object");
    expect_reject("{\"version\":1,\"runs\":[3]}", "runs[0] must be an object, got number");
    expect_reject("{\"version\":1,\"runs\":[{\"sigma\":1,\"clip\":1,\"steps\":1}]}",
                  "runs[0] lacks \"q\" (sampling rate in (0, 1])");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":\"0.1\",\"sigma\":1,\"clip\":1,\"steps\":1}]}",
                  "runs[0].q must be a number (sampling rate in (0, 1]), got string");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":0.1,\"sigma\":1,\"clip\":1,\"steps\":1},"
                  "{\"q\":1.5,\"sigma\":1,\"clip\":1,\"steps\":1}]}",
                  "runs[1].q (sampling rate) must be in (0, 1], got 1.5");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":0.1,\"sigma\":0,\"clip\":1,\"steps\":1}]}",
                  "runs[0].sigma (noise multiplier) must be finite and > 0, got 0");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":0.1,\"sigma\":1,\"clip\":-1,\"steps\":1}]}",
                  "runs[0].clip (clipping norm) must be finite and > 0");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":0.1,\"sigma\":1e999,\"clip\":1,\"steps\":1}]}",
                  "runs[0].sigma (noise multiplier) must be finite and > 0, got inf");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":0.1,\"sigma\":1,\"clip\":1,\"steps\":1.5}]}",
                  "runs[0].steps must be an integer >= 1");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":0.1,\"sigma\":1,\"clip\":1,\"steps\":0}]}",
                  "runs[0].steps must be an integer >= 1");
    expect_reject("{\"version\":1,\"runs\":[{\"q\":0.1,\"sigma\":1,\"clip\":1}]}",
                  "runs[0].steps must be an integer >= 1");
    /* deep nesting fails cleanly */
    char deep[400];
    memset(deep, '[', 300);
    deep[300] = '\0';
    expect_reject(deep, "nesting deeper than 64");
}

static void test_bad_steps(void) {
    dp_ledger *l = dp_ledger_new();
    CHECK(dp_ledger_step(l, 0, 1, 1) == DP_EARG && strstr(dp_last_error(), "dp_ledger_step: q (sampling rate) must be in (0, 1], got 0"),
          "%s", dp_last_error());
    CHECK(dp_ledger_step(l, 0.1, NAN, 1) == DP_EARG && strstr(dp_last_error(), "sigma (noise multiplier)"), "%s", dp_last_error());
    CHECK(dp_ledger_step(l, 0.1, 1, 0) == DP_EARG && strstr(dp_last_error(), "clip (clipping norm) must be finite and > 0"),
          "%s", dp_last_error());
    CHECK(dp_ledger_step(NULL, 0.1, 1, 1) == DP_EARG, "NULL ledger");
    dp_eps_result r;
    CHECK(dp_ledger_epsilon(l, &r, DP_ACCT_RDP, 0) == DP_EARG && strstr(dp_last_error(), "delta must be in (0, 1)"),
          "%s", dp_last_error());
    CHECK(dp_ledger_num_runs(l) == 0, "nothing recorded");
    dp_ledger_free(l);
}

int main(void) {
    test_steps_and_runs();
    test_json_round_trip();
    test_malformed();
    test_bad_steps();
    return dp_test_finish("test_ledger");
}
