-- Specs for dp.privacy.ledger: skipped steps and aux_sigma through Ledger:record and Ledger:runs,
-- their JSON round trip, and files written before the fields existed.
local accountant = require "dp.privacy.accountant"
local ledger = require "dp.privacy.ledger"

describe("dp.privacy.ledger", function()
  -- Steps continuing each other's counters, with per-step skipped / aux_sigma.
  local function record(l, specs)
    local noise, sampler = 0, 0
    for _, s in ipairs(specs) do
      l:record{ q = 0.02, sigma = 1.3, clip = 1.0, batch_size = 5, sampling = "poisson",
                noise_mode = "reproducible", noise_seed = 3,
                noise_counter_before = noise, noise_counter_after = noise + 10,
                sampler_counter_before = sampler, sampler_counter_after = sampler + 2,
                skipped = s.skipped, aux_sigma = s.aux_sigma }
      noise, sampler = noise + 10, sampler + 2
    end
  end

  it("is the class accountant.Ledger makes", function()
    assert.are.equal(ledger.Ledger.from_json, accountant.Ledger.from_json)
    assert.is_function(accountant.Ledger().epsilon)
  end)

  it("counts skipped steps in runs and splits runs where aux_sigma changes", function()
    local l = accountant.Ledger()
    record(l, { {}, { skipped = true }, { skipped = false }, { aux_sigma = 4, skipped = true },
                { aux_sigma = 4 }, {} })
    local runs = l:runs()
    assert.are.equal(3, #runs)
    assert.are.same({ 3, 1, 0 }, { runs[1].steps, runs[1].skipped_steps, runs[1].aux_sigma })
    assert.are.same({ 2, 1, 4 }, { runs[2].steps, runs[2].skipped_steps, runs[2].aux_sigma })
    assert.are.same({ 1, 0, 0 }, { runs[3].steps, runs[3].skipped_steps, runs[3].aux_sigma })
    assert.are.equal(6, l:total_steps())   -- skipped steps still spend privacy
    local back = accountant.Ledger.from_json(l:to_json()):runs()
    for i = 1, 3 do
      assert.are.same({ runs[i].steps, runs[i].skipped_steps, runs[i].aux_sigma },
                      { back[i].steps, back[i].skipped_steps, back[i].aux_sigma })
    end
  end)

  it("reads older files without the fields as 0", function()
    local l = accountant.Ledger.from_json('{"version":1,"runs":[{"q":0.5,"sigma":1,"clip":1,"steps":2,'
      .. '"batch_total":7,"batch_min":3,"batch_max":4,"empty_batches":0,"sampling":"poisson",'
      .. '"noise_mode":"reproducible","noise_seed":"1","noise_counter_first":"0",'
      .. '"noise_counter_last":"4","sampler_counter_first":"0","sampler_counter_last":"2"}]}')
    local r = l:runs()[1]
    assert.are.same({ 2, 0, 0 }, { r.steps, r.skipped_steps, r.aux_sigma })
    assert.is_nil(l:to_json():find("skipped_steps", 1, true))
  end)

  it("rejects bad skipped and aux_sigma values naming them", function()
    local l = accountant.Ledger()
    assert.error_matches(function() record(l, { { skipped = 1 } }) end,
      "Ledger:record: skipped must be a boolean", nil, true)
    assert.error_matches(function() record(l, { { aux_sigma = -1 } }) end,
      "aux_sigma must be finite and >= 0", nil, true)
    assert.error_matches(function() record(l, { { aux_sigma = "2" } }) end,
      "Ledger:record: aux_sigma must be a number", nil, true)
    assert.are.equal(0, l:total_steps())
  end)
end)
