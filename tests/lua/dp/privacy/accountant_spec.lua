-- Specs for dp.privacy.accountant: the FFI wrapper end to end (epsilon, delta, calibration, the
-- ledger and its JSON), against values the C tests pin down.
local accountant = require "dp.privacy.accountant"

describe("dp.privacy.accountant", function()
  describe("epsilon", function()
    it("matches the standard RDP implementation with its orders", function()
      local orders = {}
      for x = 1, 99 do orders[#orders + 1] = 1 + x / 10 end
      for a = 12, 63 do orders[#orders + 1] = a end
      local r = accountant.epsilon{ q = 0.01, sigma = 1.1, steps = 10000, delta = 1e-5, orders = orders }
      assert.is_true(math.abs(r.epsilon - 5.63199236854841) < 1e-5)
      assert.are.equal(4.7, r.best_order)
      assert.is_false(r.approximate)
    end)

    it("gives PRV bounds around its estimate, below RDP", function()
      local p = accountant.epsilon{ q = 0.01, sigma = 1.0, steps = 1000, delta = 1e-5, accountant = "prv" }
      local r = accountant.epsilon{ q = 0.01, sigma = 1.0, steps = 1000, delta = 1e-5 }
      assert.is_true(p.eps_lower <= p.eps_estimate and p.eps_estimate <= p.epsilon)
      assert.is_true(p.eps_lower <= r.epsilon)
    end)

    it("flags GDP as approximate and accepts the dataset form", function()
      local g = accountant.epsilon{ dataset_size = 60000, batch_size = 256, epochs = 60, sigma = 1.1,
                                    delta = 1e-5, accountant = "gdp" }
      assert.is_true(g.approximate)
      local same = accountant.epsilon{ q = 256 / 60000, steps = 14063, sigma = 1.1, delta = 1e-5, accountant = "gdp" }
      assert.are.equal(same.epsilon, g.epsilon)
    end)

    it("composes heterogeneous runs", function()
      local both = accountant.epsilon{ runs = { { q = 0.01, sigma = 1.1, steps = 600 }, { q = 0.01, sigma = 1.1, steps = 400 } },
                                       delta = 1e-5 }
      local one = accountant.epsilon{ q = 0.01, sigma = 1.1, steps = 1000, delta = 1e-5 }
      assert.is_true(math.abs(both.epsilon - one.epsilon) < 1e-12)
    end)

    it("rejects bad arguments naming them", function()
      assert.error_matches(function() accountant.epsilon{ q = 1.5, sigma = 1, steps = 10, delta = 1e-5 } end,
        "q (sampling rate) must be in (0, 1], got 1.5", nil, true)
      assert.error_matches(function() accountant.epsilon{ q = 0.1, sigma = 1, steps = 10 } end,
        "delta must be a number in (0, 1), got nil", nil, true)
      assert.error_matches(function() accountant.epsilon{ q = 0.1, sigma = 1, steps = 0.5, delta = 1e-5 } end,
        "steps must be an integer >= 1", nil, true)
      assert.error_matches(function() accountant.epsilon{ q = 0.1, sigma = 1, steps = 10, delta = 1e-5, accountant = "x" } end,
        "accountant must be \"rdp\", \"prv\" or \"gdp\"", nil, true)
    end)
  end)

  describe("calibrate_sigma", function()
    it("round-trips", function()
      local sigma = accountant.calibrate_sigma{ target_epsilon = 3, delta = 1e-5, q = 0.01, steps = 2000 }
      local e = accountant.epsilon{ q = 0.01, sigma = sigma, steps = 2000, delta = 1e-5 }.epsilon
      assert.is_true(e <= 3 and e > 2.99)
    end)
  end)

  describe("delta", function()
    it("inverts epsilon", function()
      local e = accountant.epsilon{ q = 0.01, sigma = 1.1, steps = 2000, delta = 1e-5, accountant = "gdp" }.epsilon
      local d = accountant.delta{ q = 0.01, sigma = 1.1, steps = 2000, epsilon = e, accountant = "gdp" }
      assert.is_true(math.abs(d / 1e-5 - 1) < 1e-8)
    end)
  end)

  describe("Ledger", function()
    it("merges steps, round-trips JSON and resumes", function()
      local l = accountant.Ledger()
      for _ = 1, 5 do l:step(0.01, 1.1, 1.0) end
      l:step(0.02, 1.1)
      local runs = l:runs()
      assert.are.equal(2, #runs)
      assert.are.same({ q = 0.01, sigma = 1.1, clip = 1.0, steps = 5 }, runs[1])
      local back = accountant.Ledger.from_json(l:to_json())
      back:step(0.02, 1.1, 1.0)
      assert.are.equal(7, back:total_steps())
      assert.are.equal(2, #back:runs())
      local e = back:epsilon(1e-5)
      local direct = accountant.epsilon{ runs = { { q = 0.01, sigma = 1.1, steps = 5 }, { q = 0.02, sigma = 1.1, steps = 2 } },
                                         delta = 1e-5 }
      assert.are.equal(direct.epsilon, e.epsilon)
    end)

    it("rejects malformed JSON with the reason", function()
      assert.error_matches(function() accountant.Ledger.from_json('{"version":1,"runs":[{"q":2}]}') end,
        "runs[0] lacks \"sigma\"", nil, true)
      assert.error_matches(function() accountant.Ledger.from_json("{") end, "malformed JSON", nil, true)
    end)

    it("backs the recipe-style tracker", function()
      local acct = accountant{ delta = 1e-5, sample_rate = 0.01 }
      for _ = 1, 100 do acct:step(1.1) end
      local e = acct:epsilon()
      assert.are.equal(accountant.epsilon{ q = 0.01, sigma = 1.1, steps = 100, delta = 1e-5 }.epsilon, e)
    end)
  end)

  describe("Ledger:record", function()
    local ffi = require "ffi"
    local MAX = 0xffffffffffffffffULL

    -- n steps of b[i] examples each, every step's draws starting where the last stopped.
    local function steps(l, batches, opts)
      local noise, sampler = opts.noise or 0, opts.sampler or 0
      for _, b in ipairs(batches) do
        l:record{ q = 0.01, sigma = 1.1, clip = 1.0, batch_size = b, sampling = opts.sampling or "poisson",
                  noise_mode = "reproducible", noise_seed = opts.seed or 7,
                  noise_counter_before = noise, noise_counter_after = noise + 50,
                  sampler_counter_before = sampler, sampler_counter_after = sampler + 10 }
        noise, sampler = noise + 50, sampler + 10
      end
    end

    it("lengthens a run while the counters continue, with the batch summary", function()
      local l = accountant.Ledger()
      local batches = { 12, 0, 40, 7, 0 }
      steps(l, batches, {})
      local runs = l:runs()
      assert.are.equal(1, #runs)
      local r = runs[1]
      local total, lo, hi = 0, math.huge, 0
      for _, b in ipairs(batches) do total, lo, hi = total + b, math.min(lo, b), math.max(hi, b) end
      assert.are.same({ 5, total, lo, hi, 2, "poisson", "reproducible", true },
                      { r.steps, r.batch_total, r.batch_min, r.batch_max, r.empty_batches, r.sampling, r.noise_mode, r.detailed })
      assert.is_true(r.noise_seed == 7 and r.noise_counter_first == 0 and r.noise_counter_last == 250)
      assert.is_true(r.sampler_counter_first == 0 and r.sampler_counter_last == 50)
      assert.are.equal(accountant.epsilon{ q = 0.01, sigma = 1.1, steps = 5, delta = 1e-5 }.epsilon, l:epsilon(1e-5).epsilon)
    end)

    it("starts a run on a new seed, sampler or a gap in the counters", function()
      local l = accountant.Ledger()
      steps(l, { 1, 2 }, {})
      steps(l, { 3 }, { noise = 100, sampler = 20, seed = 8 })        -- new seed
      steps(l, { 4 }, { noise = 150, sampler = 30, seed = 8, sampling = "shuffle" })
      steps(l, { 5 }, { noise = 151, sampler = 40, seed = 8, sampling = "shuffle" })   -- gap
      l:step(0.01, 1.1, 1.0)                                            -- plain: its own run
      local runs = l:runs()
      assert.are.equal(5, #runs)
      assert.are.same({ 2, 1, 1, 1, 1 }, { runs[1].steps, runs[2].steps, runs[3].steps, runs[4].steps, runs[5].steps })
      assert.are.same({ q = 0.01, sigma = 1.1, clip = 1.0, steps = 1 }, runs[5])
      assert.are.equal("shuffle", runs[4].sampling)
      assert.is_true(runs[4].noise_counter_first == 151)
    end)

    it("takes uint64 cdata counters and round-trips them exactly through JSON", function()
      local l = accountant.Ledger()
      l:record{ q = 0.5, sigma = 2, clip = 0.1, batch_size = 3, sampling = "poisson", noise_mode = "secure",
                noise_counter_before = MAX - 10, noise_counter_after = MAX - 1,
                sampler_counter_before = 2 ^ 53, sampler_counter_after = ffi.new("int64_t", 2) ^ 62 }
      l:record{ q = 0.5, sigma = 2, clip = 0.1, batch_size = 4, sampling = "poisson", noise_mode = "secure",
                noise_counter_before = MAX - 1, noise_counter_after = MAX,
                sampler_counter_before = 2ULL ^ 62, sampler_counter_after = 2ULL ^ 62 }
      l:mark_inspected("norms"):mark_inspected("norms"):mark_inspected("clip factors")
      local text = l:to_json()
      assert.truthy(text:find('"noise_counter_last":"18446744073709551615"', 1, true))
      assert.truthy(text:find('"inspections":3,"inspected":["norms","clip factors"]', 1, true))
      local back = accountant.Ledger.from_json(text)
      local r = back:runs()[1]
      assert.are.equal(1, #back:runs())
      assert.is_true(r.noise_counter_first == MAX - 10 and r.noise_counter_last == MAX)
      assert.is_true(r.sampler_counter_first == 2ULL ^ 53 and r.sampler_counter_last == 4611686018427387904ULL)
      assert.is_true(r.noise_seed == 0)
      assert.are.same({ 2, 7, 3, 4, "secure" }, { r.steps, r.batch_total, r.batch_min, r.batch_max, r.noise_mode })
      assert.are.equal(3, back:inspections())
      assert.are.equal(text, back:to_json())
    end)

    it("reads older JSON without the book-keeping as plain runs", function()
      local l = accountant.Ledger.from_json('{"version":1,"runs":[{"q":0.01,"sigma":1.1,"clip":1,"steps":120}]}')
      assert.are.same({ { q = 0.01, sigma = 1.1, clip = 1, steps = 120 } }, l:runs())
      assert.are.equal(0, l:inspections())
    end)

    it("rejects bad fields naming them", function()
      local l = accountant.Ledger()
      local function rec(over)
        local o = { q = 0.1, sigma = 1, clip = 1, batch_size = 2, sampling = "poisson", noise_mode = "reproducible",
                    noise_counter_before = 0, noise_counter_after = 1, sampler_counter_before = 0, sampler_counter_after = 1 }
        for k, v in pairs(over) do o[k] = v end
        return function() l:record(o) end
      end
      assert.error_matches(rec{ sampling = "uniform" }, 'sampling must be "poisson" or "shuffle", got uniform', nil, true)
      assert.error_matches(rec{ noise_mode = 1 }, 'noise_mode must be "reproducible" or "secure"', nil, true)
      assert.error_matches(rec{ noise_counter_before = -1 }, "noise_counter_before must be an integer >= 0", nil, true)
      assert.error_matches(rec{ sampler_counter_after = 2 ^ 53 + 2 }, "sampler_counter_after must be an integer >= 0 (a number up to 2^53", nil, true)
      assert.error_matches(rec{ noise_counter_after = 1.5 }, "noise_counter_after must be an integer >= 0", nil, true)
      assert.error_matches(rec{ noise_counter_after = ffi.new("int64_t", -3) }, "noise_counter_after must be an integer >= 0", nil, true)
      assert.error_matches(rec{ batch_size = -1 }, "batch_size must be an integer >= 0, got -1", nil, true)
      assert.error_matches(rec{ q = 0 }, "dp_ledger_record: q (sampling rate) must be in (0, 1], got 0", nil, true)
      assert.error_matches(rec{ noise_counter_before = 5, noise_counter_after = 4 }, "is below noise_counter_before (5)", nil, true)
      assert.error_matches(function() l:mark_inspected("") end, "what must be a non-empty string", nil, true)
      assert.are.equal(0, #l:runs())
      assert.are.equal(0, l:inspections())
      assert.error_matches(function()
        accountant.Ledger.from_json('{"version":1,"runs":[{"q":0.1,"sigma":1,"clip":1,"steps":1,"sampling":"poisson"}]}')
      end, 'runs[0] lacks "batch_total"', nil, true)
    end)
  end)
end)
