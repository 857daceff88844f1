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
end)
